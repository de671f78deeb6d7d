"""The VEN's event model, from openleadr's own parser, and the agent's local store of it.

The agent tests run a VenAgent whose VTN is unreachable, fed events that
openleadr built and parsed (create_message -> parse_message): what they show
comes from the local store alone.
"""
import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from openleadr import objects
from openleadr.messaging import create_message, parse_message

from certs.pki import ensure_dev_pki
from flexadr.clock import SystemClock, ceil_to
from flexadr.demo import _free_port
from ven import events
from ven.agent import AgentConfig, VenAgent
from ven.events import Identity, Targets
from ven.openadr20b.events import from_openleadr
from ven.policy import OwnerPrefs
from ven.store import LocalDatabase

T0 = datetime(2026, 7, 1, 19, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)
INTERVAL = timedelta(seconds=1)
SCALE = 3600.0                       # one interval = one device hour
V2G = dict(kind="ev_v2g", capacity_kwh=98.0, soc_pct=60.0, max_charge_kw=11.5,
           max_discharge_kw=9.6, charge_target_pct=None, time_scale=SCALE)


def distributed(event_id, start, step, payloads, status="far", signal=("LOAD_DISPATCH", "setpoint"),
                targets=None, priority=None, startafter=None, measurement=None) -> dict:
    """An oadrDistributeEvent built by openleadr and parsed back by openleadr: what on_event gets."""
    event = objects.Event(
        event_descriptor=objects.EventDescriptor(
            event_id=event_id, modification_number=0, market_context="http://flexadr.org/programs/x",
            event_status=status, created_date_time=T0, priority=priority),
        active_period=objects.ActivePeriod(
            dtstart=start, duration=step * len(payloads),
            tolerance={"startafter": startafter} if startafter else None),
        event_signals=[objects.EventSignal(
            intervals=[objects.Interval(dtstart=start + n * step, duration=step, signal_payload=v, uid=n)
                       for n, v in enumerate(payloads)],
            signal_name=signal[0], signal_type=signal[1], signal_id=f"{event_id}-s",
            measurement=measurement)],
        # The agent's resource: a VEN that never reached its VTN has no venID yet.
        targets=targets or [objects.Target(resource_id="device")], response_required="always")
    event.event_descriptor.event_status = status       # objects.Event derives it from the wall clock
    _, payload = parse_message(create_message("oadrDistributeEvent", events=[event],
                                              request_id="r1", vtn_id="VTN"))
    (parsed,) = payload["events"]
    return parsed


def test_every_interval_priority_tolerance_and_target_survive_parsing_and_storing():
    power = objects.Measurement(name="powerReal", description="RealPower", unit="W", scale="k",
                                power_attributes=objects.PowerAttributes(hertz=60, voltage=240, ac=True))
    raw = distributed("e1", T0, HOUR, [5.0, 2.0, 4.0], priority=2, startafter=timedelta(minutes=5),
                      targets=[objects.Target(ven_id="ven-1"), objects.Target(resource_id="r1")],
                      measurement=power)
    event = from_openleadr(raw)
    (signal,) = event.signals
    assert [(i.uid, i.start, i.duration, i.payload) for i in signal.intervals] == [
        (0, T0, HOUR, 5.0), (1, T0 + HOUR, HOUR, 2.0), (2, T0 + 2 * HOUR, HOUR, 4.0)]
    assert (signal.name, signal.type, signal.unit, signal.scale) == ("LOAD_DISPATCH", "setpoint", "W", "k")
    assert (event.start, event.end, event.priority) == (T0, T0 + 3 * HOUR, 2)
    assert event.start_after == timedelta(minutes=5)
    assert event.targets == Targets(ven_ids=("ven-1",), resource_ids=("r1",))
    assert signal.at(T0 + 1.5 * HOUR).payload == 2.0 and signal.at(T0 + 3 * HOUR) is None
    assert events.from_json(events.to_json(event)) == event


