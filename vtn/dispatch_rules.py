"""Safe dispatch (pure): every rule of its program a proposed event breaks, by the rule's name.

One check for every way a person creates or changes an event (admin API, CLI, the
OpenADR 3.1 API): season, days, holidays, window, durations, notice, season and monthly
budgets, signal (range and sign for the program's dispatch kind), targets (enrolled in
the program, enabled) and conflicts (overlap with another event for the same VENs).
The calendar and budget rules are the planner's own (schedules.calendar,
schedules.planner.effective_max), so a planned event and a manual one are held to the
same rules. A program rule may be overridden by an actor whose role allows it, with a
written reason; the time, signal and target rules may not (they are not policy: a
negative setpoint would charge a battery the operator meant to discharge).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterable, Mapping, Sequence

from schedules import calendar
from schedules.model import Dispatch, Program
from schedules.planner import effective_max

UTC = timezone.utc
MAX_LEAD = timedelta(days=366)         # programs are planned at most a season ahead
# Signal types whose payload is an offset: negative values are meaningful there.
SIGNED_SIGNAL_TYPES = {"delta", "x-loadControlLevelOffset", "x-loadControlPercentOffset"}
CAPACITY = "x-loadControlCapacity"     # a fraction of the device's capacity: 0 (none) - 1 (all)

# What a proposal changes (a modification re-checks only the rules its change touches).
START, END, SIGNAL, TARGETS = "start", "end", "signal", "targets"
EVERYTHING = frozenset({START, END, SIGNAL, TARGETS})

OVERRIDE_ROLES = frozenset({"operator", "admin"})


def can_override(actor_role: str) -> bool:
    """May this role override a program rule (with a written reason)? The one permission
    check of overrides: roles are added here."""
    return actor_role in OVERRIDE_ROLES


@dataclass(frozen=True)
class Violation:
    rule: str             # season, days, holidays, window, durations, notice, season_budget,
    #                       monthly_budget, signal, targets, conflicts, time
    message: str
    field: str            # the request field it is about (start, end, setpoint_kw, ven_ids, ...)
    overridable: bool

    def as_dict(self) -> dict:
        return {"rule": self.rule, "message": self.message, "field": self.field,
                "overridable": self.overridable}


@dataclass(frozen=True)
class CalledEvent:
    """An event already in the store (not cancelled), as the budget and conflict rules see it."""
    event_id: str
    program_id: str
    start_utc: datetime
    end_utc: datetime
    ven_ids: frozenset[str]
    test_event: bool = False


@dataclass(frozen=True)
class Proposal:
    """An event as it would be after the request: a new one, or a change to `event_id`."""
    program: Program
    start_utc: datetime
    end_utc: datetime
    ven_ids: tuple[str, ...]
    setpoint_kw: float | None = None          # None: the program's fixed value, or unchanged
    intervals: tuple[float, ...] | None = None   # a profile's values instead of one setpoint
    test_event: bool = False
    event_id: str | None = None               # a change: the event itself is no conflict
    changed: frozenset[str] = EVERYTHING      # a change: what it changes


@dataclass(frozen=True)
class Facts:
    """What the rules read besides the proposal (gathered by the caller from the store)."""
    now: datetime
    events: Sequence[CalledEvent] = ()            # every event not cancelled
    # VEN -> its programs (None: an unknown VEN); VEN -> why the VTN refuses it
    programs_of: Mapping[str, frozenset[str] | None] = field(default_factory=dict)
    refused: Mapping[str, str] = field(default_factory=dict)


def check(proposal: Proposal, facts: Facts) -> list[Violation]:
    """Every rule the proposed event breaks, the time rules first; empty when it may go out."""
    changed = proposal.changed
    violations = _time(proposal, facts.now) if changed & {START, END} else []
    # In the past or a year out, the calendar, budgets and overlaps mean nothing.
    timely = not violations
    if timely and changed & {START, END}:
        violations += _calendar(proposal, facts.now)
    if timely and START in changed:
        violations += _budgets(proposal, facts.events)
    if SIGNAL in changed:
        violations += _signal(proposal)
    if TARGETS in changed:
        violations += _targets(proposal, facts.programs_of, facts.refused)
    if timely and changed & {START, END, TARGETS}:
        violations += _conflicts(proposal, facts.events)
    return violations


def blocking(violations: Iterable[Violation], override_reason: str | None,
             actor_role: str) -> list[Violation]:
    """The violations that stop the event: all of them without an override; with one, those
    no override lifts, or all if the actor's role may not override."""
    violations = list(violations)
    if override_reason is None or not can_override(actor_role):
        return violations
    return [v for v in violations if not v.overridable]


# --- the rules -------------------------------------------------------------------------------

def _time(p: Proposal, now: datetime) -> list[Violation]:
    if p.end_utc <= now:
        return [Violation("time", f"the event ends ({_z(p.end_utc)}) in the past", "end", False)]
    if p.start_utc - now > MAX_LEAD:
        return [Violation("time", f"{_z(p.start_utc)} is more than {MAX_LEAD.days} days ahead",
                          "start", False)]
    return []


