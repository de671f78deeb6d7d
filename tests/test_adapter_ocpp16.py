"""ocpp16 adapter against a real OCPP 1.6J charge point (ocpp.v16.ChargePoint) on 127.0.0.1."""
from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import websockets

from adapters.base import ChargeDelay, CommandRefused, DeviceDisconnected, DeviceTimeout, Discharge
from adapters.ocpp16 import Ocpp16Adapter
from adapters.testing import DelayScenario, WallTime, run_charge_delay
from adapters.testing.ev_physics import BatteryPhysics
from adapters.testing.ocpp16_charger import Ocpp16ChargerSim
from flexadr.clock import SystemClock

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def rig(request):
    config = {"charge_point_id": "CP-16", "response_timeout_s": 0.5, **getattr(request, "param", {})}
    adapter = Ocpp16Adapter(config, SystemClock())
    await adapter.start()
    charger = Ocpp16ChargerSim(f"ws://127.0.0.1:{adapter.port}/CP-16",
                               BatteryPhysics(capacity_kwh=60, soc_pct=40, max_charge_kw=7.2))
    await charger.start()
    await adapter.wait_connected(5)
    yield adapter, charger
    await charger.stop()
    await adapter.stop()


@pytest.mark.parametrize("rig, windows", [({"purpose": "TxDefaultProfile", "rate_unit": "W"}, 2),
                                          ({"purpose": "TxProfile", "rate_unit": "A"}, 1)], indirect=["rig"])
async def test_charge_delay_event_passes_the_conformance_kit(rig, windows):
    adapter, charger = rig
    scenario = DelayScenario(lead_s=1, window_s=1, windows=windows, gap_s=1)
    report = await run_charge_delay(adapter, charger, WallTime(), scenario)
    report.assert_passed()
    assert charger.profiles == {}, "the profile is cleared after the event"


async def test_meter_values_become_readings(rig):
    adapter, charger = rig

    async def charging_reported():
        while (await adapter.read()).kw < 7:
            await asyncio.sleep(0.05)
    await asyncio.wait_for(charging_reported(), 5)
    reading = await adapter.read()
    assert reading.kw == pytest.approx(7.2, abs=0.01)
    assert reading.plugged_in and reading.online
    assert reading.soc_pct == pytest.approx(charger.soc_pct(), abs=0.2)
    await asyncio.sleep(0.5)
    assert (await adapter.read()).kwh_imported > reading.kwh_imported


async def test_discharge_is_refused_by_a_16_adapter(rig):
    adapter, _ = rig
    now = adapter.clock.now()
    with pytest.raises(CommandRefused):
        await adapter.apply(Discharge(now, now + timedelta(seconds=5), 5.0, 20.0))


async def test_rejected_profile_is_a_refusal(rig):
    adapter, charger = rig
    charger.refuse_profiles = True
    now = adapter.clock.now()
    with pytest.raises(CommandRefused, match="Rejected"):
        await adapter.apply(ChargeDelay(now + timedelta(seconds=1), now + timedelta(seconds=3)))


async def test_silent_charger_times_out(rig):
    adapter, charger = rig
    charger.muted = True
    now = adapter.clock.now()
    with pytest.raises(DeviceTimeout):
        await adapter.apply(ChargeDelay(now + timedelta(seconds=1), now + timedelta(seconds=3)))
    assert charger.profiles == {}


async def test_dropped_charger_is_disconnected(rig):
    adapter, charger = rig
    await charger.drop()

    async def gone():
        while adapter.server.charge_point is not None:
            await asyncio.sleep(0.02)
    await asyncio.wait_for(gone(), 5)
    now = adapter.clock.now()
    with pytest.raises(DeviceDisconnected):
        await adapter.apply(ChargeDelay(now + timedelta(seconds=1), now + timedelta(seconds=3)))
    with pytest.raises(DeviceDisconnected):
        await adapter.read()


