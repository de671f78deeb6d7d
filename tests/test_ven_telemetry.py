"""Readings -> reporting intervals: energy-based kW, nothing invented."""
import asyncio
import time
from datetime import datetime, timedelta, timezone

import pytest

from adapters.base import Reading
from flexadr.clock import ManualClock, SystemClock
from tests.harness import running_site
from ven.agent import VenAgent
from ven.openadr20b.client import ReportRequest
from ven.store import OutboxInterval
from ven.telemetry import IntervalRecorder, next_sample_tick
from ven.openadr20b.uplink import STATUS, USAGE

T0 = datetime(2026, 7, 1, 19, 0, tzinfo=timezone.utc)   # on a 15-minute boundary
M = timedelta(minutes=1)


def reading(at, imported=0.0, exported=0.0, soc=50.0, plugged_in=True):
    return Reading(at, 0.0, imported, exported, soc, plugged_in)


def recorder():
    return IntervalRecorder(interval=15 * M, sample_period=M)


def test_first_interval_opens_on_a_boundary_and_closes_on_the_next():
    rec = recorder()
    assert rec.observe(T0 - 7 * M, reading(T0 - 7 * M)) is None      # mid-interval: not reported
    assert rec.observe(T0, reading(T0, exported=1.0)) is None        # opens [T0, T0+15)
    for minute in range(1, 15):
        assert rec.observe(T0 + minute * M, reading(T0 + minute * M, exported=1.5)) is None
    closed = rec.observe(T0 + 15 * M, reading(T0 + 15 * M, exported=2.0, soc=45))
    assert (closed.start, closed.end) == (T0, T0 + 15 * M)
    assert closed.kw == pytest.approx(-4.0)          # 1 kWh out in a quarter hour
    assert closed.kwh == pytest.approx(-1.0)
    assert closed.soc_pct == 45 and closed.online and closed.plugged_in


def test_intervals_follow_each_other_without_gaps():
    rec = recorder()
    rec.observe(T0, reading(T0))
    first = rec.observe(T0 + 15 * M, reading(T0 + 15 * M, imported=1))
    second = rec.observe(T0 + 30 * M, reading(T0 + 30 * M, imported=3))
    assert first.end == second.start
    assert second.kw == pytest.approx(8.0)


def test_a_missed_boundary_is_not_invented():
    rec = recorder()
    rec.observe(T0, reading(T0))
    # the agent was down from T0+5 to T0+20: [T0, T0+15) and [T0+15, T0+30) were not seen whole
    assert rec.observe(T0 + 30 * M, reading(T0 + 30 * M, imported=5)) is None
    closed = rec.observe(T0 + 45 * M, reading(T0 + 45 * M, imported=6))
    assert (closed.start, closed.kw) == (T0 + 30 * M, pytest.approx(4.0))


def test_a_device_silent_at_the_boundary_is_reported_offline_without_kw():
    rec = recorder()
    rec.observe(T0, reading(T0))
    closed = rec.observe(T0 + 15 * M, None)
    assert closed.online is False and closed.kw is None and closed.soc_pct is None


def test_a_device_silent_inside_the_interval_marks_it_offline_but_keeps_energy():
    rec = recorder()
    rec.observe(T0, reading(T0))
    rec.observe(T0 + 5 * M, None)
    closed = rec.observe(T0 + 15 * M, reading(T0 + 15 * M, imported=1))
    assert closed.online is False and closed.kw == pytest.approx(4.0)


def test_time_scale_turns_wall_seconds_into_device_hours():
    rec = IntervalRecorder(interval=timedelta(seconds=5), sample_period=timedelta(seconds=1),
                           time_scale=720)        # 5 wall seconds = 1 device hour
    start = datetime(2026, 7, 1, 19, 0, 5, tzinfo=timezone.utc)
    rec.observe(start, reading(start))
    closed = rec.observe(start + timedelta(seconds=5), reading(start, exported=3.0))
    assert closed.kw == pytest.approx(-3.0)


def test_sample_period_must_divide_the_interval():
    with pytest.raises(ValueError):
        IntervalRecorder(interval=15 * M, sample_period=7 * M)


def test_a_late_read_is_wound_back_to_the_boundary_at_the_power_seen():
    rec = recorder()
    rec.observe(T0, reading(T0))
    late = T0 + 15 * M + timedelta(seconds=30)
    # 30 s after the boundary the car charges at 6 kW (since the boundary): 0.05 kWh of it
    # belongs to the next interval, not this one.
    closed = rec.observe(T0 + 15 * M, Reading(late, 6.0, 0.05, 0.0, 50.0, True))
    assert closed.kwh == pytest.approx(0.0, abs=1e-12) and closed.kw == pytest.approx(0.0, abs=1e-9)


