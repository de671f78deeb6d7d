"""The dispatch rules, one by one (pure: program files in, violations out; no store, no clock)."""
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from flexadr import data as shipped
from schedules import model, planner, sources
from schedules.planner import PlanInputs
from schedules.model import DayRules, EventBudget
from vtn.dispatch_rules import (END, SIGNAL, START, CalledEvent, Facts, Proposal, blocking,
                                can_override, check)

UTC = timezone.utc
CS = model.load("connected_solutions")          # June-September, 15:00-20:00, 2 or 3 h, 24 h
MC = model.load("managed_charging")             # x-loadControlCapacity 0.0, 13:00-21:00, 8 h
BYOD = model.load("byod_vpp")                   # all year, 17:00-20:00, 3 h, 8 a month
NOW = datetime(2026, 6, 30, 12, 0, tzinfo=UTC)
JULY_2 = datetime(2026, 7, 2, 19, 0, tzinfo=UTC)    # 15:00 EDT, two days ahead
VENS = {"batt-1": frozenset({"connected_solutions"}), "ev-1": frozenset({"managed_charging"})}


def _facts(events=(), now=NOW, refused=None) -> Facts:
    return Facts(now, tuple(events), VENS, refused or {})


def _rules(proposal: Proposal, facts: Facts | None = None) -> list[str]:
    return [v.rule for v in check(proposal, facts or _facts())]


def _cs(start=JULY_2, hours=2.0, setpoint_kw=5.0, ven_ids=("batt-1",), **extra) -> Proposal:
    return Proposal(CS, start, start + timedelta(hours=hours), ven_ids, setpoint_kw=setpoint_kw,
                    **extra)


def _called(event_id, start, hours=2.0, ven_ids=("batt-1",), program_id="connected_solutions",
            test_event=False) -> CalledEvent:
    return CalledEvent(event_id, program_id, start, start + timedelta(hours=hours),
                       frozenset(ven_ids), test_event)


def test_an_event_inside_every_rule_has_no_violation():
    assert check(_cs(), _facts()) == []


def test_the_issues_december_six_minute_zero_notice_event():
    start = datetime(2026, 12, 10, 20, 0, tzinfo=UTC)          # 15:00 EST, now
    violations = check(_cs(start=start, hours=0.1), _facts(now=start - timedelta(seconds=1)))
    assert [v.rule for v in violations] == ["season", "notice", "durations"]
    assert all(v.overridable for v in violations)
    assert "out of season" in violations[0].message
    assert violations[2].message == "the event lasts 0.1 h; the program allows 2, 3 h"


def test_a_negative_setpoint_is_refused_for_good():
    [violation] = check(_cs(setpoint_kw=-5), _facts())
    assert (violation.rule, violation.field, violation.overridable) == (
        "signal", "setpoint_kw", False)
    assert "not negative" in violation.message
    assert blocking([violation], "grid emergency", "admin") == [violation]


def test_a_connected_solutions_event_cannot_target_a_managed_charging_ven():
    [violation] = check(_cs(ven_ids=("batt-1", "ev-1")), _facts())
    assert (violation.rule, violation.overridable) == ("targets", False)
    assert violation.message == ("VEN ev-1 is not enrolled in connected_solutions "
                                 "(it is in managed_charging)")


def test_targets_must_be_known_enabled_and_some():
    assert [v.message for v in check(_cs(ven_ids=("ghost",)), _facts())] == ["unknown VEN ghost"]
    refused = _facts(refused={"batt-1": "disabled (tampering)"})
    assert [v.message for v in check(_cs(), refused)] == ["VEN batt-1 is disabled (tampering)"]
    assert _rules(_cs(ven_ids=())) == ["targets"]


def test_days_and_holidays():
    assert _rules(_cs(start=datetime(2026, 7, 4, 19, 0, tzinfo=UTC))) == ["holidays"]
    weekdays_only = replace(CS, days=replace(CS.days, weekends=False))
    saturday = datetime(2026, 7, 11, 19, 0, tzinfo=UTC)
    assert _rules(replace(_cs(start=saturday), program=weekdays_only)) == ["days"]
    weekends_only = replace(CS, days=DayRules(weekdays=False))
    assert _rules(replace(_cs(), program=weekends_only)) == ["days"]      # July 2 is a Thursday


