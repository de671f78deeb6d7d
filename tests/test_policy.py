"""Dispatch policy: events + device state + owner preferences -> commands."""
from datetime import datetime, time, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.base import Capability, Charge, ChargeDelay, Discharge, Reading
from ven.events import Event, Interval, Signal
from ven.policy import (Conditions, Decision, DeviceProfile, Opt, OwnerPrefs, SimpleLevel, decide,
                        in_force, ready_at)

T0 = datetime(2026, 7, 1, 19, 0, tzinfo=timezone.utc)
HOUR = timedelta(hours=1)


def event(name, type_, payloads, start=T0, step=None, event_id="e", priority=0, unit=None,
          scale=None, duration=None):
    """An event of one signal whose intervals follow each other from `start`."""
    step = step or (duration or 2 * HOUR) / len(payloads)
    intervals = tuple(Interval(uid, start + uid * step, step, float(v)) for uid, v in enumerate(payloads))
    return Event(event_id, 0, "far", start, step * len(payloads),
                 (Signal(name, type_, f"{event_id}-0", intervals, unit, scale),), priority=priority)


DISCHARGE = event("LOAD_DISPATCH", "setpoint", [10.0], event_id="e1")
DELAY = event("LOAD_CONTROL", "x-loadControlCapacity", [0.0], duration=8 * HOUR, event_id="e2")
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
    event_ = event("ENERGY_PRICE", "price", [0.3])
    assert decide(event_, reading(), BATTERY, OwnerPrefs(), T0).opt is Opt.OUT


@given(soc=st.floats(0, 100), floor=st.floats(0, 100), signal_kw=st.floats(0.1, 50),
       elapsed_min=st.integers(0, 119))
def test_planned_discharge_never_crosses_the_floor(soc, floor, signal_kw, elapsed_min):
    now = T0 + timedelta(minutes=elapsed_min)
    dispatch = event("LOAD_DISPATCH", "setpoint", [signal_kw])
    decision = decide(dispatch, reading(soc=soc), BATTERY, OwnerPrefs(min_soc_pct=floor), now)
    for command in decision.commands:
        remaining_h = (dispatch.end - now).total_seconds() / 3600
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


SIGNALS = {   # (name, type) -> payloads that type takes
    ("LOAD_DISPATCH", "setpoint"): st.floats(-20, 20),
    ("LOAD_DISPATCH", "delta"): st.floats(-20, 20),
    ("LOAD_DISPATCH", "multiplier"): st.floats(0, 2),
    ("LOAD_CONTROL", "x-loadControlCapacity"): st.floats(0, 1),
    ("LOAD_CONTROL", "x-loadControlLevelOffset"): st.floats(-20, 20),
    ("LOAD_CONTROL", "x-loadControlPercentOffset"): st.floats(-100, 100),
    ("LOAD_CONTROL", "x-loadControlSetpoint"): st.floats(-20, 20),
    ("SIMPLE", "level"): st.integers(0, 3),
    ("CHARGE_STATE", "setpoint"): st.floats(0, 100),
    ("ENERGY_PRICE", "price"): st.floats(0, 1),
}


@st.composite
def events(draw):
    kind = draw(st.sampled_from(sorted(SIGNALS)))
    payloads = draw(st.lists(SIGNALS[kind], min_size=1, max_size=4))
    start = T0 + timedelta(minutes=draw(st.integers(-300, 600)))
    step = timedelta(minutes=draw(st.integers(1, 180)))
    return event(*kind, payloads, start=start, step=step)


readings = st.builds(lambda soc, plugged, kw: Reading(T0, kw, 0.0, 0.0, soc, plugged),
                     st.floats(0, 100), st.booleans(), st.floats(-10, 12))
prefs_st = st.builds(OwnerPrefs, min_soc_pct=st.floats(0, 100), ready_soc_pct=st.floats(0, 100),
                     ready_by=st.one_of(st.none(), st.times()), opt_out_if_not_ready=st.booleans())
conditions_st = st.builds(Conditions, islanded=st.booleans(),
                          storm_warning_until=st.one_of(st.none(), st.just(T0 + timedelta(hours=3))),
                          cycles_used=st.floats(0, 60))


@settings(max_examples=300, deadline=None)
@given(event_=events(), state=readings, prefs=prefs_st, conditions=conditions_st,
       profile=st.sampled_from([BATTERY, EV, V2G]), baseline_kw=st.floats(-10, 12))
