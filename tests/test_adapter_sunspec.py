"""sunspec adapter against a pymodbus server whose map is built from pysunspec2's model definitions."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from adapters.base import CommandRefused, DeviceDisconnected, DeviceTimeout, Discharge
from adapters.sunspec import SunSpecAdapter
from adapters.testing import DelayScenario, DischargeScenario, WallTime, run_charge_delay, run_discharge
from adapters.testing.ev_physics import BatteryPhysics
from adapters.testing.sunspec_battery import SunSpecBatterySim
from flexadr.clock import SystemClock

pytestmark = pytest.mark.timeout(30)


async def _rig(battery: BatteryPhysics, **config):
    sim = SunSpecBatterySim(battery)
    await sim.start()
    adapter = SunSpecAdapter({"port": sim.port, "timeout_s": 1, **config}, SystemClock())
    await adapter.start()
    return adapter, sim


@pytest.fixture
async def battery_rig():
    # 10 kWh, time x300: 5 kW takes 30 % -> 20 % in ~2.3 s of a 4 s window.
    adapter, sim = await _rig(BatteryPhysics(capacity_kwh=10, soc_pct=30, max_charge_kw=5, max_discharge_kw=5,
                                             charge_target_pct=None, time_scale=300))
    yield adapter, sim
    await adapter.stop()
    await sim.stop()


async def test_discharge_event_passes_the_conformance_kit(battery_rig):
    adapter, sim = battery_rig
    report = await run_discharge(adapter, sim, WallTime(),
                                 DischargeScenario(max_kw=4, min_soc_pct=20, lead_s=1, window_s=4))
    report.assert_passed()
    names = [name for name, _ in sim.writes]
    # The reserve and rate land before the mode switch, and the mode is released after.
    assert names.index("MinRsvPct") < names.index("StorCtl_Mod")
    assert names.index("OutWRte") < names.index("StorCtl_Mod")
    assert ("OutWRte", 80.0) in sim.writes and ("MinRsvPct", 20.0) in sim.writes
    assert sim.storage.StorCtl_Mod.value == 0


async def test_charge_delay_event_passes_the_conformance_kit():
    adapter, sim = await _rig(BatteryPhysics(capacity_kwh=20, soc_pct=50, max_charge_kw=5, max_discharge_kw=5))
    try:
        report = await run_charge_delay(adapter, sim, WallTime(),
                                        DelayScenario(lead_s=1, window_s=1, windows=2, gap_s=1))
        report.assert_passed()
        assert ("InWRte", 0.0) in sim.writes
    finally:
        await adapter.stop()
        await sim.stop()


async def test_revert_timer_ends_the_discharge_without_the_ven(battery_rig):
    adapter, sim = battery_rig
    now = adapter.clock.now()
    await adapter.apply(Discharge(now, now + timedelta(seconds=1), 2.0, 10.0))
    await adapter.stop()  # the VEN vanishes: no release write will come

    async def exporting(flag: bool):
        while (sim.power_kw() < -0.1) != flag:
            await asyncio.sleep(0.02)
    await asyncio.wait_for(exporting(True), 5)
    await asyncio.wait_for(exporting(False), 5)
    assert sim.storage.StorCtl_Mod.value == 0


async def test_readings_carry_sunspec_telemetry(battery_rig):
    adapter, sim = battery_rig
    reading = await adapter.read()
    assert reading.soc_pct == pytest.approx(30, abs=0.2)
    assert reading.kw == 0 and reading.online and reading.plugged_in


async def test_discharge_above_rating_is_refused(battery_rig):
    adapter, _ = battery_rig
    now = adapter.clock.now()
    with pytest.raises(CommandRefused):
        await adapter.apply(Discharge(now, now + timedelta(seconds=2), 50.0, 20.0))


async def test_device_rejecting_writes_is_a_refusal(battery_rig):
    adapter, sim = battery_rig
    sim.refuse_writes = True
    now = adapter.clock.now()
    with pytest.raises(CommandRefused):
        await adapter.apply(Discharge(now, now + timedelta(seconds=2), 2.0, 20.0))
    assert sim.storage.StorCtl_Mod.value == 0


async def test_out_of_range_floor_is_a_refusal(battery_rig):
    adapter, sim = battery_rig
    now = adapter.clock.now()
    with pytest.raises(CommandRefused):
        await adapter.apply(Discharge(now, now + timedelta(seconds=2), 2.0, 120.0))
    assert sim.storage.StorCtl_Mod.value == 0


async def test_silent_device_times_out(battery_rig):
    adapter, sim = battery_rig
    sim.muted = True
    with pytest.raises(DeviceTimeout):
        await adapter.read()


async def test_gone_device_is_disconnected(battery_rig):
    adapter, sim = battery_rig
    await sim.stop()
    with pytest.raises(DeviceDisconnected):
        await adapter.read()
    with pytest.raises(DeviceDisconnected):  # and again, now via a fresh connect
        await adapter.read()


async def test_unreachable_device_is_disconnected():
    adapter = SunSpecAdapter({"port": 1, "timeout_s": 0.5}, SystemClock())
    with pytest.raises(DeviceDisconnected):
        await adapter.start()


async def test_standalone_simulator_serves_a_sunspec_adapter():
    import socket
    from adapters.testing import serve

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    task = asyncio.ensure_future(serve.main(["sunspec", "--port", str(port), "--soc-pct", "64", "--every-s", "60"]))
    adapter = SunSpecAdapter({"port": port, "timeout_s": 1}, SystemClock())
    try:
        async def connect():
            while True:
                try:
                    return await adapter.read()
                except DeviceDisconnected:
                    await asyncio.sleep(0.05)
        reading = await asyncio.wait_for(connect(), 5)
        assert reading.soc_pct == pytest.approx(64, abs=0.1)
    finally:
        await adapter.stop()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_storm_charge_passes_the_conformance_kit():
    from adapters.testing import ChargeScenario, run_charge
    # An idle battery at 96 %: x300 time fills it within ~1 s of a 2 s window.
    adapter, sim = await _rig(BatteryPhysics(capacity_kwh=10, soc_pct=96, max_charge_kw=5, max_discharge_kw=5,
                                             charge_target_pct=None, time_scale=300))
    try:
        report = await run_charge(adapter, sim, WallTime(),
                                  ChargeScenario(charge_kw=5, target_soc_pct=100, window_s=2))
        report.assert_passed()
        assert ("ChaGriSet", 1) in sim.writes
        assert sim.storage.ChaGriSet.value == 0, "the owner's PV-only setting is back"
        assert sim.storage.StorCtl_Mod.value == 0
    finally:
        await adapter.stop()
        await sim.stop()


async def test_charge_to_a_partial_target_is_refused(battery_rig):
    from adapters.base import Charge
    adapter, sim = battery_rig
    now = adapter.clock.now()
    with pytest.raises(CommandRefused, match="full"):
        await adapter.apply(Charge(now, now + timedelta(seconds=2), 80.0))
    assert sim.writes == []
