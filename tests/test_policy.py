"""Dispatch policy: events + device state + owner preferences -> commands."""
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.base import Capability, ChargeDelay, Discharge, Reading
from ven.policy import (DeviceProfile, EventSignal, EventWindow, Opt, OwnerPrefs, decide)

T0 = datetime(2026, 7, 1, 19, 0, tzinfo=timezone.utc)
DISCHARGE = EventWindow("e1", T0, T0 + timedelta(hours=2), EventSignal("LOAD_DISPATCH", "setpoint", 10.0))
DELAY = EventWindow("e2", T0, T0 + timedelta(hours=8),
                    EventSignal("LOAD_CONTROL", "x-loadControlCapacity", 0.0))
BATTERY = DeviceProfile(frozenset({Capability.DISCHARGE, Capability.TELEMETRY}), capacity_kwh=13.5,
                        max_discharge_kw=5.0, efficiency=1.0)
EV = DeviceProfile(frozenset({Capability.CHARGE_DELAY, Capability.TELEMETRY}), capacity_kwh=75)


def reading(soc=80.0, plugged_in=True):
    return Reading(T0, 0.0, 0.0, 0.0, soc, plugged_in)


def test_charge_delay_covers_the_event_window():
    decision = decide(DELAY, reading(), EV, OwnerPrefs(), T0 - timedelta(hours=24))
    assert decision.opt is Opt.IN
    assert decision.commands == (ChargeDelay(DELAY.start, DELAY.end),)


def test_unplugged_car_opts_out():
    decision = decide(DELAY, reading(plugged_in=False), EV, OwnerPrefs(), T0)
    assert decision.opt is Opt.OUT and "unplugged" in decision.reason
    assert decision.commands == ()


def test_discharge_is_spread_over_the_event():
    # 60 % above a 20 % floor of 13.5 kWh = 8.1 kWh over 2 h = 4.05 kW (< 5 kW inverter)
    decision = decide(DISCHARGE, reading(soc=80), BATTERY, OwnerPrefs(min_soc_pct=20), T0)
    (command,) = decision.commands
    assert isinstance(command, Discharge)
    assert command.max_kw == pytest.approx(4.05)
    assert command.min_soc_pct == 20


def test_discharge_is_capped_by_the_inverter():
    decision = decide(DISCHARGE, reading(soc=100), BATTERY, OwnerPrefs(min_soc_pct=0), T0)
    assert decision.commands[0].max_kw == pytest.approx(5.0)


def test_at_the_floor_the_owner_is_protected():
    decision = decide(DISCHARGE, reading(soc=20), BATTERY, OwnerPrefs(min_soc_pct=20), T0)
    assert decision.opt is Opt.OUT and decision.commands == ()


def test_device_without_the_capability_opts_out():
    assert decide(DISCHARGE, reading(), EV, OwnerPrefs(), T0).opt is Opt.OUT
    assert decide(DELAY, reading(), BATTERY, OwnerPrefs(), T0).opt is Opt.OUT


def test_unknown_signal_opts_out():
    event = EventWindow("e3", T0, T0 + timedelta(hours=1), EventSignal("ENERGY_PRICE", "price", 0.3))
    assert decide(event, reading(), BATTERY, OwnerPrefs(), T0).opt is Opt.OUT


@given(soc=st.floats(0, 100), floor=st.floats(0, 100), signal_kw=st.floats(0.1, 50),
       elapsed_min=st.integers(0, 119))
def test_planned_discharge_never_crosses_the_floor(soc, floor, signal_kw, elapsed_min):
    now = T0 + timedelta(minutes=elapsed_min)
    event = EventWindow("e", T0, T0 + timedelta(hours=2), EventSignal("LOAD_DISPATCH", "setpoint", signal_kw))
    decision = decide(event, reading(soc=soc), BATTERY, OwnerPrefs(min_soc_pct=floor), now)
    for command in decision.commands:
        remaining_h = (event.end - now).total_seconds() / 3600
        energy_kwh = command.max_kw * remaining_h
        assert soc - energy_kwh / BATTERY.capacity_kwh * 100 >= floor - 1e-6
        assert command.max_kw <= min(signal_kw, BATTERY.max_discharge_kw) + 1e-9
        assert command.min_soc_pct == floor