def test_the_owner_is_always_protected(event_, state, prefs, conditions, profile, baseline_kw):
    now = T0
    decision = decide(event_, state, profile, prefs, now, conditions=conditions,
                      baseline_kw=baseline_kw)
    discharges = [c for c in decision.commands if isinstance(c, Discharge)]
    if conditions.islanded or not state.plugged_in or now >= event_.end:
        assert decision.opt is Opt.OUT and decision.commands == ()
    if conditions.storm_warning_until is not None and conditions.storm_warning_until > event_.start:
        assert discharges == []
    energy_kwh = sum(c.max_kw * (c.end - max(c.start, now)).total_seconds() / 3600
                     for c in discharges)
    for command in discharges:
        assert Capability.DISCHARGE in profile.capabilities
        assert command.min_soc_pct >= prefs.min_soc_pct and state.soc_pct > prefs.min_soc_pct
        assert 0 <= command.max_kw <= profile.max_discharge_kw
    # Over the whole event, never below the floor (a CHARGE_STATE charge first
    # may add energy) nor beyond the yearly cycle cap.
    charged = any(isinstance(c, Charge) for c in decision.commands)
    assert state.soc_pct - energy_kwh / profile.efficiency / profile.capacity_kwh * 100 \
        >= prefs.min_soc_pct - 1e-6 or not discharges or charged
    if profile.cycle_cap_per_year is not None:
        assert conditions.cycles_used + energy_kwh / profile.capacity_kwh \
            <= profile.cycle_cap_per_year + 1e-9 or not discharges
    if decision.opt is Opt.OUT:
        assert not any(isinstance(c, (Discharge, ChargeDelay)) for c in decision.commands)
    for command in decision.commands:
        if isinstance(command, ChargeDelay):
            assert Capability.CHARGE_DELAY in profile.capabilities
            assert event_.start <= command.start < command.end <= event_.end
            assert 0 <= command.max_kw < profile.max_charge_kw


def test_each_load_dispatch_interval_gets_its_own_setpoint():
    dispatch = event("LOAD_DISPATCH", "setpoint", [5.0, 2.0, 4.0], step=HOUR)
    decision = decide(dispatch, reading(soc=90), V2G, OwnerPrefs(), T0 - HOUR)
    assert decision.opt is Opt.IN
    assert decision.commands == tuple(
        Discharge(T0 + n * HOUR, T0 + (n + 1) * HOUR, kw, 20.0) for n, kw in enumerate([5.0, 2.0, 4.0]))


def test_mid_event_only_the_intervals_ahead_are_planned():
    dispatch = event("LOAD_DISPATCH", "setpoint", [5.0, 2.0, 4.0], step=HOUR)
    decision = decide(dispatch, reading(soc=90), V2G, OwnerPrefs(), T0 + 1.5 * HOUR)
    assert [(c.start, c.max_kw) for c in decision.commands] == [(T0 + HOUR, 2.0), (T0 + 2 * HOUR, 4.0)]


def test_short_of_energy_the_lower_setpoints_are_kept_and_the_rest_share_a_level():
    # 60 % above the floor of 13.5 kWh = 8.1 kWh for 5 + 2 + 4 kWh asked: 2 kW kept,
    # the other two hours share the 6.1 kWh left at 3.05 kW.
    dispatch = event("LOAD_DISPATCH", "setpoint", [5.0, 2.0, 4.0], step=HOUR)
    decision = decide(dispatch, reading(soc=80), BATTERY, OwnerPrefs(min_soc_pct=20), T0)
    assert [c.max_kw for c in decision.commands] == pytest.approx([3.05, 2.0, 3.05])


def test_capacity_caps_charging_at_that_fraction_of_the_charger():
    control = event("LOAD_CONTROL", "x-loadControlCapacity", [0.5, 0.25, 1.0], step=HOUR)
    decision = decide(control, reading(soc=40), EV, OwnerPrefs(), T0)
    assert decision.opt is Opt.IN
    assert decision.commands == (ChargeDelay(T0, T0 + HOUR, max_kw=3.6),
                                 ChargeDelay(T0 + HOUR, T0 + 2 * HOUR, max_kw=1.8))   # 1.0: no limit