def test_window_durations_and_notice():
    assert _rules(_cs(start=JULY_2 - timedelta(hours=5))) == ["window"]      # 10:00 EDT
    assert _rules(_cs(start=JULY_2 + timedelta(hours=4))) == ["window"]      # 19:00-21:00
    assert _rules(_cs(hours=4)) == ["durations"]
    assert _rules(_cs(hours=2.5)) == ["durations"]          # not one of the allowed lengths
    assert _rules(_cs(hours=3)) == []
    assert _rules(_cs(), _facts(now=JULY_2 - timedelta(hours=23))) == ["notice"]


def test_the_time_rules_come_first_and_cannot_be_overridden():
    past = check(_cs(), _facts(now=JULY_2 + timedelta(days=1)))
    assert [(v.rule, v.field, v.overridable) for v in past] == [("time", "end", False)]
    far = check(_cs(start=JULY_2 + timedelta(days=400)), _facts())
    assert [v.rule for v in far] == ["time"] and "366 days ahead" in far[0].message
    # ... and the sign is still named beside them.
    assert _rules(_cs(setpoint_kw=-1), _facts(now=JULY_2 + timedelta(days=1))) == [
        "time", "signal"]


def test_the_season_budget_counts_the_years_events_of_the_program_but_not_tests():
    two = replace(CS, budget=EventBudget(0, 2, 2))
    june = [_called(f"e{i}", datetime(2026, 6, 10 + i, 19, 0, tzinfo=UTC)) for i in range(2)]
    proposal = replace(_cs(), program=two)
    [violation] = check(proposal, _facts(june))
    assert violation.rule == "season_budget" and violation.overridable
    assert violation.message == ("connected_solutions already has 2 events in 2026, its season "
                                 "maximum is 2")
    tests_and_others = [replace(june[0], test_event=True),
                        replace(june[1], program_id="byod_vpp")]
    assert check(proposal, _facts(tests_and_others)) == []
    last_year = [replace(e, start_utc=e.start_utc - timedelta(days=365),
                         end_utc=e.end_utc - timedelta(days=365)) for e in june]
    assert check(proposal, _facts(last_year)) == []
    assert check(replace(proposal, test_event=True), _facts(june)) == []
    # A change of an event already counted does not count itself.
    assert "season_budget" not in _rules(replace(proposal, event_id="e0"), _facts(june))


def test_the_monthly_budget():
    july = [_called(f"b{i}", datetime(2026, 7, 3 + i, 21, 0, tzinfo=UTC), hours=3,
                    program_id="byod_vpp", ven_ids=("vpp-1",)) for i in range(8)]
    facts = Facts(NOW, tuple(july), {"vpp-1": frozenset({"byod_vpp"})}, {})
    start = datetime(2026, 7, 20, 21, 0, tzinfo=UTC)           # 17:00 EDT
    proposal = Proposal(BYOD, start, start + timedelta(hours=3), ("vpp-1",), setpoint_kw=4.0)
    [violation] = check(proposal, facts)
    assert violation.rule == "monthly_budget" and "2026-07" in violation.message
    august = replace(proposal, start_utc=start + timedelta(days=14),
                     end_utc=start + timedelta(days=14, hours=3))
    assert check(august, facts) == []


def test_signal_range_and_sign_by_dispatch_kind():
    assert _rules(_cs(setpoint_kw=60)) == ["signal"]                  # the 50 kW inverter limit
    start = datetime(2026, 7, 2, 17, 0, tzinfo=UTC)                    # 13:00 EDT
    charge_delay = Proposal(MC, start, start + timedelta(hours=8), ("ev-1",))
    assert check(charge_delay, _facts()) == []
    assert _rules(replace(charge_delay, setpoint_kw=3.0)) == ["signal"]      # a fixed signal
    profile = replace(charge_delay, intervals=(0.5, 1.5))
    [violation] = check(profile, _facts())
    assert (violation.rule, violation.field) == ("signal", "intervals.1.value")
    assert "fraction 0-1" in violation.message
    assert check(replace(charge_delay, intervals=(0.0, 1.0)), _facts()) == []
    assert _rules(replace(_cs(), setpoint_kw=None)) == ["signal"]     # a setpoint is needed
    assert _rules(replace(_cs(), setpoint_kw=None, intervals=(5.0, -5.0))) == ["signal"]


