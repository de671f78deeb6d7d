"""VEN agents keep executing and lose no telemetry when the network, or the agent, fails.

Time is compressed (time_scale): the program's 15-minute interval is one
wall-clock second, an hour is four.
"""
import asyncio
from datetime import timedelta

import pytest

from adapters.base import CommandRefused, DeviceDisconnected
from adapters.sim import SimAdapter
from flexadr.clock import SystemClock, ceil_to
from schedules import model
from tests.harness import Site, running_site
from vtn.lifecycle import publish

SCALE = 900.0     # OpenADR durations are whole seconds: 15 min -> 1 s
HOUR = timedelta(hours=1) / SCALE


async def _until(predicate, timeout_s: float, step_s: float = 0.05) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(step_s)


async def _sleep_until(when) -> None:
    await asyncio.sleep(max(0.0, (when - SystemClock().now()).total_seconds()))


def _publish(site: Site, lead: timedelta, duration: timedelta, setpoint_kw=5.0):
    clock = SystemClock()
    start = ceil_to(clock.now() + lead, site.report_wall)
    targets = [ven.ven_id for ven in site.store.vens()]
    return publish(site.store, model.load("connected_solutions"), start, start + duration, targets,
                   clock, setpoint_kw=setpoint_kw)


def _assert_contiguous(points, step):
    starts = [p.interval_start for p in points]
    assert len(starts) == len(set(starts)), "duplicate intervals"
    for before, after in zip(points, points[1:]):
        assert after.interval_start - before.interval_start == step, (before, after)


@pytest.fixture
async def site(tmp_path):
    async with running_site(tmp_path, SCALE) as site:
        yield site


async def test_event_runs_through_a_network_cut_and_every_interval_arrives_once(site):
    agent = await site.add_agent(site.agent_config("ven-a"))
    assert agent.registered
    event = _publish(site, lead=2 * HOUR, duration=2 * HOUR)
    await _until(lambda: event.event_id in agent.decisions, timeout_s=10)
    await site.proxy.cut()                             # before the event starts
    cut_at = SystemClock().now()
    await _sleep_until(event.end_utc + 2 * HOUR)       # the whole event and two more hours
    assert agent.store.backlog() > 0                   # the outbox held what could not be sent
    await site.proxy.start()
    restored_at = SystemClock().now()
    await _until(lambda: agent.store.backlog() == 0, timeout_s=30)

    device = agent.adapter.device
    planned_kw = agent.decisions[event.event_id].commands[0].max_kw
    assert -device.mean_kw(event.start_utc, event.end_utc) == pytest.approx(planned_kw, rel=0.01)
    points = site.store.telemetry("ven-a")
    _assert_contiguous(points, site.report_wall)
    assert all(p.online is True and p.plugged_in is True for p in points)   # status kept too
    assert points[0].interval_start < cut_at and points[-1].interval_end > restored_at
    during = [p for p in points if event.start_utc <= p.interval_start < event.end_utc]
    assert len(during) == 8                            # 2 h of 15-minute intervals
    assert all(p.kw == pytest.approx(-planned_kw, rel=0.02) for p in during)


async def test_an_agent_killed_mid_event_resumes_it_and_reports_the_downtime_as_missing(site):
    config = site.agent_config("ven-a")
    first = await site.add_agent(config)
    event = _publish(site, lead=1 * HOUR, duration=2 * HOUR)
    await _until(lambda: event.event_id in first.decisions, timeout_s=10)
    await _sleep_until(event.start_utc + HOUR)
    adapter = first.adapter
    await first.stop()                 # the agent process dies...
    site.agents.remove(first)
    await adapter.clear()              # ...and the device reverts to its own schedule
    killed_at = SystemClock().now()
    await asyncio.sleep((HOUR / 2).total_seconds())
    assert adapter.device.power_kw() == 0

    second = await site.add_agent(config, adapter=adapter)     # same local store, same device
    restarted_at = SystemClock().now()
    assert second.decisions[event.event_id].opt.value == "optIn"
    assert adapter.device.power_kw() < 0                        # discharging again
    await _sleep_until(event.end_utc + HOUR)
    await _until(lambda: second.store.backlog() == 0, timeout_s=10)

    points = site.store.telemetry("ven-a")
    starts = [p.interval_start for p in points]
    assert len(starts) == len(set(starts))
    gaps = [(a.interval_end, b.interval_start) for a, b in zip(points, points[1:])
            if b.interval_start != a.interval_end]
    assert len(gaps) == 1                              # only the downtime is missing
    gap_start, gap_end = gaps[0]
    assert gap_start <= killed_at + site.report_wall and gap_end >= restarted_at
    assert gap_end - gap_start <= (restarted_at - killed_at) + 3 * site.report_wall


