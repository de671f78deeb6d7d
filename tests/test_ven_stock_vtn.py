"""Our VEN agent against an UNMODIFIED openleadr OpenADRServer (its own process).

The stock VTN serves a three-interval LOAD_DISPATCH event (5.0 / 2.0 / 4.0 kW) to a
V2G car and a three-interval LOAD_CONTROL x-loadControlCapacity event (0.5 / 0.25
/ 1.0) to a managed-charging car, plus an event for another resource only. The
simulated devices follow each interval; every message both ways is valid 2.0b and keeps the profile rules;
the registration tells the truth about signing and transport address.
Time is compressed: each 2 s interval is an hour of the devices' time.
"""
import asyncio
import json
import logging
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from lxml import etree

from certs.pki import ensure_dev_pki
from flexadr import profile_rules, xsd
from flexadr.clock import SystemClock, ceil_to
from flexadr.demo import KINDS, _free_port
from ven.agent import AgentConfig, VenAgent
from ven.policy import OwnerPrefs
from ven.store import LocalDatabase

INTERVAL = timedelta(seconds=2)
SCALE = 3600 / INTERVAL.total_seconds()       # one interval = one device hour
DISPATCH_KW = [5.0, 2.0, 4.0]
CAPACITY = [0.5, 0.25, 1.0]
OADR = "{http://openadr.org/oadr-2.0b/2012/07}"
VENS = {"ven-v2g": "ev_v2g", "ven-managed": "ev_managed"}


class Errors(logging.Handler):
    def __init__(self):
        super().__init__(level=logging.ERROR)
        self.records: list[str] = []

    def emit(self, record):
        # A poll cancelled by the agent's own shutdown (APScheduler logs it) is no error.
        if record.exc_info and isinstance(record.exc_info[1], asyncio.CancelledError):
            return
        self.records.append(record.getMessage())


async def _stock_vtn(tmp_path: Path, pki, events: list[dict]):
    port = _free_port()
    config = tmp_path / "stock.json"
    config.write_text(json.dumps({
        "port": port, "cert": str(pki.vtn.cert), "key": str(pki.vtn.key), "ca_file": str(pki.ca.cert),
        "vens": {name: {"ven_id": f"id-{name}", "fingerprint": pki.vens[name].fingerprint}
                 for name in VENS},
        "events": events}))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).with_name("stock_vtn.py")), str(config),
        stdout=asyncio.subprocess.PIPE, stderr=(tmp_path / "stock.log").open("wb"))
    async with asyncio.timeout(20):
        while (line := await proc.stdout.readline()) != b"ready\n":
            assert line, f"stock VTN exited: {(tmp_path / 'stock.log').read_text()[-2000:]}"
    return proc, f"https://127.0.0.1:{port}/OpenADR2/Simple/2.0b"


def _agent(name: str, pki, url: str, tmp_path: Path, database: LocalDatabase) -> VenAgent:
    spec = dict(KINDS[VENS[name]][1], kind=VENS[name], time_scale=SCALE)
    config = AgentConfig(
        ven_name=name, vtn_url=url, cert=pki.vens[name].cert, key=pki.vens[name].key,
        ca_file=pki.ca.cert, vtn_fingerprint=pki.vtn.fingerprint, adapter="sim",
        adapter_config=spec, capacity_kwh=spec["capacity_kwh"],
        max_discharge_kw=spec.get("max_discharge_kw", 0.0), max_charge_kw=spec["max_charge_kw"],
        prefs=OwnerPrefs(min_soc_pct=20), time_scale=SCALE,
        sample_period=timedelta(minutes=5), state_url=f"sqlite:///{tmp_path / 'vens.sqlite'}")
    return VenAgent(config, SystemClock(), database=database)


def _intervals(start, payloads):
    return [{"dtstart": (start + n * INTERVAL).isoformat(), "duration_s": INTERVAL.total_seconds(),
             "payload": value} for n, value in enumerate(payloads)]