def test_a_fraction_of_an_unknown_charger_rating_is_refused_with_the_reason():
    unrated = DeviceProfile(EV.capabilities, capacity_kwh=75)
    decision = decide(event("LOAD_CONTROL", "x-loadControlCapacity", [0.5]), reading(), unrated,
                      OwnerPrefs(), T0)
    assert decision.opt is Opt.OUT and "max_charge_kw" in decision.reason
    stop = decide(event("LOAD_CONTROL", "x-loadControlCapacity", [0.0]), reading(), unrated,
                  OwnerPrefs(), T0)
    assert stop.commands == (ChargeDelay(T0, T0 + 2 * HOUR),)     # 0 needs no rating


def test_capacity_one_means_no_limit_and_the_ven_takes_part():
    decision = decide(event("LOAD_CONTROL", "x-loadControlCapacity", [1.0]), reading(), EV,
                      OwnerPrefs(), T0)
    assert decision.opt is Opt.IN and decision.commands == ()


@pytest.mark.parametrize("type_, payload, baseline_kw, profile, expected", [
    ("x-loadControlSetpoint", 3.0, 0.0, EV, ChargeDelay(T0, T0 + 2 * HOUR, 3.0)),
    ("x-loadControlSetpoint", -2.0, 0.0, V2G, Discharge(T0, T0 + 2 * HOUR, 2.0, 20.0)),
    ("x-loadControlLevelOffset", -2.0, 7.2, EV, ChargeDelay(T0, T0 + 2 * HOUR, 5.2)),
    ("x-loadControlPercentOffset", -50.0, 7.2, EV, ChargeDelay(T0, T0 + 2 * HOUR, 3.6)),
    ("x-loadControlPercentOffset", -150.0, 4.0, V2G, Discharge(T0, T0 + 2 * HOUR, 2.0, 20.0)),
])
def test_load_control_types(type_, payload, baseline_kw, profile, expected):
    decision = decide(event("LOAD_CONTROL", type_, [payload]), reading(soc=60), profile,
                      OwnerPrefs(), T0, baseline_kw=baseline_kw)
    assert decision.opt is Opt.IN and decision.commands == (expected,)


@pytest.mark.parametrize("type_, payload, baseline_kw, profile, expected", [
    ("delta", 3.0, 0.0, V2G, Discharge(T0, T0 + 2 * HOUR, 3.0, 20.0)),    # idle -> deliver 3 kW
    ("delta", 3.0, 7.2, EV, ChargeDelay(T0, T0 + 2 * HOUR, 4.2)),         # 3 kW less charging
    ("multiplier", 0.5, 7.2, EV, ChargeDelay(T0, T0 + 2 * HOUR, 3.6)),
    ("setpoint", 0.0, 7.2, EV, ChargeDelay(T0, T0 + 2 * HOUR, 0.0)),      # hold at 0 kW
])
def test_load_dispatch_delta_and_multiplier_are_relative_to_the_baseline(type_, payload, baseline_kw,
                                                                          profile, expected):
    decision = decide(event("LOAD_DISPATCH", type_, [payload]), reading(soc=60), profile,
                      OwnerPrefs(), T0, baseline_kw=baseline_kw)
    assert decision.commands == (expected,)


@pytest.mark.parametrize("unit, scale, payload", [("W", "k", 5.0), ("W", "none", 5000.0),
                                                  ("W", "M", 0.005), (None, None, 5.0)])
def test_dispatch_payloads_are_read_in_their_units(unit, scale, payload):
    decision = decide(event("LOAD_DISPATCH", "setpoint", [payload], unit=unit, scale=scale),
                      reading(soc=90), V2G, OwnerPrefs(), T0)
    assert decision.commands[0].max_kw == pytest.approx(5.0)


def test_a_dispatch_in_an_unknown_unit_is_not_supported():
    decision = decide(event("LOAD_DISPATCH", "setpoint", [5.0], unit="A", scale="none"),
                      reading(soc=90), V2G, OwnerPrefs(), T0)
    assert decision.opt is Opt.OUT and "not supported" in decision.reason


@pytest.mark.parametrize("level, ev, v2g", [
    (0, (), ()),
    (1, (ChargeDelay(T0, T0 + 2 * HOUR, 3.6),), (ChargeDelay(T0, T0 + 2 * HOUR, 5.75),)),
    (2, (ChargeDelay(T0, T0 + 2 * HOUR),), (ChargeDelay(T0, T0 + 2 * HOUR),)),
    (3, (ChargeDelay(T0, T0 + 2 * HOUR),), (Discharge(T0, T0 + 2 * HOUR, 9.6, 20.0),)),
])
def test_simple_levels_by_default(level, ev, v2g):
    simple = event("SIMPLE", "level", [level])
    assert decide(simple, reading(soc=90), EV, OwnerPrefs(), T0).commands == ev
    assert decide(simple, reading(soc=90), V2G, OwnerPrefs(), T0).commands == v2g


