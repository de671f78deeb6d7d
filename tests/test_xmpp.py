"""OpenADR 2.0b over XMPP, through a real Prosody (Debian's package) started per test
(tests/prosody.py: TLS and a client certificate of the test CA required, JIDs
authenticated by password). The VTN and our VEN agents
talk through it with slixmpp; a stock openleadr VEN polls over HTTP beside them.
Every message the VTN sends is checked by the `vtn_sent_messages` fixture (XSD and
profile rules); every message the VENs send and receive is checked here.
"""
import asyncio
import dataclasses
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import slixmpp
from lxml import etree

from certs.pki import ensure_dev_pki
from flexadr import xsd
from flexadr.clock import SystemClock
from flexadr.signing import MessageSigner
from flexadr.xmpp import Endpoint
from test_openadr_20b import Stock, eventually
from test_push import FAST_RETRY, PATH, _push_config
from test_ven_resilience import HOUR, SCALE, _publish
from tests.conftest import needs_daemon
from tests.harness import running_site
from tests.prosody import DOMAIN, Prosody
from ven.agent import VenAgent
from ven.openadr20b.xmpp_link import XmppExchange
from vtn import lifecycle
from vtn.config import load
from vtn.store import PushEndpoint

ROOT = Path(__file__).resolve().parents[1]
VTN_JID = f"vtn@{DOMAIN}/flexadr"
DS = "{http://www.w3.org/2000/09/xmldsig#}"
EI = "{http://docs.oasis-open.org/ns/energyinterop/201110}"


@pytest.fixture
async def xmpp_site(tmp_path):
    """A VTN serving XMPP (and HTTP) with Prosody; VENs ven-a (XMPP), ven-b (push),
    ven-c (pull, our agent) and stock-1 (pull, stock openleadr) enrolled."""
    names = ("ven-a", "ven-b", "ven-c", "stock-1")
    pki = ensure_dev_pki(tmp_path / "pki", names)
    prosody = Prosody(tmp_path, pki, ["vtn", "ven-a", "ven-b", "intruder"]).start()
    try:
        account = prosody.account("vtn", pki.vtn.cert, pki.vtn.key)
        async with running_site(tmp_path, SCALE, names, xmpp=account,
                                push_settings=FAST_RETRY) as site:
            await eventually(site.vtn.xmpp.endpoint.connected.is_set, 10, "VTN connected")
            site.prosody = prosody
            yield site
    finally:
        prosody.stop()


def _xmpp_config(site, name: str):
    paths = site.pki.vens[name]
    return dataclasses.replace(site.agent_config(name), vtn_url="", xmpp=XmppExchange(
        site.prosody.account(name, paths.cert, paths.key), VTN_JID))     # no HTTP at all


class Seen:
    """Every message a VEN's client sends and receives: each must be valid 2.0b and signed."""

    def __init__(self, agent: VenAgent):
        self.xml: list[str] = []
        agent.link.client.add_hook("before_send_xml", self.xml.append)
        agent.link.client.add_hook("after_receive_xml", lambda xml: xml and self.xml.append(xml))

    def check(self) -> set[str]:
        trees = [xsd.validate(xml) for xml in self.xml]
        assert all(tree.find(f"./{DS}Signature") is not None for tree in trees)
        return {xsd.message_type(tree) for tree in trees}


async def _agent(site, config) -> tuple[VenAgent, Seen]:
    agent = VenAgent(config, SystemClock(), database=site.database)
    seen = Seen(agent)
    await agent.start()
    site.agents.append(agent)
    return agent, seen


def _address(site, ven_id: str) -> str | None:
    with site.store.session() as s:
        endpoint = s.get(PushEndpoint, ven_id)
        return endpoint.address if endpoint else None


@needs_daemon("prosody")
@pytest.mark.parametrize("exchange", ["pull", "push", "xmpp"])
async def test_each_exchange_carries_the_event_opt_report_and_cancel(
        xmpp_site, vtn_sent_messages, exchange):
    site = xmpp_site
    config = {"pull": lambda: site.agent_config("ven-c"),
              "push": lambda: _push_config(site, "ven-b"),
              "xmpp": lambda: _xmpp_config(site, "ven-a")}[exchange]()
    agent, seen = await _agent(site, config)
    ven_id = config.ven_name
    await eventually(lambda: agent.registered, what="registered")
    await eventually(lambda: all(r.acknowledged_at for r in site.store.report_requests(ven_id)),
                     what="every report request acknowledged")
    event = _publish(site, lead=2 * HOUR, duration=2 * HOUR)
    await eventually(lambda: event.event_id in agent.decisions, what="event received")
    await eventually(lambda: site.store.target(event.event_id, ven_id).opt_type == "optIn",
                     what="oadrCreatedEvent stored")
    await agent.opt_out(event.event_id)
    await eventually(lambda: site.store.opts(ven_id), what="oadrCreateOpt stored")
    await eventually(lambda: any(p.plugged_in is not None for p in site.store.telemetry(ven_id)),
                     what="status telemetry stored")
    lifecycle.cancel(site.store, event.event_id, SystemClock())
    await eventually(lambda: agent.store.event(event.event_id).cancelled, what="cancel received")

    types = seen.check()
    assert {"oadrCreatePartyRegistration", "oadrDistributeEvent", "oadrCreatedEvent",
            "oadrCreateOpt", "oadrUpdateReport"} <= types
    assert ("oadrPoll" in types) == (exchange == "pull")
    expected = {"pull": None, "push": config.push and config.push.public_url,
                "xmpp": f"xmpp:{ven_id}@{DOMAIN}/flexadr"}[exchange]
    assert _address(site, ven_id) == expected
    assert sum("oadrDistributeEvent" in xml for xml in vtn_sent_messages) >= 2