async def test_unknown_charge_point_is_turned_away():
    adapter = Ocpp16Adapter({"charge_point_id": "CP-16"}, SystemClock())
    await adapter.start()
    stranger = Ocpp16ChargerSim(f"ws://127.0.0.1:{adapter.port}/SOMEONE-ELSE",
                                BatteryPhysics(capacity_kwh=60, soc_pct=40, max_charge_kw=7.2))
    try:
        with pytest.raises(websockets.InvalidStatus, match="404"):
            await stranger.start(timeout_s=2)
        with pytest.raises(DeviceDisconnected):
            await adapter.wait_connected(0.2)
    finally:
        await stranger.stop()
        await adapter.stop()


async def test_charger_that_comes_back_is_commanded_again(rig):
    adapter, charger = rig
    await charger.drop()

    async def gone():
        while adapter.server.charge_point is not None:
            await asyncio.sleep(0.02)
    await asyncio.wait_for(gone(), 5)
    again = Ocpp16ChargerSim(f"ws://127.0.0.1:{adapter.port}/CP-16",
                             BatteryPhysics(capacity_kwh=60, soc_pct=40, max_charge_kw=7.2))
    await again.start()
    try:
        await adapter.wait_connected(5)
        now = adapter.clock.now()
        await adapter.apply(ChargeDelay(now + timedelta(seconds=5), now + timedelta(seconds=9)))
        assert adapter.profile_id in again.profiles
    finally:
        await again.stop()


async def test_readings_stream_follows_meter_values_as_they_arrive(rig):
    adapter, _ = rig
    stream = adapter.readings(interval_s=30)  # far longer than the charger's 0.2 s meter interval
    try:
        seen = [await asyncio.wait_for(anext(stream), 5) for _ in range(4)]
    finally:
        await stream.aclose()
    stamps = [r.at for r in seen[1:]]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3  # each one a new MeterValues
    assert seen[-1].kwh_imported > seen[1].kwh_imported


async def test_storm_charge_lifts_limits_for_the_window(rig):
    from adapters.base import Charge
    adapter, charger = rig
    now = adapter.clock.now()
    with pytest.raises(CommandRefused, match="only full"):
        await adapter.apply(Charge(now, now + timedelta(seconds=3), 80.0))
    await adapter.apply(Charge(now, now + timedelta(seconds=3), 100.0))
    profile = charger.profiles[adapter.profile_id]
    assert float(profile["charging_schedule"]["charging_schedule_period"][0]["limit"]) == 22000
    assert charger.limit_kw(adapter.clock.now()) == pytest.approx(22.0)


def _windows(charger) -> list[tuple[str, str]]:
    """The charger's profiles as (validFrom, validTo), in start order."""
    return sorted((p["valid_from"], p["valid_to"]) for p in charger.profiles.values())


@pytest.mark.parametrize("rig", [{"max_commands": 2}], indirect=True)
async def test_commands_beyond_the_chargers_slots_wait_for_one(rig):
    from adapters._ocpp_common import iso
    adapter, charger = rig
    now = adapter.clock.now()
    first = ChargeDelay(now + timedelta(seconds=0.3), now + timedelta(seconds=1.2))
    third = ChargeDelay(now + timedelta(seconds=3), now + timedelta(seconds=4))
    second = ChargeDelay(now + timedelta(seconds=2), now + timedelta(seconds=2.5))
    await adapter.apply(first)
    await adapter.apply(third)
    await adapter.apply(second)   # starts before `third`: takes its slot, `third` waits
    window = lambda c: (iso(c.start), iso(c.end))
    assert _windows(charger) == [window(first), window(second)]
    assert adapter.waiting == [third]

    async def installed():
        while window(third) not in _windows(charger):
            await asyncio.sleep(0.02)
    await asyncio.wait_for(installed(), 5)     # once `first` has ended
    assert _windows(charger) == [window(second), window(third)]
    assert adapter.waiting == []

    await adapter.clear()
    assert charger.profiles == {} and adapter.waiting == []