async def test_owner_opt_out_mid_event_stops_the_device_and_reaches_the_vtn(site):
    agent = await site.add_agent(site.agent_config("ven-a"))
    event = _publish(site, lead=1 * HOUR, duration=2 * HOUR)
    await _until(lambda: event.event_id in agent.decisions, timeout_s=10)
    await _sleep_until(event.start_utc + HOUR)
    device = agent.adapter.device
    assert device.power_kw() < 0
    await agent.opt_out(event.event_id)
    opted_out_at = SystemClock().now()
    assert device.power_kw() == 0
    await _until(lambda: site.store.targets(event.event_id)[0].opt_type == "optOut", timeout_s=5)
    await _sleep_until(event.end_utc)
    assert device.mean_kw(opted_out_at + agent.sample_period, event.end_utc) == 0
    assert agent.decisions[event.event_id].opt.value == "optOut"


async def test_storm_warning_before_an_event_keeps_the_battery_charging_and_opts_out(site):
    agent = await site.add_agent(site.agent_config("ven-a", soc_pct=60.0))
    event = _publish(site, lead=2 * HOUR, duration=2 * HOUR)
    await _until(lambda: event.event_id in agent.decisions, timeout_s=10)
    assert agent.decisions[event.event_id].opt.value == "optIn"
    await agent.set_conditions(storm_warning_until=event.end_utc + HOUR)
    assert agent.decisions[event.event_id].opt.value == "optOut"
    await _until(lambda: site.store.targets(event.event_id)[0].opt_type == "optOut", timeout_s=5)
    await _sleep_until(event.end_utc)
    device = agent.adapter.device
    device.advance(event.end_utc)
    assert device.soc_pct == pytest.approx(100.0)                 # charged to full...
    assert all(seg.kw >= 0 for seg in device.history)             # ...and never discharged


class FlakySim(SimAdapter):
    """The simulator, behind a link the test can break: a device that stops answering."""
    down = False

    async def read(self):
        if self.down:
            raise DeviceDisconnected("link to the battery is down")
        return await super().read()

    async def apply(self, command):
        if self.down:
            raise DeviceDisconnected("link to the battery is down")
        await super().apply(command)


async def test_a_device_that_stops_answering_is_reported_offline_and_rejoins_the_event(site):
    config = site.agent_config("ven-a")
    adapter = FlakySim(config.adapter_config, SystemClock())
    agent = await site.add_agent(config, adapter=adapter)
    adapter.down = True
    event = _publish(site, lead=3 * HOUR, duration=2 * HOUR)
    await _until(lambda: event.event_id in agent.decisions, timeout_s=10)
    assert agent.decisions[event.event_id].reason == "device not answering"
    await _until(lambda: site.store.targets(event.event_id)[0].opt_type == "optOut", timeout_s=5)
    await asyncio.sleep((HOUR / 2).total_seconds())
    assert not agent.device_online
    adapter.down = False                                   # the link comes back before the event
    await _until(lambda: agent.decisions[event.event_id].opt.value == "optIn", timeout_s=10)
    await _until(lambda: site.store.targets(event.event_id)[0].opt_type == "optIn", timeout_s=5)
    await _sleep_until(event.end_utc + HOUR)
    await _until(lambda: agent.store.backlog() == 0, timeout_s=10)

    assert -adapter.device.mean_kw(event.start_utc, event.end_utc) > 1.0   # it took part
    points = site.store.telemetry("ven-a")
    offline = [p for p in points if p.online is False]
    assert len(offline) >= 2 and all(p.kw is None for p in offline)
    assert any(p.online for p in points if p.interval_start >= event.start_utc)


class RefusingSim(SimAdapter):
    """A device that answers, but says no to commands while `refusing`."""
    refusing = False
    refused = 0

    async def apply(self, command):
        if self.refusing:
            self.refused += 1
            raise CommandRefused("charger has no free profile slot")
        await super().apply(command)


async def test_a_device_that_refuses_a_command_is_not_silent_and_is_offered_it_again(site):
    config = site.agent_config("ven-a")
    adapter = RefusingSim(config.adapter_config, SystemClock())
    agent = await site.add_agent(config, adapter=adapter)
    adapter.refusing = True
    event = _publish(site, lead=HOUR, duration=2 * HOUR)
    await _until(lambda: event.event_id in agent.decisions, timeout_s=10)
    online = []
    while SystemClock().now() < event.start_utc + HOUR:
        online.append(agent.device_online)
        await asyncio.sleep(0.05)
    assert adapter.refused >= 1 and all(online)
    adapter.refusing = False
    await agent.set_conditions()             # any re-plan offers the refused command again
    await _sleep_until(event.end_utc + HOUR)
    await _until(lambda: agent.store.backlog() == 0, timeout_s=10)

    assert -adapter.device.mean_kw(event.start_utc + HOUR, event.end_utc) > 1.0     # it took part
    points = [p for p in site.store.telemetry("ven-a")
              if event.start_utc <= p.interval_start < event.end_utc]
    assert len(points) == 8 and all(p.online for p in points)    # readings went on throughout
