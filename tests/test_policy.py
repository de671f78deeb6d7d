"""Dispatch policy: events + device state + owner preferences -> commands."""
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from datetime import time

from adapters.base import Capability, Charge, ChargeDelay, Discharge, Reading
from ven.policy import (Conditions, DeviceProfile, EventSignal, EventWindow, Opt, OwnerPrefs,
                        decide, ready_at)

T0 = datetime(2026, 7, 1, 19, 0, tzinfo=timezone.utc)
DISCHARGE = EventWindow("e1", T0, T0 + timedelta(hours=2), EventSignal("LOAD_DISPATCH", "setpoint", 10.0))
DELAY = EventWindow("e2", T0, T0 + timedelta(hours=8),
                    EventSignal("LOAD_CONTROL", "x-loadControlCapacity", 0.0))
BATTERY = DeviceProfile(frozenset({Capability.DISCHARGE, Capability.TELEMETRY}), capacity_kwh=13.5,
                        max_discharge_kw=5.0, efficiency=1.0)
EV = DeviceProfile(frozenset({Capability.CHARGE_DELAY, Capability.TELEMETRY}), capacity_kwh=75,
                   max_charge_kw=7.2, efficiency=1.0)
V2G = DeviceProfile(frozenset(Capability), capacity_kwh=98, max_discharge_kw=9.6, max_charge_kw=11.5,
                    efficiency=1.0, cycle_cap_per_year=50)


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


def test_ready_by_is_the_next_local_occurrence_across_midnight():
    prefs = OwnerPrefs(ready_by=time(7, 0), timezone="America/New_York")
    # 2026-07-02 03:00 UTC is 23:00 EDT on July 1: next 07:00 EDT is 11:00 UTC on July 2
    after = datetime(2026, 7, 2, 3, 0, tzinfo=timezone.utc)
    assert ready_at(prefs, after) == datetime(2026, 7, 2, 11, 0, tzinfo=timezone.utc)


def test_a_delay_that_would_leave_the_car_short_opts_out_when_the_owner_says_so():
    # event 19:00-03:00 UTC, ready by 07:00 EDT = 11:00 UTC: 8 h at 7.2 kW = 57.6 kWh after the event
    prefs = OwnerPrefs(ready_by=time(7, 0), ready_soc_pct=90)
    ok = decide(DELAY, reading(soc=30), EV, prefs, T0)            # needs 45 kWh
    assert ok.opt is Opt.IN and ok.commands == (ChargeDelay(DELAY.start, DELAY.end),)
    short = decide(DELAY, reading(soc=5), EV, prefs, T0)           # needs 63.75 kWh
    assert short.opt is Opt.OUT and "would not reach 90 %" in short.reason
    tolerant = decide(DELAY, reading(soc=5), EV,
                      OwnerPrefs(ready_by=time(7, 0), ready_soc_pct=90, opt_out_if_not_ready=False), T0)
    assert tolerant.opt is Opt.IN and "although" in tolerant.reason


def test_cycle_cap_limits_the_energy_of_the_last_allowed_event():
    # 0.05 cycle left of 98 kWh = 4.9 kWh over 2 h = 2.45 kW
    decision = decide(DISCHARGE, reading(soc=90), V2G, OwnerPrefs(), T0,
                      conditions=Conditions(cycles_used=49.95))
    assert decision.commands[0].max_kw == pytest.approx(2.45)
    spent = decide(DISCHARGE, reading(soc=90), V2G, OwnerPrefs(), T0,
                   conditions=Conditions(cycles_used=50))
    assert spent.opt is Opt.OUT and "cap" in spent.reason


def test_storm_warning_means_no_discharge_and_charging_to_full():
    until = T0 + timedelta(hours=6)
    decision = decide(DISCHARGE, reading(soc=60), BATTERY, OwnerPrefs(), T0 - timedelta(hours=1),
                      conditions=Conditions(storm_warning_until=until))
    assert decision.opt is Opt.OUT
    assert decision.commands == (Charge(T0 - timedelta(hours=1), until, 100.0),)


events = st.builds(
    lambda start_min, length_min, name, value: EventWindow(
        "e", T0 + timedelta(minutes=start_min), T0 + timedelta(minutes=start_min + length_min),
        EventSignal(*name, value)),
    st.integers(-120, 600), st.integers(1, 600),
    st.sampled_from([("LOAD_DISPATCH", "setpoint"), ("LOAD_CONTROL", "x-loadControlCapacity"),
                     ("SIMPLE", "level"), ("ENERGY_PRICE", "price")]),
    st.floats(0, 20))
readings = st.builds(lambda soc, plugged: Reading(T0, 0.0, 0.0, 0.0, soc, plugged),
                     st.floats(0, 100), st.booleans())
prefs_st = st.builds(OwnerPrefs, min_soc_pct=st.floats(0, 100), ready_soc_pct=st.floats(0, 100),
                     ready_by=st.one_of(st.none(), st.times()), opt_out_if_not_ready=st.booleans())
conditions_st = st.builds(Conditions, islanded=st.booleans(),
                          storm_warning_until=st.one_of(st.none(), st.just(T0 + timedelta(hours=3))),
                          cycles_used=st.floats(0, 60))


@given(event=events, state=readings, prefs=prefs_st, conditions=conditions_st,
       profile=st.sampled_from([BATTERY, EV, V2G]))
def test_the_owner_is_always_protected(event, state, prefs, conditions, profile):
    now = T0
    decision = decide(event, state, profile, prefs, now, conditions=conditions)
    discharges = [c for c in decision.commands if isinstance(c, Discharge)]
    if conditions.islanded or not state.plugged_in or now >= event.end:
        assert decision.opt is Opt.OUT and decision.commands == ()
    if conditions.storm_warning_until is not None and conditions.storm_warning_until > event.start:
        assert discharges == []
    for command in discharges:
        assert Capability.DISCHARGE in profile.capabilities
        assert command.min_soc_pct == prefs.min_soc_pct and state.soc_pct > prefs.min_soc_pct
        hours = (event.end - max(event.start, now)).total_seconds() / 3600
        energy_kwh = command.max_kw * hours
        assert state.soc_pct - energy_kwh / profile.efficiency / profile.capacity_kwh * 100 \
            >= prefs.min_soc_pct - 1e-6
        if profile.cycle_cap_per_year is not None:
            assert conditions.cycles_used + energy_kwh / profile.capacity_kwh \
                <= profile.cycle_cap_per_year + 1e-9
    if decision.opt is Opt.OUT:
        assert not any(isinstance(c, (Discharge, ChargeDelay)) for c in decision.commands)
    for command in decision.commands:
        if isinstance(command, ChargeDelay):
            assert (command.start, command.end) == (event.start, event.end)


def test_a_storm_warning_alone_charges_a_battery_but_not_a_charger_nor_in_an_outage():
    from ven.policy import storm_preparation
    until = T0 + timedelta(hours=5)
    warned = Conditions(storm_warning_until=until)
    assert storm_preparation(warned, BATTERY, T0) == Charge(T0, until, 100.0)
    assert storm_preparation(warned, EV, T0) is None                # V1G: nothing to prepare
    assert storm_preparation(Conditions(islanded=True, storm_warning_until=until), BATTERY,
                             T0) is None                            # the owner is in control
    assert storm_preparation(warned, BATTERY, until) is None        # over
    assert storm_preparation(Conditions(), BATTERY, T0) is None