def test_simple_levels_follow_the_owners_mapping_and_level_4_is_refused():
    prefs = OwnerPrefs(simple_levels=(SimpleLevel(), SimpleLevel(0.0), SimpleLevel(0.0, True),
                                      SimpleLevel(0.0, True)))
    assert decide(event("SIMPLE", "level", [1]), reading(), EV, prefs, T0).commands == (
        ChargeDelay(T0, T0 + 2 * HOUR),)
    assert decide(event("SIMPLE", "level", [4]), reading(), EV, prefs, T0).opt is Opt.OUT


def test_charge_state_setpoint_charges_up_to_it_or_discharges_down_to_it_above_the_floor():
    target = event("CHARGE_STATE", "setpoint", [80.0])
    assert decide(target, reading(soc=50), EV, OwnerPrefs(), T0).commands == (
        Charge(T0, T0 + 2 * HOUR, 80.0),)
    # 10 % of 98 kWh over the 2 h interval
    assert decide(target, reading(soc=90), V2G, OwnerPrefs(), T0).commands == (
        Discharge(T0, T0 + 2 * HOUR, pytest.approx(4.9), 80.0),)
    low = event("CHARGE_STATE", "setpoint", [5.0])
    assert decide(low, reading(soc=30), V2G, OwnerPrefs(min_soc_pct=20), T0).commands == (
        Discharge(T0, T0 + 2 * HOUR, pytest.approx(4.9), 20.0),)   # the owner's floor wins


def test_the_most_specific_signal_of_an_event_is_followed():
    dispatch = event("LOAD_DISPATCH", "setpoint", [4.0])
    both = Event("e", 0, "far", T0, 2 * HOUR,
                 (event("SIMPLE", "level", [1]).signals[0], dispatch.signals[0]))
    assert decide(both, reading(soc=90), V2G, OwnerPrefs(), T0).commands == (
        Discharge(T0, T0 + 2 * HOUR, 4.0, 20.0),)


def test_a_partial_cap_counts_toward_the_owners_ready_by_time():
    # 8 h at 1.8 kW (0.25) = 14.4 kWh, then 8 h at 7.2 kW = 57.6 kWh before 07:00 EDT.
    prefs = OwnerPrefs(ready_by=time(7, 0), ready_soc_pct=100)
    control = event("LOAD_CONTROL", "x-loadControlCapacity", [0.25], duration=8 * HOUR)
    assert decide(control, reading(soc=10), EV, prefs, T0).opt is Opt.IN       # needs 67.5 kWh
    assert decide(control, reading(soc=0), EV, prefs, T0).opt is Opt.OUT       # needs 75 kWh


def _in(e):
    kw = e.signals[0].intervals[0].payload
    return e, Decision(Opt.IN, "", (Discharge(e.start, e.end, kw, 20.0),))


def test_overlapping_events_the_higher_priority_governs_then_the_earlier_start():
    low = event("LOAD_DISPATCH", "setpoint", [1], start=T0, duration=4 * HOUR, event_id="low")
    high = event("LOAD_DISPATCH", "setpoint", [2], start=T0 + HOUR, duration=HOUR,
                 event_id="high", priority=1)
    assert in_force([_in(low), _in(high)]) == [          # priority 1 beats 0 (none) ...
        Discharge(T0 + HOUR, T0 + 2 * HOUR, 2.0, 20.0),
        Discharge(T0, T0 + HOUR, 1.0, 20.0), Discharge(T0 + 2 * HOUR, T0 + 4 * HOUR, 1.0, 20.0)]
    earlier = event("LOAD_DISPATCH", "setpoint", [3], start=T0 + HOUR / 2, duration=HOUR,
                    event_id="earlier", priority=1)
    assert in_force([_in(high), _in(earlier)]) == [      # ... and at equal priority, the earlier start
        Discharge(T0 + HOUR / 2, T0 + 1.5 * HOUR, 3.0, 20.0),
        Discharge(T0 + 1.5 * HOUR, T0 + 2 * HOUR, 2.0, 20.0)]
    opted_out = (high, Decision(Opt.OUT, "owner opted out"))
    assert in_force([_in(low), opted_out]) == [Discharge(T0, T0 + 4 * HOUR, 1.0, 20.0)]


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