@pytest.mark.parametrize("key_type", ["ecdsa", "rsa"])
async def test_our_ven_follows_every_interval_of_a_stock_vtns_events(tmp_path, key_type):
    pki = ensure_dev_pki(tmp_path / "pki", list(VENS), key_type=key_type)
    start = ceil_to(SystemClock().now() + timedelta(seconds=5), timedelta(seconds=1))
    events = [
        {"event_id": "dispatch", "ven_id": "id-ven-v2g", "signal_name": "LOAD_DISPATCH",
         "signal_type": "setpoint", "intervals": _intervals(start, DISPATCH_KW)},
        {"event_id": "capacity", "ven_id": "id-ven-managed", "signal_name": "LOAD_CONTROL",
         "signal_type": "x-loadControlCapacity", "intervals": _intervals(start, CAPACITY)},
        # Sent to the V2G car's VEN but aimed at a resource it does not have.
        {"event_id": "elsewhere", "ven_id": "id-ven-v2g", "signal_name": "LOAD_DISPATCH",
         "signal_type": "setpoint", "targets": [{"resource_id": "someone-elses-battery"}],
         "intervals": _intervals(start, [9.0, 9.0, 9.0])},
    ]
    errors = Errors()
    logging.getLogger().addHandler(errors)
    proc, url = await _stock_vtn(tmp_path, pki, events)
    database = LocalDatabase(f"sqlite:///{tmp_path / 'vens.sqlite'}")
    agents = {name: _agent(name, pki, url, tmp_path, database) for name in VENS}
    messages: list[tuple[str, str, str]] = []
    for name, agent in agents.items():
        agent.link.client.add_hook("before_send_xml", lambda xml, n=name: messages.append((n, "sent", xml)))
        agent.link.client.add_hook("after_receive_xml",
                              lambda xml, n=name: xml and messages.append((n, "received", xml)))
    try:
        for agent in agents.values():
            await agent.start()
            assert agent.registered
        end = start + len(DISPATCH_KW) * INTERVAL
        await asyncio.sleep((end - SystemClock().now()).total_seconds() + 0.5)
        opts = []
        while True:
            try:
                async with asyncio.timeout(0.2):
                    line = await proc.stdout.readline()
            except TimeoutError:
                break
            if not line:
                break
            opts.append(json.loads(line))
    finally:
        for agent in agents.values():
            await agent.stop()
        proc.terminate()
        await proc.wait()
        logging.getLogger().removeHandler(errors)

    # The devices followed each interval, as the VTN sent it.
    windows = [(start + n * INTERVAL, start + (n + 1) * INTERVAL) for n in range(3)]
    v2g = agents["ven-v2g"].adapter.device
    assert [-v2g.mean_kw(a, b) for a, b in windows] == pytest.approx(DISPATCH_KW, rel=1e-3)
    managed = agents["ven-managed"].adapter.device
    rating = managed.spec.max_charge_kw
    assert [managed.mean_kw(a, b) for a, b in windows] == pytest.approx(
        [f * rating for f in CAPACITY], rel=1e-3)

    # Both took part; the event for another resource was declined and not executed.
    answers = {(o["ven_id"], o["event_id"]): o["opt_type"] for o in opts}
    assert answers[("id-ven-v2g", "dispatch")] == "optIn"
    assert answers[("id-ven-managed", "capacity")] == "optIn"
    assert answers[("id-ven-v2g", "elsewhere")] == "optOut"
    assert "elsewhere" not in agents["ven-v2g"].decisions

    # Every message both ways is valid 2.0b and keeps the profile's rules, and the
    # registration tells the truth.
    kinds = set()
    for name, direction, xml in messages:
        tree = xsd.validate(xml)
        assert profile_rules.violations(tree) == [], (name, direction, xsd.message_type(tree))
        kinds.add((direction, xsd.message_type(tree)))
        if xsd.message_type(tree) == "oadrCreatePartyRegistration":
            assert tree.findtext(f".//{OADR}oadrXmlSignature") == "true"
            assert tree.find(f".//{OADR}oadrTransportAddress") is None
            assert etree.tostring(tree).count(b"None") == 0
    assert {("sent", "oadrCreatePartyRegistration"), ("received", "oadrDistributeEvent"),
            ("sent", "oadrCreatedEvent"), ("sent", "oadrPoll")} <= kinds
    assert errors.records == []


async def test_our_ven_refuses_an_event_that_breaks_the_profile(tmp_path):
    """A LOAD_DISPATCH signal of signalType "price" passes the schema (stock openleadr
    sends it and a stock VEN answers 200), but the profile's table has no price for
    LOAD_DISPATCH: our VEN answers 454 with optOut, executes nothing of it, and still
    takes the conforming event of the same message."""
    pki = ensure_dev_pki(tmp_path / "pki", list(VENS))
    start = ceil_to(SystemClock().now() + timedelta(seconds=5), timedelta(seconds=1))
    events = [
        {"event_id": "dispatch", "ven_id": "id-ven-v2g", "signal_name": "LOAD_DISPATCH",
         "signal_type": "setpoint", "intervals": _intervals(start, [5.0])},
        {"event_id": "priced-dispatch", "ven_id": "id-ven-v2g", "signal_name": "LOAD_DISPATCH",
         "signal_type": "price", "intervals": _intervals(start, [0.3])},
    ]
    proc, url = await _stock_vtn(tmp_path, pki, events)
    database = LocalDatabase(f"sqlite:///{tmp_path / 'vens.sqlite'}")
    agent = _agent("ven-v2g", pki, url, tmp_path, database)
    sent: list[str] = []
    agent.link.client.add_hook("before_send_xml", sent.append)
    try:
        await agent.start()
        assert agent.registered
        async with asyncio.timeout(20):
            while not any("oadrCreatedEvent" in xml for xml in sent):
                await asyncio.sleep(0.2)
    finally:
        await agent.stop()
        proc.terminate()
        await proc.wait()

    created = xsd.validate(next(xml for xml in sent if "oadrCreatedEvent" in xml))
    ei = "{http://docs.oasis-open.org/ns/energyinterop/201110}"
    answers = {r.findtext(f".//{ei}eventID"): (r.findtext(f"{ei}responseCode"),
                                                r.findtext(f"{ei}optType"))
               for r in created.iter(f"{ei}eventResponse")}
    assert answers == {"dispatch": ("200", "optIn"), "priced-dispatch": ("454", "optOut")}
    assert agent.link.client.refused_events["priced-dispatch"][0].startswith("signal-type:")
    assert "priced-dispatch" not in agent.decisions and "dispatch" in agent.decisions
    assert profile_rules.violations(created) == []
