"""telematics adapter against a local aiohttp server replaying Smartcar-shaped recorded responses."""
from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from adapters.base import ChargeDelay, CommandRefused, DeviceDisconnected, DeviceTimeout, Discharge
from adapters.telematics import TelematicsAdapter, TelematicsAuthError
from adapters.testing import DelayScenario, WallTime, run_charge_delay
from adapters.testing.ev_physics import BatteryPhysics
from adapters.testing.smartcar_cloud import SmartcarCloudSim
from flexadr.clock import SystemClock

pytestmark = pytest.mark.timeout(30)


def _config(cloud, tmp_path, **extra):
    return {"api_url": cloud.url, "auth_url": cloud.url, "vehicle_id": "veh-1",
            "client_id": "client", "client_secret": "secret", "refresh_token": "refresh-0",
            "request_timeout_s": 0.5, "charge_kw": 7.2,
            "token_file": str(tmp_path / "tokens.json"), **extra}


@pytest.fixture
async def rig(tmp_path):
    cloud = SmartcarCloudSim(BatteryPhysics(capacity_kwh=75, soc_pct=50, max_charge_kw=7.2))
    await cloud.start()
    adapter = TelematicsAdapter(_config(cloud, tmp_path), SystemClock())
    await adapter.start()
    yield adapter, cloud
    await adapter.stop()
    await cloud.stop()


async def test_charge_delay_event_passes_the_conformance_kit(rig):
    adapter, cloud = rig
    report = await run_charge_delay(adapter, cloud, WallTime(), DelayScenario(lead_s=1, window_s=1, windows=2, gap_s=1))
    report.assert_passed()
    assert cloud.commands == [{"action": "STOP"}, {"action": "START"}] * 2


async def test_a_stop_lead_stops_the_car_before_the_window_and_restarts_it_at_its_end(rig, tmp_path):
    _, cloud = rig
    adapter = TelematicsAdapter(_config(cloud, tmp_path, stop_lead_s=0.6), SystemClock())
    await adapter.start()
    now = adapter.clock.now()
    start, end = now + timedelta(seconds=0.8), now + timedelta(seconds=1.4)
    await adapter.apply(ChargeDelay(start, end))
    await asyncio.sleep((start - adapter.clock.now()).total_seconds())
    # By the window's start the STOP has been sent and the car obeyed it.
    assert cloud.commands == [{"action": "STOP"}] and cloud.battery.kw == 0
    await asyncio.sleep((end - adapter.clock.now()).total_seconds() + 0.3)
    assert cloud.commands == [{"action": "STOP"}, {"action": "START"}]
    assert cloud.battery.kw > 0
    await adapter.stop()


async def test_a_full_car_is_left_alone(rig):
    adapter, cloud = rig
    cloud.battery.soc_pct = 95  # above the 90 % limit: FULLY_CHARGED
    now = adapter.clock.now()
    await adapter.apply(ChargeDelay(now, now + timedelta(seconds=1)))
    await adapter.clear()
    assert cloud.commands == []


async def test_readings_come_from_the_cloud(rig):
    adapter, cloud = rig
    reading = await adapter.read()
    assert reading.soc_pct == pytest.approx(50, abs=0.1)
    assert reading.plugged_in and reading.kw == 7.2


async def test_a_car_that_stops_at_its_limit_between_reads_is_counted_to_its_stop(tmp_path):
    # x600: 85 % -> the 90 % limit takes ~3.3 s at 7.2 kW; reads every second place the
    # stop from the SoC's growth, not at the first read that finds the car full.
    cloud = SmartcarCloudSim(BatteryPhysics(capacity_kwh=75, soc_pct=85, max_charge_kw=7.2,
                                            time_scale=600), tick_s=0.05)
    await cloud.start()
    adapter = TelematicsAdapter(_config(cloud, tmp_path, time_scale=600), SystemClock())
    await adapter.start()
    try:
        while (reading := await adapter.read()).kw > 0:
            await asyncio.sleep(1)
        assert reading.soc_pct == pytest.approx(90, abs=0.01)
        assert reading.kwh_imported == pytest.approx(cloud.battery.kwh_imported, rel=0.01)
    finally:
        await adapter.stop()
        await cloud.stop()


async def test_expired_access_token_is_refreshed_and_rotation_is_kept(rig, tmp_path):
    adapter, cloud = rig
    await adapter.read()
    first_refresh = adapter.tokens.refresh_token
    cloud.expire_access_tokens()  # the server says 401 before our clock says expired
    await adapter.read()
    assert cloud.refreshes == 2
    assert adapter.tokens.refresh_token != first_refresh
    saved = json.loads((tmp_path / "tokens.json").read_text())
    assert saved["refresh_token"] == adapter.tokens.refresh_token


async def test_token_refreshed_ahead_of_expiry_by_our_clock(rig):
    adapter, cloud = rig
    await adapter.read()
    adapter.tokens.access_expires_at = adapter.clock.now() + timedelta(seconds=10)  # inside the margin
    await adapter.read()
    assert cloud.refreshes == 2


async def test_revoked_refresh_token_is_an_auth_error(rig):
    adapter, cloud = rig
    cloud.revoke_refresh()
    with pytest.raises(TelematicsAuthError):
        await adapter.read()


async def test_unreachable_car_is_disconnected(rig):
    adapter, cloud = rig
    cloud.unreachable = True
    now = adapter.clock.now()
    with pytest.raises(DeviceDisconnected, match="UNREACHABLE"):
        await adapter.apply(ChargeDelay(now, now + timedelta(seconds=2)))


async def test_unplugged_car_refuses_a_start(rig):
    adapter, cloud = rig
    cloud.plugged_in = False
    with pytest.raises(CommandRefused, match="CHARGING_PLUG_NOT_CONNECTED"):
        await adapter._charge("START")


async def test_slow_cloud_times_out(rig):
    adapter, cloud = rig
    await adapter.read()
    cloud.slow_s = 1
    with pytest.raises(DeviceTimeout):
        await adapter.read()


async def test_rate_limit_is_transient(rig):
    adapter, cloud = rig
    cloud.rate_limited = True
    with pytest.raises(DeviceTimeout, match="RATE_LIMIT"):
        await adapter.read()


async def test_charge_limit_round_trip(rig):
    adapter, cloud = rig
    await adapter.set_charge_limit_pct(80)
    assert await adapter.charge_limit_pct() == pytest.approx(80)
    assert cloud.limit_fraction == pytest.approx(0.8)
    with pytest.raises(CommandRefused):
        await adapter.set_charge_limit_pct(20)


async def test_discharge_is_refused(rig):
    adapter, _ = rig
    now = adapter.clock.now()
    with pytest.raises(CommandRefused):
        await adapter.apply(Discharge(now, now + timedelta(seconds=2), 5, 20))


async def test_cloud_gone_is_disconnected(rig):
    adapter, cloud = rig
    await cloud.stop()
    with pytest.raises(DeviceDisconnected):
        await adapter.read()


async def test_storm_charge_raises_the_limit_then_gives_it_back(rig):
    from adapters.testing import ChargeScenario, run_charge
    adapter, cloud = rig
    cloud.limit_fraction = 0.5  # the owner keeps the car at 50 %, where it sits now
    report = await run_charge(adapter, cloud, WallTime(),
                              ChargeScenario(charge_kw=7.2, target_soc_pct=100, window_s=2, expect_target=False))
    report.assert_passed()
    assert {"limit": 1.0} in cloud.commands and {"action": "START"} in cloud.commands
    assert cloud.limit_fraction == pytest.approx(0.5)
