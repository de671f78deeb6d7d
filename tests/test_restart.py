"""A `vtn serve` process killed with SIGKILL mid-event while 20 VENs report, then restarted.

Afterwards every registration, event, opt answer and every telemetry interval the
VTN acknowledged is in the database exactly once, and the VENs carry on with
their registrations (no re-enrolment). The VENs are the project's VenAgent.
"""
import asyncio
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from datetime import timedelta

import pytest
from openleadr.messaging import parse_message

from certs.pki import ensure_dev_pki
from flexadr.clock import SystemClock, ceil_to
from flexadr.demo import KINDS, _free_port, fleet_plan
from schedules import model
from tests.harness import eventually
from ven.agent import AgentConfig
from ven.fleet import Fleet
from ven.policy import OwnerPrefs
from vtn import lifecycle
from vtn.store import Store, Ven

VENS = 20
REPORT_S = 2


async def _wait_for_port(port: int, proc: subprocess.Popen, timeout_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        assert proc.poll() is None, "vtn serve exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"vtn serve did not listen on {port} within {timeout_s} s")


class Acks:
    """What each VEN sent in oadrUpdateReport and whether the VTN acknowledged it."""

    def __init__(self):
        self.acked: list[tuple[str, object, str, float]] = []   # ven, dtstart, r_id, value
        self.after_restart: Counter = Counter()
        self.restarted = False

    def instrument(self, agent):
        client = agent.link.client
        original = client._perform_request

        async def perform(service, message):
            result = await original(service, message)
            if service == "EiReport" and b"oadrUpdateReport" in _bytes(message):
                response_type = result[0] if result else None
                if response_type == "oadrUpdatedReport":
                    _, payload = parse_message(message)
                    for report in payload["reports"]:
                        for interval in report.get("intervals") or []:
                            for r_id, value in _values(interval["report_payload"]):
                                self.acked.append((agent.config.ven_name, interval["dtstart"],
                                                   r_id, value))
                    if self.restarted:
                        self.after_restart[agent.config.ven_name] += 1
            return result
        client._perform_request = perform


def _values(payload):
    """(name, value) of a payloadFloat, or of each oadrPayloadResourceStatus flag."""
    status = payload.get("payload_resource_status")
    if status is None:
        return [(payload["r_id"], payload["value"])]
    return [(name, status[name]) for name in ("online", "manual_override")]


def _bytes(message):
    return message if isinstance(message, bytes) else message.encode()


@pytest.fixture
def vtn_files(tmp_path, database_url):
    plan = fleet_plan(VENS, unplugged=1)
    pki = ensure_dev_pki(tmp_path / "pki", [name for name, _, _ in plan])
    port = _free_port()
    config = tmp_path / "vtn.toml"
    config.write_text(
        f'vtn_id = "RESTART_VTN"\nport = {port}\ncert = "{pki.vtn.cert}"\nkey = "{pki.vtn.key}"\n'
        f'ca_file = "{pki.ca.cert}"\ndatabase = "{database_url}"\npoll_interval_s = 1\n'
        f'telemetry_interval_s = {REPORT_S}\n')
    return plan, pki, port, config


def _serve(config, log_path):
    log = open(log_path, "ab")
    return subprocess.Popen([sys.executable, "-m", "vtn.cli", "serve", "--config", str(config)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=os.getcwd())


async def test_sigkill_mid_event_loses_nothing_and_vens_carry_on(vtn_files, database_url,
                                                                 tmp_path):
    plan, pki, port, config = vtn_files
    clock = SystemClock()
    store = Store(database_url)
    for name, kind, _ in plan:
        store.enrol(Ven(ven_id=name, ven_name=name, fingerprint=pki.vens[name].fingerprint,
                        program_id=KINDS[kind][0], device_kind=kind))
    programs = {pid: model.load(pid) for pid in {KINDS[kind][0] for _, kind, _ in plan}}
    configs = [AgentConfig(
        ven_name=name, vtn_url=f"https://127.0.0.1:{port}/OpenADR2/Simple/2.0b",
        cert=pki.vens[name].cert, key=pki.vens[name].key, ca_file=pki.ca.cert,
        vtn_fingerprint=pki.vtn.fingerprint, adapter="sim",
        adapter_config=dict(spec, time_scale=120.0), capacity_kwh=spec["capacity_kwh"],
        max_discharge_kw=spec.get("max_discharge_kw", 0.0),
        prefs=OwnerPrefs(min_soc_pct=programs[KINDS[kind][0]].min_soc_pct), time_scale=120.0,
        state_url=f"sqlite:///{tmp_path / 'vens.sqlite'}")
        for name, kind, spec in plan]

    vtn = _serve(config, tmp_path / "vtn-1.log")
    fleet = None
    acks = Acks()
    try:
        await _wait_for_port(port, vtn)
        fleet = Fleet(configs, clock)
        for agent in fleet.agents:
            acks.instrument(agent)
        await asyncio.wait_for(fleet.start(), 60)
        assert all(agent.registered for agent in fleet.agents)
        registrations = {v.ven_id: v.registration_id for v in store.vens()}
        assert all(registrations.values())

        start = ceil_to(clock.now() + timedelta(seconds=2), timedelta(seconds=REPORT_S))
        events = [lifecycle.publish(store, program, start, start + timedelta(minutes=10),
                                    [v.ven_id for v in store.vens(program.id)], clock,
                                    setpoint_kw=5.0)
                  for program in programs.values()]
        # Mid-event: every VEN has answered the event and reported inside it.
        await eventually(lambda: all(t.opt_type for e in events
                                     for t in store.targets(e.event_id)), what="opt answers")
        await eventually(lambda: all(store.telemetry(name, start, None) for name, _, _ in plan),
                         what="telemetry inside the event")
        vtn.send_signal(signal.SIGKILL)
        vtn.wait(timeout=10)
        killed_at = clock.now()
        acked_before = len(acks.acked)
        await asyncio.sleep(REPORT_S * 2)           # the VENs run on while the VTN is down
        restarted_at = clock.now()

        vtn = _serve(config, tmp_path / "vtn-2.log")
        await _wait_for_port(port, vtn)
        acks.restarted = True
        # The VENs carry on: each has new reports acknowledged by the restarted VTN.
        await eventually(lambda: all(acks.after_restart[name] >= 2 for name, _, _ in plan),
                         timeout_s=45, what="reports acknowledged after the restart")
        # What the VENs recorded while the VTN was down arrives from their outboxes.
        await eventually(lambda: all(
            any(killed_at <= p.interval_start < restarted_at for p in store.telemetry(name))
            for name, _, _ in plan), timeout_s=45, what="intervals of the outage")
    finally:
        if fleet is not None:
            await fleet.stop()
        if vtn.poll() is None:
            vtn.send_signal(signal.SIGTERM)
            try:
                vtn.wait(timeout=10)
            except subprocess.TimeoutExpired:
                vtn.kill()

    assert acked_before > 0 and len(acks.acked) > acked_before
    # Registrations survived: same registration ids, nobody re-enrolled.
    assert {v.ven_id: v.registration_id for v in store.vens()} == registrations
    assert len(store.vens()) == VENS
    # Events and opt answers survived.
    for event in events:
        stored = store.event(event.event_id)
        assert stored is not None and stored.modification_number == 0
        assert all(t.opt_type in ("optIn", "optOut") for t in store.targets(event.event_id))
    # Every acknowledged interval is stored exactly once, with the value the VEN sent.
    column = {"kw": "kw", "kwh": "kwh", "soc": "soc_pct", "plugged_in": "plugged_in",
              "online": "online", "manual_override": "manual_override"}
    unplugged = {name for name, _, spec in plan if spec.get("plugged_in") is False}
    assert unplugged
    for name, _, _ in plan:
        flags = {(p.plugged_in, p.online) for p in store.telemetry(name) if p.online is not None}
        assert flags == {(name not in unplugged, True)}, (name, flags)
    for name, _, _ in plan:
        points = store.telemetry(name)
        starts = [p.interval_start for p in points]
        assert len(starts) == len(set(starts)), name
        by_start = {p.interval_start: p for p in points}
        # No gap: from the first interval on, each starts where the previous one ended.
        assert all(a.interval_end == b.interval_start for a, b in zip(points, points[1:])), name
        for ven, dtstart, r_id, value in acks.acked:
            if ven != name or r_id not in column:
                continue
            assert dtstart in by_start, (ven, dtstart)
            stored = getattr(by_start[dtstart], column[r_id])
            if isinstance(stored, bool):
                assert stored == (value >= 0.5), (ven, r_id)
            else:
                assert stored == pytest.approx(value), (ven, r_id)
    store.close()