@needs_daemon("prosody")
async def test_a_stock_pull_ven_works_beside_push_and_xmpp_vens(xmpp_site):
    site = xmpp_site
    xmpp_agent, _ = await _agent(site, _xmpp_config(site, "ven-a"))
    push_agent, _ = await _agent(site, _push_config(site, "ven-b"))
    stock = Stock("stock-1", site.pki, f"https://127.0.0.1:{site.vtn.config.port}{PATH}")
    await asyncio.wait_for(stock.client.run(), 20)
    try:
        await eventually(lambda: xmpp_agent.registered and push_agent.registered, what="registered")
        event = _publish(site, lead=2 * HOUR, duration=2 * HOUR)
        await eventually(lambda: stock.events and event.event_id in xmpp_agent.decisions
                         and event.event_id in push_agent.decisions, what="all three got it")
        await eventually(lambda: {t.ven_id for t in site.store.targets(event.event_id)
                                  if t.opt_type == "optIn"} >= {"ven-a", "ven-b", "stock-1"},
                         what="the three answers stored")
    finally:
        await stock.client.stop()
    assert _address(site, "stock-1") is None
    assert "oadrDistributeEvent" in stock.types()


class Raw:
    """A bare XMPP client of the test: sends what it is given, returns the VTN's answer."""

    def __init__(self, site, user: str, cert_of: str):
        paths = site.pki.vens[cert_of]
        self.endpoint = Endpoint(site.prosody.account(user, paths.cert, paths.key),
                                 self._ignore)
        self.signer = MessageSigner.from_files(paths.cert, paths.key)

    @staticmethod
    async def _ignore(_sender, _body):
        return None

    async def __aenter__(self) -> "Raw":
        self.endpoint.start()
        await eventually(self.endpoint.connected.is_set, 10, "connected")
        return self

    async def __aexit__(self, *_exc) -> None:
        await self.endpoint.stop()

    async def answer(self, xml: str) -> etree._Element:
        tree = xsd.validate((await self.endpoint.request(VTN_JID, xml, 10)).decode())
        assert tree.find(f"./{DS}Signature") is not None
        return tree


def _code(tree: etree._Element) -> int:
    return int(tree.findtext(f".//{EI}responseCode"))


def _registration(signer, jid: str, transport: str = "xmpp") -> str:
    return signer("oadrCreatePartyRegistration", request_id="req-1", ven_name="ven-a",
                  ven_id=None, http_pull_model=False, xml_signature=True, report_only=False,
                  profile_name="2.0b", transport_name=transport, transport_address=jid,
                  registration_id=None)


@needs_daemon("prosody")
async def test_bad_input_over_xmpp_is_refused_with_its_code_and_changes_nothing(xmpp_site):
    site = xmpp_site
    jid = f"ven-a@{DOMAIN}/flexadr"
    async with Raw(site, "ven-a", "ven-a") as ven:
        unsigned = etree.fromstring(_registration(ven.signer, jid).encode())
        unsigned.remove(unsigned.find(f"./{DS}Signature"))
        assert _code(await ven.answer(etree.tostring(unsigned).decode())) == 463
        not_2_0b = _registration(ven.signer, jid).replace("2.0b</oadr:oadrProfileName>",
                                                          "9.9</oadr:oadrProfileName>")
        assert _code(await ven.answer(not_2_0b)) == 400
        elsewhere = await ven.answer(_registration(ven.signer, f"ven-a@{DOMAIN}/other"))
        assert _code(elsewhere) == 463
        assert "not the JID" in elsewhere.findtext(f".//{EI}responseDescription")
        assert _code(await ven.answer(_registration(ven.signer, None, "simpleHttp"))) == 463
        assert site.store.ven("ven-a").registration_id is None
        assert _code(await ven.answer(_registration(ven.signer, jid))) == 200
    registration = site.store.ven("ven-a").registration_id
    assert registration and _address(site, "ven-a") == f"xmpp:{jid}"
    # Another XMPP account, even with ven-a's key, may not speak for ven-a.
    async with Raw(site, "intruder", "ven-a") as intruder:
        asked = await intruder.answer(intruder.signer("oadrRequestEvent", request_id="r",
                                                      ven_id="ven-a"))
        assert _code(asked) == 463
        assert "not registered for XMPP from" in asked.findtext(f".//{EI}responseDescription")
        taken = await intruder.answer(_registration(intruder.signer,
                                                    f"intruder@{DOMAIN}/flexadr"))
        assert _code(taken) == 463
        assert "is not VEN ven-a's" in taken.findtext(f".//{EI}responseDescription")
    assert site.store.ven("ven-a").registration_id == registration
    assert _address(site, "ven-a") == f"xmpp:{jid}"