def test_every_interval_of_a_silent_device_is_reported_offline():
    rec = recorder()
    rec.observe(T0, reading(T0))
    closed = [rec.observe(T0 + k * 15 * M, None) for k in (1, 2, 3)]
    assert [(c.start, c.online, c.kw) for c in closed] == [
        (T0 + k * 15 * M, False, None) for k in (0, 1, 2)]
    back = rec.observe(T0 + 60 * M, reading(T0 + 60 * M, imported=9))
    assert back.online is False and back.kw is None          # silent at its start
    normal = rec.observe(T0 + 75 * M, reading(T0 + 75 * M, imported=10))
    assert normal.online and normal.kw == pytest.approx(4.0)


def test_a_sample_read_late_still_closes_the_interval_of_its_tick():
    rec = recorder()
    rec.observe(T0, reading(T0))
    late = T0 + 15 * M + 3 * M                      # 3 minutes late, charging 4 kW since the boundary
    closed = rec.observe(T0 + 15 * M, Reading(late, 4.0, 1.0 + 0.2, 0.0, 50.0, True))
    assert closed.end == T0 + 15 * M and closed.kwh == pytest.approx(1.0)
    assert rec.observe(T0 + 20 * M, reading(T0 + 20 * M)) is None   # mid-interval


def test_after_a_gap_only_an_on_time_sample_starts_a_new_run():
    rec = recorder()
    late = T0 + 2 * M                                   # the agent (re)starts 2 minutes late
    assert rec.observe(late, reading(late)) is None
    assert rec.observe(T0 + 15 * M, reading(T0 + 15 * M)) is None        # opens here, not at T0
    closed = rec.observe(T0 + 30 * M, reading(T0 + 30 * M, imported=1))
    assert closed.start == T0 + 15 * M


class MeteredDevice:
    """A device with an energy meter whose power follows `kw_at(t)` (piecewise constant
    between `edges`), read on a manual clock: the registers are exact at every moment."""

    def __init__(self, kw_at, edges):
        self.kw_at, self.edges = kw_at, sorted(edges)

    def net_kwh(self, until: datetime) -> float:
        points = [T0] + [e for e in self.edges if T0 < e < until] + [until]
        return sum(self.kw_at(a) * (b - a).total_seconds() / 3600 for a, b in zip(points, points[1:]))

    def read(self, at: datetime) -> Reading:
        net = self.net_kwh(at)
        return Reading(at, self.kw_at(at), max(net, 0.0), max(-net, 0.0), 50.0, True)


def _sample_busily(busy_s: list[float], device: MeteredDevice | None = None) -> list:
    """The agent's sampling loop on a manual clock: one sample per 15-minute interval,
    each taking busy_s[k] seconds (a loaded machine: a slow read, a re-plan, a busy
    event loop); the device draws 4 kW throughout unless given. The intervals closed."""
    device = device or MeteredDevice(lambda t: 4.0, [])
    clock, period = ManualClock(T0 - M), 15 * M
    rec = IntervalRecorder(interval=period, sample_period=period)
    tick, closed = None, []
    for busy in busy_s:
        tick = next_sample_tick(tick, clock.now(), period)
        clock.set(max(clock.now(), tick))              # asleep until the tick is due
        done = rec.observe(tick, device.read(clock.now()))
        closed += [done] if done is not None else []
        clock.advance(timedelta(seconds=busy))
    return closed


def test_a_sample_late_by_most_of_a_period_is_taken_late_not_skipped():
    on_time = _sample_busily([1.0] * 6)
    # The third sample keeps the agent busy past the next tick (by 1 minute), the fifth
    # by 5 minutes, the sixth by 14: each is still read for its tick.
    late = _sample_busily([1.0, 1.0, 16 * 60.0, 1.0, 20 * 60.0, 24 * 60.0, 1.0])
    assert [(c.start, c.end) for c in late] == [(c.start, c.end) for c in on_time] + [
        (T0 + 75 * M, T0 + 90 * M)]
    assert [(c.start, c.end) for c in on_time] == [(T0 + k * 15 * M, T0 + (k + 1) * 15 * M)
                                                  for k in range(5)]
    assert all(c.kw == pytest.approx(4.0) for c in late)