def _calendar(p: Proposal, now: datetime) -> list[Violation]:
    """Season, days, holidays and notice of the start; window and durations of the event.

    When only the end moves (an event cut short or extended) the start's rules held
    when it was called, and a shorter event is always allowed."""
    program, start, end = p.program, p.start_utc, p.end_utc
    moved_start = START in p.changed
    violations = []
    day = calendar.local_date(program, start)
    if moved_start:
        broken = calendar.day_rule_broken(program, day)
        if broken is not None:
            rule, why = broken
            violations.append(Violation(rule, f"{day}: {why} in program {program.id}",
                                        "start", True))
        if start - now < program.notice:
            violations.append(Violation("notice", f"{_z(start)} gives less than the program's "
                                        f"{_hours(program.notice)} h notice", "start", True))
    window = calendar.program_window_utc(program, day)
    if (moved_start and start < window.start_utc) or end > window.end_utc:
        violations.append(Violation(
            "window", f"the event {_local(program, start)}-{_local(program, end)} is outside "
            f"the program's window {program.window.start:%H:%M}-{program.window.end:%H:%M}",
            "start" if moved_start else "end", True))
    length = end - start
    allowed = ", ".join(_hours(d) for d in program.durations)
    if (length not in program.durations if moved_start else length > max(program.durations)):
        violations.append(Violation("durations", f"the event lasts {_hours(length)} h; the "
                                    f"program allows {allowed} h", "end", True))
    return violations


def _budgets(p: Proposal, events: Sequence[CalledEvent]) -> list[Violation]:
    """The program's season and monthly caps, counted as the planner counts them: events of
    the program in the same local year (and month), test events apart unless they count."""
    program = p.program
    counts_in_budget = program.test_event is not None and program.test_event.count_in_budget
    if p.test_event and not counts_in_budget:
        return []
    day = calendar.local_date(program, p.start_utc)
    days = [calendar.local_date(program, e.start_utc) for e in events
            if e.program_id == program.id and e.event_id != p.event_id
            and (counts_in_budget or not e.test_event)]
    violations = []
    in_year = [d for d in days if d.year == day.year]
    cap = effective_max(program)
    if len(in_year) >= cap:
        violations.append(Violation("season_budget", f"{program.id} already has {len(in_year)} "
                                    f"events in {day.year}, its season maximum is {cap}",
                                    "start", True))
    monthly = program.budget.max_per_month
    in_month = [d for d in in_year if d.month == day.month]
    if monthly is not None and len(in_month) >= monthly:
        violations.append(Violation("monthly_budget", f"{program.id} already has "
                                    f"{len(in_month)} events in {day:%Y-%m}, at most {monthly} "
                                    f"a month", "start", True))
    return violations


def _signal(p: Proposal) -> list[Violation]:
    program = p.program
    if p.intervals is not None:
        return [Violation(v.rule, v.message, f"intervals.{i}.value", v.overridable)
                for i, value in enumerate(p.intervals) for v in _value(program, value, True)]
    if program.signal.value is not None:
        if p.setpoint_kw is not None:
            return [Violation("signal", f"program {program.id} sends a fixed "
                              f"{program.signal.type} of {program.signal.value:g}; leave it out",
                              "setpoint_kw", False)]
        return []
    if p.setpoint_kw is None:
        return [] if p.event_id is not None else [Violation(
            "signal", f"program {program.id} needs a setpoint in {program.signal.unit}",
            "setpoint_kw", False)]
    return _value(program, p.setpoint_kw, False)


def _value(program: Program, value: float, in_profile: bool) -> list[Violation]:
    """One signal value against the program's signal type and dispatch kind."""
    kind = program.signal.type
    if kind == CAPACITY:
        if not 0 <= value <= 1:
            return [Violation("signal", f"{value:g}: an {CAPACITY} is a fraction 0-1 "
                              "(0 = no charging, 1 = no limit)", "setpoint_kw", False)]
        return []
    if in_profile and program.signal.value is not None:
        return [Violation("signal", f"program {program.id} sends a {kind}: only fractions 0-1 "
                          f"of {CAPACITY} may vary", "setpoint_kw", False)]
    violations = []
    if program.dispatch is Dispatch.DISCHARGE and value < 0 and kind not in SIGNED_SIGNAL_TYPES:
        violations.append(Violation("signal", f"{value:g} kW: a {kind} in discharge program "
                                    f"{program.id} is not negative", "setpoint_kw", False))
    limit = program.limits.inverter_max_kw
    if limit is not None and abs(value) > limit:
        violations.append(Violation("signal", f"{value:g} kW exceeds the program's inverter "
                                    f"limit of {limit:g} kW", "setpoint_kw", False))
    return violations


def _targets(p: Proposal, programs_of: Mapping[str, frozenset[str] | None],
             refused: Mapping[str, str]) -> list[Violation]:
    """Known VENs, enrolled in the event's program, that the VTN serves."""
    program_id = p.program.id
    if not p.ven_ids:
        return [Violation("targets", f"program {program_id} has no enabled VEN to send to",
                          "ven_ids", False)]
    violations = []
    for ven_id in p.ven_ids:
        programs = programs_of.get(ven_id)
        if programs is None:
            why = f"unknown VEN {ven_id}"
        elif program_id not in programs:
            why = f"VEN {ven_id} is not enrolled in {program_id} (it is in {', '.join(sorted(programs))})"
        elif ven_id in refused:
            why = f"VEN {ven_id} is {refused[ven_id]}"
        else:
            continue
        violations.append(Violation("targets", why, "ven_ids", False))
    return violations


def _conflicts(p: Proposal, events: Sequence[CalledEvent]) -> list[Violation]:
    """Another event for any of the same VENs at an overlapping time (either program)."""
    targets = set(p.ven_ids)
    violations = []
    for other in events:
        if other.event_id == p.event_id or not (other.start_utc < p.end_utc
                                                and p.start_utc < other.end_utc):
            continue
        shared = sorted(targets & other.ven_ids)
        if shared:
            more = f" and {len(shared) - 3} more" if len(shared) > 3 else ""
            violations.append(Violation(
                "conflicts", f"overlaps event {other.event_id} ({_z(other.start_utc)}-"
                f"{_z(other.end_utc)}) for VEN {', '.join(shared[:3])}{more}", "start", True))
    return violations


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:g}"


def _z(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _local(program: Program, when: datetime) -> str:
    return when.astimezone(program.timezone).strftime("%H:%M")