def test_intervals_without_dtstart_follow_each_other_from_the_active_period():
    raw = {"event_descriptor": {"event_id": "e", "modification_number": 1, "event_status": "far"},
           "active_period": {"dtstart": T0, "duration": 2 * HOUR},
           "event_signals": {"signal_name": "SIMPLE", "signal_type": "level", "signal_id": "s",
                             "intervals": [{"uid": 1, "duration": HOUR, "signal_payload": 2},
                                           {"uid": 0, "duration": HOUR, "signal_payload": 1}]}}
    (signal,) = from_openleadr(raw).signals
    assert [(i.start, i.payload) for i in signal.intervals] == [(T0, 1.0), (T0 + HOUR, 2.0)]


@pytest.mark.parametrize("targets, targeted", [
    (Targets(), True),                                       # an empty eiTarget: every VEN it reaches
    (Targets(ven_ids=("ven-1",)), True),
    (Targets(resource_ids=("device",)), True),
    (Targets(group_ids=("north",)), True),
    (Targets(ven_ids=("ven-2",), resource_ids=("other",)), False),
    (Targets(party_ids=("p9",)), False),
])
def test_a_ven_answers_to_its_id_resources_and_groups(targets, targeted):
    assert Identity("ven-1", ("device",), ("north",)).targeted_by(targets) is targeted


def test_the_randomized_start_stays_within_the_tolerance_and_the_same_after_a_restart():
    offsets = [events.start_offset(f"ven-{n}", "e1", timedelta(minutes=10)) for n in range(50)]
    assert all(timedelta(0) <= o <= timedelta(minutes=10) for o in offsets)
    assert len(set(offsets)) > 10                              # spread, not one moment for all
    assert events.start_offset("ven-3", "e1", timedelta(minutes=10)) == offsets[3]
    assert events.start_offset("ven-3", "e1", timedelta(0)) == timedelta(0)


def test_a_randomized_start_moves_the_whole_schedule_and_its_boundaries():
    event = from_openleadr(distributed("e1", T0, HOUR, [5.0, 2.0]))
    late = event.shifted(timedelta(minutes=3))
    assert (late.start, late.end) == (event.start + timedelta(minutes=3), event.end + timedelta(minutes=3))
    assert late.boundaries() == [T0 + timedelta(minutes=3) + n * HOUR for n in range(3)]
    assert event.shifted(timedelta(0)) is event


@pytest.fixture
def offline(tmp_path):
    """Agent configs whose VTN does not answer, and one local database."""
    pki = ensure_dev_pki(tmp_path / "pki", ["ven-1"])
    database = LocalDatabase(f"sqlite:///{tmp_path / 'ven.sqlite'}")
    config = AgentConfig(
        ven_name="ven-1", vtn_url=f"https://127.0.0.1:{_free_port()}/OpenADR2/Simple/2.0b",
        cert=pki.vens["ven-1"].cert, key=pki.vens["ven-1"].key, ca_file=pki.ca.cert,
        vtn_fingerprint=pki.vtn.fingerprint, adapter="sim", adapter_config=V2G,
        capacity_kwh=98.0, max_discharge_kw=9.6, max_charge_kw=11.5,
        prefs=OwnerPrefs(min_soc_pct=20), time_scale=SCALE, sample_period=timedelta(minutes=5))
    return config, database


async def _sleep_until(when):
    await asyncio.sleep(max(0.0, (when - SystemClock().now()).total_seconds()))


async def test_an_agent_restarted_mid_event_resumes_the_interval_in_force(offline):
    config, database = offline
    first = VenAgent(config, SystemClock(), database=database)
    await first.start()
    assert not first.registered
    start = ceil_to(SystemClock().now() + timedelta(seconds=1), timedelta(seconds=1))
    assert await first.link.on_event(distributed("e1", start, INTERVAL, [5.0, 2.0, 4.0])) == "optIn"
    await _sleep_until(start + 1.3 * INTERVAL)                 # inside the second interval
    adapter = first.adapter
    await first.stop()
    await adapter.clear()                                      # the device forgets its commands
    assert adapter.device.power_kw() == 0

    second = VenAgent(config, SystemClock(), adapter=adapter, database=database)
    await second.start()
    try:
        assert adapter.device.power_kw() == pytest.approx(-2.0)     # the second interval, not the first
        await _sleep_until(start + 3 * INTERVAL)
        device = adapter.device
        assert -device.mean_kw(start + 2 * INTERVAL, start + 3 * INTERVAL) == pytest.approx(4.0, rel=1e-3)
    finally:
        await second.stop()