def test_conflicts_are_overlaps_for_the_same_vens():
    other = _called("e1", JULY_2 + timedelta(hours=1))
    [violation] = check(_cs(), _facts([other]))
    assert violation.rule == "conflicts" and violation.overridable
    assert violation.message == ("overlaps event e1 (2026-07-02T20:00:00Z-2026-07-02T22:00:00Z) "
                                 "for VEN batt-1")
    assert check(_cs(), _facts([replace(other, ven_ids=frozenset({"batt-2"}))])) == []
    back_to_back = _called("e2", JULY_2 + timedelta(hours=2))
    assert check(_cs(), _facts([back_to_back])) == []
    assert check(_cs(event_id="e1"), _facts([other])) == []          # not its own conflict


def test_a_change_is_checked_only_against_the_rules_it_touches():
    called = _called("e1", JULY_2)
    facts = _facts([called], now=JULY_2 + timedelta(minutes=30))     # under way
    change = dict(event_id="e1", setpoint_kw=None)
    cut_short = _cs(hours=1, changed=frozenset({END}), **change)
    assert check(cut_short, facts) == []                 # shorter than allowed: fine when cut
    too_late = _cs(hours=5.5, changed=frozenset({END}), **change)
    assert _rules(too_late, facts) == ["window", "durations"]
    assert check(_cs(changed=frozenset({SIGNAL}), event_id="e1", setpoint_kw=7.5), facts) == []
    assert _rules(_cs(changed=frozenset({SIGNAL}), event_id="e1", setpoint_kw=-7.5),
                  facts) == ["signal"]
    moved = _cs(start=JULY_2 + timedelta(hours=1), changed=frozenset({START}), **change)
    assert _rules(moved, facts) == ["notice"]


@pytest.mark.parametrize("role, lifted", [("admin", True), ("operator", True),
                                          ("viewer", False), ("bl", False)])
def test_an_override_lifts_program_rules_for_the_roles_that_may(role, lifted):
    violations = check(_cs(hours=0.1, setpoint_kw=-5), _facts())
    assert [v.rule for v in violations] == ["durations", "signal"]
    assert can_override(role) is lifted
    stopping = blocking(violations, "ISO emergency", role)
    assert [v.rule for v in stopping] == (["signal"] if lifted else ["durations", "signal"])
    assert blocking(violations, None, role) == violations


# --- the planner plans inside the same rules ------------------------------------------------

@pytest.fixture(scope="module")
def inputs():
    load = sources.read_isone_csv(shipped.path("isone_hourly_load_2015-07_2019-12.csv"))
    weather = sources.read_daily_weather(shipped.path("boston_logan_daily_weather_2010-2019.csv"))
    return PlanInputs.build(load.load, CS.timezone, load.iso_forecast, weather)


@pytest.mark.parametrize("program", [CS, MC, BYOD], ids=lambda p: p.id)
def test_every_event_the_planner_calls_passes_the_dispatch_rules(inputs, program):
    """Each planned event, checked when the planner decided it, against the events it had
    called before: the planner's season and the manual rules cannot drift apart."""
    events = planner.plan_season(program, 2018, inputs).active_events
    assert len(events) >= 10
    called: list[CalledEvent] = []
    for event in events:
        proposal = Proposal(program, event.start_utc, event.end_utc, ("v",),
                            setpoint_kw=None if program.signal.value is not None else 5.0,
                            test_event=event.test_event)
        facts = Facts(event.decided_utc, tuple(called), {"v": frozenset({program.id})}, {})
        assert check(proposal, facts) == [], event
        called.append(CalledEvent(f"e{len(called)}", program.id, event.start_utc,
                                  event.end_utc, frozenset({"v"}), event.test_event))