def _event_device() -> MeteredDevice:
    """Charging at 4 kW, an event from T0+30 to T0+60 (5 kW out), idle after it."""
    def kw_at(t):
        return 4.0 if t < T0 + 30 * M else -5.0 if t < T0 + 60 * M else 0.0
    return MeteredDevice(kw_at, [T0 + 30 * M, T0 + 60 * M])


def test_late_readings_across_an_event_give_each_interval_the_energy_the_meter_counted():
    device = _event_device()
    # The readings for T0+30, T0+45 and T0+60 are 10, 12 and 14 minutes late (most of a
    # period): the event's edges and the interval between them.
    closed = _sample_busily([1.0, 25 * 60.0, 17 * 60.0, 17 * 60.0, 1.0, 1.0, 1.0], device)
    assert [(c.start, c.end) for c in closed] == [(T0 + k * 15 * M, T0 + (k + 1) * 15 * M)
                                                 for k in range(6)]
    for c in closed:
        assert c.kwh == pytest.approx(device.net_kwh(c.end) - device.net_kwh(c.start)), c.start
    assert [round(c.kw, 9) for c in closed] == [4.0, 4.0, -5.0, -5.0, 0.0, 0.0]


def test_a_device_that_switches_late_is_measured_where_it_switched():
    # The event starts at T0+30, but the device (an adapter that writes at the edge on a
    # busy loop) switches 2 minutes late; the agent reads it 6 minutes late. The meter's
    # delta between the readings on either side of the boundary says when it switched.
    lag = 2 * M

    def kw_at(t):
        return 4.0 if t < T0 + 30 * M + lag else -5.0
    device = MeteredDevice(kw_at, [T0 + 30 * M + lag])
    closed = _sample_busily([1.0, 21 * 60.0, 1.0, 1.0, 1.0], device)
    assert len(closed) == 4
    for c in closed:
        assert c.kwh == pytest.approx(device.net_kwh(c.end) - device.net_kwh(c.start)), c.start
    # 4 kW for the lag is in the event's first interval, where the device drew it.
    assert closed[2].kwh == pytest.approx(4.0 * lag / (60 * M) - 5.0 * (15 * M - lag) / (60 * M))


def test_a_battery_that_runs_down_just_after_a_boundary_is_measured_where_it_stopped():
    # Discharging 5 kW, the battery reaches its floor at T0+32 and stops; the reading for
    # T0+30 is 8 minutes late and sees 0 kW. Wound back at 0 kW from there, the 2 minutes
    # of discharge after the boundary would land in the interval before it.
    def kw_at(t):
        return -5.0 if t < T0 + 32 * M else 0.0
    device = MeteredDevice(kw_at, [T0 + 32 * M])
    closed = _sample_busily([1.0, 23 * 60.0, 1.0, 1.0], device)
    assert [c.start for c in closed] == [T0, T0 + 15 * M, T0 + 30 * M]
    for c in closed:
        assert c.kwh == pytest.approx(device.net_kwh(c.end) - device.net_kwh(c.start)), c.start
    assert closed[2].kwh == pytest.approx(-5.0 * 2 / 60)


def test_two_switches_between_the_readings_keep_the_meters_total():
    # Up 4 kW, down 5 kW at T0+29, idle from T0+31: two switches around the boundary,
    # read 8 minutes late. Which side the energy lands on is an estimate; the sum is not.
    def kw_at(t):
        return 4.0 if t < T0 + 29 * M else -5.0 if t < T0 + 31 * M else 0.0
    device = MeteredDevice(kw_at, [T0 + 29 * M, T0 + 31 * M])
    closed = _sample_busily([1.0, 23 * 60.0, 1.0, 1.0], device)
    assert sum(c.kwh for c in closed) == pytest.approx(device.net_kwh(closed[-1].end)
                                                       - device.net_kwh(closed[0].start))


def test_an_agent_more_than_a_period_behind_goes_on_from_the_latest_tick():
    closed = _sample_busily([1.0, 1.0, 31 * 60.0, 1.0, 1.0])
    # The sample at T0+30 min keeps the agent busy until T0+61: the tick at T0+45 is more
    # than a period behind, so [T0+30, T0+60) cannot be known; sampling goes on at T0+60.
    assert [(c.start, c.end) for c in closed] == [(T0, T0 + 15 * M), (T0 + 15 * M, T0 + 30 * M),
                                                 (T0 + 60 * M, T0 + 75 * M)]


