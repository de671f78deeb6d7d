"""The sim adapter through the conformance kit, and the kit catching a disobedient device."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from adapters.base import Capability, Command, Discharge
from adapters.sim import SimAdapter
from adapters.testing import (
    DelayScenario,
    DischargeScenario,
    SimPeer,
    SimulatedTime,
    run_charge_delay,
    run_discharge,
)
from flexadr.clock import ManualClock

T0 = datetime(2026, 7, 1, 18, 0, tzinfo=timezone.utc)


def _sim(**spec) -> tuple[SimAdapter, SimPeer, SimulatedTime]:
    clock = ManualClock(T0)
    adapter = SimAdapter(spec, clock)
    return adapter, SimPeer(adapter.device, clock), SimulatedTime(clock)


async def test_sim_ev_obeys_a_charge_delay():
    adapter, peer, timebase = _sim(kind="ev_managed", capacity_kwh=60, soc_pct=40, max_charge_kw=7.2)
    report = await run_charge_delay(adapter, peer, timebase, DelayScenario(window_s=600, windows=2, gap_s=300))
    report.assert_passed()


async def test_sim_battery_discharges_to_its_floor_and_stops():
    # 10 kWh at 5 kW from 30 % to 20 %: the floor arrives ~12 min into a 30 min window.
    adapter, peer, timebase = _sim(kind="battery", capacity_kwh=10, soc_pct=30, max_charge_kw=5,
                                   max_discharge_kw=5, charge_target_pct=None)
    assert Capability.DISCHARGE in adapter.capabilities
    report = await run_discharge(adapter, peer, timebase,
                                 DischargeScenario(max_kw=5, min_soc_pct=20, window_s=1800, step_s=1))
    report.assert_passed()
    assert peer.soc_pct() == pytest.approx(20, abs=0.01)


class _IgnoresCommands(SimAdapter):
    """A device that accepts commands and does nothing: the kit must fail it."""

    async def apply(self, command: Command) -> None:
        self.device.advance(self.clock.now())


class _DrainsPastTheFloor(SimAdapter):
    """Passes a floor of 0 to the device whatever the command said."""

    async def apply(self, command: Command) -> None:
        if isinstance(command, Discharge):
            command = Discharge(command.start, command.end, command.max_kw, 0.0)
        await super().apply(command)


async def test_kit_fails_a_device_that_keeps_charging():
    clock = ManualClock(T0)
    adapter = _IgnoresCommands(dict(kind="ev_managed", capacity_kwh=60, soc_pct=40, max_charge_kw=7.2), clock)
    report = await run_charge_delay(adapter, SimPeer(adapter.device, clock), SimulatedTime(clock),
                                    DelayScenario(window_s=60, timeout_s=30))
    assert not report.passed
    failed = {c.name for c in report.failures()}
    assert "device stopped charging in the window" in failed
    with pytest.raises(AssertionError, match="stopped charging"):
        report.assert_passed()


async def test_kit_fails_a_device_that_breaks_the_floor():
    clock = ManualClock(T0)
    spec = dict(kind="battery", capacity_kwh=10, soc_pct=30, max_charge_kw=5, max_discharge_kw=5,
                charge_target_pct=None)
    adapter = _DrainsPastTheFloor(spec, clock)
    report = await run_discharge(adapter, SimPeer(adapter.device, clock), SimulatedTime(clock),
                                 DischargeScenario(max_kw=5, min_soc_pct=20, window_s=1800, step_s=1))
    failed = {c.name for c in report.failures()}
    assert {"floor held", "device stopped exporting at the floor"} <= failed


async def test_sim_readings_stream_follows_the_device():
    adapter, _, timebase = _sim(kind="ev_managed", capacity_kwh=60, soc_pct=40, max_charge_kw=7.2)
    stream = adapter.readings(interval_s=0)
    first = await anext(stream)
    timebase.clock.advance(__import__("datetime").timedelta(hours=1))
    second = await anext(stream)
    await stream.aclose()
    assert second.at > first.at
    assert second.kwh_imported == pytest.approx(7.2, rel=1e-6)
    assert second.soc_pct > first.soc_pct


async def test_sim_plug_schedule_moves_the_car_in_and_out():
    from datetime import timedelta
    arrive, leave = T0 + timedelta(hours=1), T0 + timedelta(hours=3)
    clock = ManualClock(T0)
    adapter = SimAdapter(dict(kind="ev_managed", capacity_kwh=60, soc_pct=40, max_charge_kw=6,
                              plug_windows=[(arrive.isoformat(), leave.isoformat())]), clock)
    away = await adapter.read()
    assert not away.plugged_in and away.kw == 0
    clock.set(arrive + timedelta(minutes=30))
    home = await adapter.read()
    assert home.plugged_in and home.kw == 6
    assert home.kwh_imported == pytest.approx(3.0)  # charging began on arrival, not before
    clock.set(leave + timedelta(hours=5))
    gone = await adapter.read()
    assert not gone.plugged_in and gone.kw == 0
    assert gone.kwh_imported == pytest.approx(12.0)  # two hours at 6 kW, nothing after leaving


async def test_sim_manual_unplug_holds_until_the_next_scheduled_edge():
    from datetime import timedelta
    clock = ManualClock(T0)
    adapter = SimAdapter(dict(kind="ev_managed", capacity_kwh=60, soc_pct=40, max_charge_kw=6,
                              plug_windows=[(T0, T0 + timedelta(hours=2)), (T0 + timedelta(hours=3),
                                                                           T0 + timedelta(hours=4))]), clock)
    adapter.device.set_plugged_in(False, T0 + timedelta(minutes=30))
    clock.set(T0 + timedelta(hours=1))
    assert not (await adapter.read()).plugged_in
    clock.set(T0 + timedelta(hours=3, minutes=30))
    back = await adapter.read()
    assert back.plugged_in
    assert back.kwh_imported == pytest.approx(3.0 + 3.0)  # 30 min before the unplug, 30 min after return


def test_sim_plug_windows_need_timezones():
    with pytest.raises(ValueError, match="timezone"):
        SimAdapter(dict(kind="ev_managed", capacity_kwh=60, soc_pct=40, max_charge_kw=6,
                        plug_windows=[("2026-07-01T18:00", "2026-07-01T20:00")]), ManualClock(T0))


class _NaiveClockReadings(SimAdapter):
    async def read(self):
        reading = await super().read()
        from dataclasses import replace
        return replace(reading, at=reading.at.replace(tzinfo=None))


async def test_kit_fails_naive_telemetry_timestamps():
    clock = ManualClock(T0)
    adapter = _NaiveClockReadings(dict(kind="ev_managed", capacity_kwh=60, soc_pct=40, max_charge_kw=7.2), clock)
    report = await run_charge_delay(adapter, SimPeer(adapter.device, clock), SimulatedTime(clock),
                                    DelayScenario(window_s=60))
    assert [c.name for c in report.failures()] == ["telemetry timestamps are timezone-aware"]


class _KeepsOnlyTheLastCommand(SimAdapter):
    """What a one-profile-id adapter amounts to: each apply replaces the previous."""

    async def apply(self, command: Command) -> None:
        self.device.advance(self.clock.now())
        self.device.clear()
        self.device.apply(command)


async def test_kit_fails_an_adapter_that_forgets_earlier_commands():
    clock = ManualClock(T0)
    adapter = _KeepsOnlyTheLastCommand(dict(kind="ev_managed", capacity_kwh=60, soc_pct=40, max_charge_kw=7.2),
                                       clock)
    report = await run_charge_delay(adapter, SimPeer(adapter.device, clock), SimulatedTime(clock),
                                    DelayScenario(window_s=60, windows=2, gap_s=60, timeout_s=30))
    failed = {c.name for c in report.failures()}
    assert "device stopped charging in the window (window 1)" in failed
    assert not any("window 2" in name for name in failed)


async def test_sim_v2g_car_discharges_then_resumes_charging():
    adapter, peer, timebase = _sim(kind="ev_v2g", capacity_kwh=60, soc_pct=50, max_charge_kw=7.2,
                                   max_discharge_kw=10, charge_target_pct=50)
    report = await run_discharge(adapter, peer, timebase,
                                 DischargeScenario(max_kw=10, min_soc_pct=45, window_s=7200, step_s=5))
    report.assert_passed()


async def test_sim_battery_charges_to_the_storm_target_and_stops():
    from adapters.testing import ChargeScenario, run_charge
    adapter, peer, timebase = _sim(kind="battery", capacity_kwh=10, soc_pct=80, max_charge_kw=5,
                                   max_discharge_kw=5, charge_target_pct=None)
    report = await run_charge(adapter, peer, timebase,
                              ChargeScenario(charge_kw=5, target_soc_pct=100, window_s=7200, step_s=1))
    report.assert_passed()