async def test_cancellations_known_or_not_never_fail_and_a_cancelled_event_stays_stopped(offline):
    config, database = offline
    agent = VenAgent(config, SystemClock(), database=database)
    await agent.start()
    try:
        unknown = distributed("never-seen", T0, HOUR, [1.0], status="cancelled")
        assert await agent.link.on_event(unknown) == "optIn"
        assert agent.store.event("never-seen") is None

        start = ceil_to(SystemClock().now() + timedelta(seconds=1), timedelta(seconds=1))
        await agent.link.on_event(distributed("e2", start, INTERVAL, [5.0, 2.0, 4.0]))
        assert await agent.link.on_event(distributed("e2", start, INTERVAL, [5.0, 2.0, 4.0],
                                                status="cancelled")) == "optIn"
        await _sleep_until(start + 2.5 * INTERVAL)             # two interval boundaries re-planned
        assert agent.adapter.device.mean_kw(start, start + 2.5 * INTERVAL) == 0
        assert agent.decisions["e2"].opt.value == "optOut"
    finally:
        await agent.stop()


async def test_a_car_plugged_in_mid_event_is_held_before_the_vtn_is_told(tmp_path, store):
    """Re-planning on a plug-in commands the device first: the two signed round trips
    that tell the VTN (oadrCreatedEvent, oadrCreateOpt) must not let the car charge."""
    from tests.hostile_peer import VEN, enrol, pki_for, running_vtn
    pki = pki_for(tmp_path)
    enrol(store, pki, registered=False)
    async with running_vtn(store, pki) as url:
        config = AgentConfig(
            ven_name=VEN, vtn_url=url, cert=pki.vens[VEN].cert, key=pki.vens[VEN].key,
            ca_file=pki.ca.cert, vtn_fingerprint=pki.vtn.fingerprint, adapter="sim",
            adapter_config=dict(kind="ev_managed", capacity_kwh=75.0, soc_pct=35.0,
                                max_charge_kw=7.2, charge_target_pct=90.0, plugged_in=False,
                                time_scale=SCALE),
            capacity_kwh=75.0, max_charge_kw=7.2, prefs=OwnerPrefs(min_soc_pct=20),
            time_scale=SCALE, sample_period=timedelta(minutes=5),
            state_url=f"sqlite:///{tmp_path / 'ven.sqlite'}")
        agent = VenAgent(config, SystemClock())
        device_kw_when_told: list[float] = []
        agent.link.client.add_hook("before_send_xml", lambda xml: "oadrCreatedEvent" in xml and
                                   device_kw_when_told.append(agent.adapter.device.power_kw()))
        await agent.start()
        try:
            assert agent.registered
            start = ceil_to(SystemClock().now() + timedelta(seconds=1), timedelta(seconds=1))
            delay = distributed("e1", start, 4 * INTERVAL, [0.0],
                                signal=("LOAD_CONTROL", "x-loadControlCapacity"),
                                targets=[objects.Target(ven_id=agent.ven_id)])
            assert await agent.link.on_event(delay) == "optOut"   # unplugged: nothing to delay
            await _sleep_until(start + INTERVAL)
            agent.adapter.device.set_plugged_in(True, SystemClock().now())
            async with asyncio.timeout(10):
                while not device_kw_when_told:
                    await asyncio.sleep(0.02)
        finally:
            await agent.stop()
    assert agent.decisions["e1"].opt.value == "optIn"
    assert device_kw_when_told[0] == 0.0      # held when the VTN heard of it, not charging