async def test_uplink_keeps_rows_until_the_vtn_has_asked_for_every_offered_report(tmp_path):
    """Our VTN asks for one report per poll: a row acknowledged after the USAGE request
    but before the STATUS one would never carry its status flags."""
    async with running_site(tmp_path, 900.0) as site:
        agent = VenAgent(site.agent_config("ven-a"), SystemClock(), database=site.database)
        client, uplink = agent.link.client, agent.link.uplink
        assert client.offered() == {USAGE, STATUS}
        start = datetime(2024, 7, 1, 16, tzinfo=timezone.utc)
        agent.store.add_interval(OutboxInterval(ven_name="ven-a", interval_start=start,
                                                interval_end=start + timedelta(minutes=15),
                                                kw=-5.0, kwh=1.25, soc_pct=80.0))
        client.requested[USAGE] = ReportRequest("r1", "ven-a-usage", USAGE, ("kw",), None)
        client.first_request_at = time.monotonic()

        assert client.waiting_for_requests(settle_s=30)
        assert await uplink.flush_once() is None and agent.store.backlog() == 1
        # a VTN that never asks for STATUS gets USAGE once the settle time is over
        client.first_request_at -= 31
        assert not client.waiting_for_requests(settle_s=30)
        client.requested[STATUS] = ReportRequest("r2", "ven-a-status", STATUS, ("soc",), None)
        client.first_request_at = time.monotonic()
        assert not client.waiting_for_requests(settle_s=30)     # everything offered is asked


async def test_our_status_report_goes_out_as_oadr_payload_resource_status(tmp_path):
    """TELEMETRY_STATUS carries oadrOnline / oadrManualOverride in oadrPayloadResourceStatus,
    and the VTN stores them by that meaning (issue 12 item 8)."""
    from flexadr import xsd
    async with running_site(tmp_path, 900.0) as site:
        agent = VenAgent(site.agent_config("ven-a"), SystemClock(), database=site.database)
        sent: list[str] = []
        agent.link.client.add_hook("before_send_xml", sent.append)
        await agent.start()
        site.agents.append(agent)
        store = site.store

        def status_points():
            return [p for p in store.telemetry("ven-a")
                    if p.online is not None and p.kw is not None]
        deadline = time.monotonic() + 30
        while not status_points():
            assert time.monotonic() < deadline, "no status telemetry"
            await asyncio.sleep(0.2)
        point = status_points()[0]
        assert (point.online, point.manual_override, point.plugged_in) == (True, False, True)
        status = [x for x in sent if "TELEMETRY_STATUS" in x and "oadrUpdateReport" in x]
        assert status and "<oadr:oadrPayloadResourceStatus>" in status[0]
        assert "<oadr:oadrOnline>true</oadr:oadrOnline>" in status[0]
        xsd.validate(status[0])
        assert store.raw_telemetry("ven-a") == [] and store.quarantine("ven-a") == []


async def test_a_quarantined_interval_leaves_the_outbox(tmp_path):
    """454 means the VTN kept everything (the bad value quarantined): re-sending cannot
    change that, so the uplink acknowledges the rows instead of retrying them forever."""
    async with running_site(tmp_path, 900.0) as site:
        agent = await site.add_agent(site.agent_config("ven-a"))
        deadline = time.monotonic() + 30
        while not ({USAGE, STATUS} <= agent.link.client.requested.keys()):
            assert time.monotonic() < deadline, "reports not requested"
            await asyncio.sleep(0.2)
        start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=1)
        agent.store.add_interval(OutboxInterval(ven_name="ven-a", interval_start=start,
                                                interval_end=start + site.report_wall,
                                                kw=5000.0, kwh=0.001, soc_pct=50.0))
        agent.link.uplink.wake.set()

        def quarantined():
            return [q for q in site.store.quarantine("ven-a") if q.interval_start == start]
        while not quarantined():
            assert time.monotonic() < deadline + 30, "not quarantined"
            await asyncio.sleep(0.2)
        assert quarantined()[0].reason.startswith("kw 5000 is beyond +-1000 kW")
        while any(row.interval_start == start for row in agent.store.oldest_intervals(1000)):
            assert time.monotonic() < deadline + 30, "the row stayed in the outbox"
            await asyncio.sleep(0.2)
        # The rest of that interval was stored (and is not sent again).
        (point,) = [p for p in site.store.telemetry("ven-a") if p.interval_start == start]
        assert (point.kw, point.kwh, point.soc_pct) == (None, 0.001, 50.0)