@needs_daemon("prosody")
async def test_prosody_refuses_a_client_without_a_certificate(xmpp_site):
    site = xmpp_site
    client = slixmpp.ClientXMPP(f"ven-a@{DOMAIN}/bare", site.prosody.passwords["ven-a"])
    client.ssl_context = ssl.create_default_context(cafile=str(site.pki.ca.cert))
    client.enable_direct_tls = False
    outcome = asyncio.get_running_loop().create_future()
    for event in ("session_start", "disconnected", "connection_failed"):
        client.add_event_handler(event, lambda _e, event=event: outcome.done()
                                 or outcome.set_result(event))
    client.connect("127.0.0.1", site.prosody.port)
    try:
        assert await asyncio.wait_for(outcome, 10) != "session_start"
    finally:
        client.disconnect(wait=0)


@needs_daemon("prosody")
async def test_an_xmpp_ven_offline_gets_its_queue_when_it_is_back(xmpp_site):
    site = xmpp_site
    agent, _ = await _agent(site, _xmpp_config(site, "ven-a"))
    await eventually(lambda: agent.registered and not site.store.pending_messages("ven-a"),
                     what="registered, queue delivered")
    transport = agent.link.push_server
    await transport.endpoint.stop()          # the VEN is gone
    event = _publish(site, lead=2 * HOUR, duration=2 * HOUR)
    await eventually(lambda: _attempts(site, "ven-a") >= 2, what="retries while it is gone")
    assert event.event_id not in agent.decisions
    transport.endpoint.start()               # back, on the same JID: nothing to re-register
    await eventually(lambda: event.event_id in agent.decisions, what="the event, late")
    await eventually(lambda: not site.store.pending_messages("ven-a"), what="queue delivered")
    assert site.store.target(event.event_id, "ven-a").opt_type == "optIn"


def _attempts(site, ven_id: str) -> int:
    with site.store.session() as s:
        return s.get(PushEndpoint, ven_id).attempts or 0


@needs_daemon("prosody")
async def test_an_xmpp_registration_is_offered_and_answered_truthfully(xmpp_site, tmp_path):
    site = xmpp_site
    stock = Stock("stock-1", site.pki, f"https://127.0.0.1:{site.vtn.config.port}{PATH}")
    try:
        query = stock.client._create_message("oadrQueryRegistration", request_id="q")
        _, offered = await stock.client._perform_request("EiRegisterParty", query)
        # over HTTP, a registration for XMPP: refused, it must come from its JID
        message = stock.client._create_message(
            "oadrCreatePartyRegistration", request_id="req-1", ven_name="stock-1", ven_id=None,
            http_pull_model=False, xml_signature=True, report_only=False, profile_name="2.0b",
            transport_name="xmpp", transport_address=f"stock-1@{DOMAIN}/x", registration_id=None)
        _, over_http = await stock.client._perform_request("EiRegisterParty", message)
    finally:
        await stock.client.stop()
    transports = {t["transport_name"] for p in offered["profiles"] for t in p["transports"]}
    assert transports == {"simpleHttp", "xmpp"}
    assert over_http["response"]["response_code"] == 463
    assert site.store.ven("stock-1").registration_id is None


def test_vtn_toml_xmpp_table_and_one_worker(tmp_path):
    pki = ensure_dev_pki(tmp_path / "pki", [])
    (tmp_path / "xmpp-password").write_text("secret\n")
    path = tmp_path / "vtn.toml"
    path.write_text(f"""cert = "{pki.vtn.cert}"
key = "{pki.vtn.key}"
ca_file = "{pki.ca.cert}"
database = "postgresql://flexadr@127.0.0.1:1/none"
[xmpp]
server_host = "xmpp.example"
jid = "vtn@xmpp.example/flexadr"
password_file = "xmpp-password"
""")
    account = load(path).server.xmpp
    assert (account.host, account.port, account.jid, account.password) == (
        "xmpp.example", 5222, "vtn@xmpp.example/flexadr", "secret")
    assert (account.cert, account.ca_file) == (pki.vtn.cert, pki.ca.cert)
    proc = subprocess.run([sys.executable, "-m", "vtn.cli", "serve", "--config", str(path),
                           "--workers", "2"], capture_output=True, text=True, timeout=60,
                          check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert proc.stderr == (f"vtn: {path}: workers = 2 with [xmpp]: the XMPP transport runs in "
                           f"one process (workers = 1)\n")
    (tmp_path / "xmpp-password").write_text(" \n")
    proc = subprocess.run([sys.executable, "-m", "vtn.cli", "serve", "--config", str(path)],
                          capture_output=True, text=True, timeout=60, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and f"{tmp_path / 'xmpp-password'} is empty" in proc.stderr
