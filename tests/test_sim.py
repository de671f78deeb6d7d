"""The simulated devices are physics, not constants."""
from datetime import datetime, timedelta, timezone

import pytest

from adapters.base import ChargeDelay, Discharge
from adapters.sim import DeviceSpec, SimulatedDevice

T0 = datetime(2026, 7, 1, 19, 0, tzinfo=timezone.utc)
H = timedelta(hours=1)


def battery(soc=80.0, **kw):
    spec = DeviceSpec(kind="battery", capacity_kwh=10.0, soc_pct=soc, max_charge_kw=5.0,
                      max_discharge_kw=5.0, charge_target_pct=None, efficiency=1.0, **kw)
    return SimulatedDevice(spec, T0)


def test_discharge_moves_state_of_charge_and_energy_register():
    device = battery()
    device.apply(Discharge(T0, T0 + H, max_kw=2.0, min_soc_pct=20))
    device.advance(T0 + H)
    assert device.soc_pct == pytest.approx(60.0)
    assert device.kwh_exported == pytest.approx(2.0)
    assert device.mean_kw(T0, T0 + H) == pytest.approx(-2.0)


def test_battery_never_goes_below_its_floor():
    device = battery(soc=30.0)
    device.apply(Discharge(T0, T0 + 2 * H, max_kw=5.0, min_soc_pct=20))
    device.advance(T0 + 2 * H)
    assert device.soc_pct == pytest.approx(20.0)
    assert device.kwh_exported == pytest.approx(1.0)          # 10 % of 10 kWh
    # 1 kWh at 5 kW is 12 minutes of discharge, then nothing
    assert device.mean_kw(T0, T0 + 2 * H) == pytest.approx(-0.5)


def test_efficiency_costs_state_of_charge_on_discharge():
    spec = DeviceSpec(kind="battery", capacity_kwh=10.0, soc_pct=80, max_charge_kw=5,
                      max_discharge_kw=5, charge_target_pct=None, efficiency=0.9)
    device = SimulatedDevice(spec, T0)
    device.apply(Discharge(T0, T0 + H, max_kw=0.9, min_soc_pct=0))
    device.advance(T0 + H)
    assert device.soc_pct == pytest.approx(70.0)  # 0.9 kWh out costs 1 kWh stored


def test_charge_delayed_car_stops_then_resumes_charging():
    spec = DeviceSpec(kind="ev_managed", capacity_kwh=60, soc_pct=50, max_charge_kw=6,
                      charge_target_pct=90, efficiency=1.0)
    device = SimulatedDevice(spec, T0)
    device.apply(ChargeDelay(T0 + H, T0 + 2 * H))
    device.advance(T0 + 3 * H)
    assert device.mean_kw(T0, T0 + H) == pytest.approx(6.0)
    assert device.mean_kw(T0 + H, T0 + 2 * H) == pytest.approx(0.0)
    assert device.mean_kw(T0 + 2 * H, T0 + 3 * H) == pytest.approx(6.0)
    assert device.soc_pct == pytest.approx(70.0)


def test_charging_stops_at_target():
    spec = DeviceSpec(kind="ev_managed", capacity_kwh=60, soc_pct=85, max_charge_kw=6,
                      charge_target_pct=90, efficiency=1.0)
    device = SimulatedDevice(spec, T0)
    device.advance(T0 + 2 * H)
    assert device.soc_pct == pytest.approx(90.0)
    assert device.kwh_imported == pytest.approx(3.0)


def test_unplugged_car_does_nothing():
    spec = DeviceSpec(kind="ev_v2g", capacity_kwh=60, soc_pct=50, max_charge_kw=6,
                      max_discharge_kw=6, plugged_in=False)
    device = SimulatedDevice(spec, T0)
    device.apply(Discharge(T0, T0 + H, max_kw=6, min_soc_pct=20))
    device.advance(T0 + H)
    assert device.soc_pct == 50 and device.kwh_exported == 0


def test_time_scale_compresses_energy():
    device = battery(time_scale=60.0)   # one wall minute moves one hour of energy
    device.apply(Discharge(T0, T0 + timedelta(minutes=1), max_kw=2.0, min_soc_pct=0))
    device.advance(T0 + timedelta(minutes=1))
    assert device.kwh_exported == pytest.approx(2.0)


@pytest.mark.parametrize("bad", [dict(kind="toaster"), dict(soc_pct=120)])
def test_impossible_specs_are_refused(bad):
    args = dict(kind="battery", capacity_kwh=10, soc_pct=50, max_charge_kw=5) | bad
    with pytest.raises(ValueError):
        DeviceSpec(**args)


def test_storm_charge_fills_a_battery_that_normally_idles():
    device = battery(soc=50.0)
    from adapters.base import Charge
    device.apply(Charge(T0, T0 + 2 * H, target_soc_pct=100))
    device.advance(T0 + 2 * H)
    assert device.soc_pct == pytest.approx(100.0)
    assert device.kwh_imported == pytest.approx(5.0)
    assert device.mean_kw(T0, T0 + H) == pytest.approx(5.0)
