"""What the console pages show, read from the store (no SQL in templates, no HTML here).

Fleet kW follows the settlement's convention: for discharge programs, power out of the
devices (telemetry kW is power into a device, so its sign is flipped); for charge-delay
programs, charging load. Baseline: the fleet's mean kW over the hour before the event
(a glance figure; the season results use the program's own baseline rules).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import select

from schedules import model
from schedules.model import Dispatch, Program
from vtn.settlement import params_for, settle
from vtn.settlement.params import PARAMS
from vtn.settlement.store_adapter import query_season
from vtn.store import (ACTIVE, CANCELLED, COMPLETED, PENDING, Event, EventTarget,
                       EventTransition, Store, TelemetryPoint, Ven)

ONLINE_POLLS = 3          # as the admin API: online if seen within this many poll intervals
BASELINE_SPAN = timedelta(hours=1)
NEXT_EVENTS = 3
SHORT_ROW = 6             # audit rows with at most this many values are listed in full


def program_file(program_id: str) -> Program | None:
    try:
        return model.load(program_id)
    except (FileNotFoundError, model.ProgramError):
        return None


def sense(program_id: str) -> float:
    program = program_file(program_id)
    return -1.0 if program is not None and program.dispatch is Dispatch.DISCHARGE else 1.0


def is_online(ven: Ven, now: datetime, poll_interval: timedelta) -> bool:
    return bool(ven.last_seen_at and ven.last_seen_at >= now - ONLINE_POLLS * poll_interval)


@dataclass
class Counts:
    opted_in: int = 0
    opted_out: int = 0
    no_answer: int = 0
    offline: int = 0
    unplugged: int = 0


@dataclass
class FleetEvent:
    event: Event
    counts: Counts
    target_kw: float
    baseline_kw: float | None
    series: list[tuple[float, float]] = field(default_factory=list)   # (unix s, fleet kW)

    @property
    def delivered_kw(self) -> float | None:
        return self.series[-1][1] if self.series else None

    def as_json(self) -> dict:
        e = self.event
        return {"event_id": e.event_id, "program_id": e.program_id, "status": e.status,
                "start": e.start_utc.timestamp(), "end": e.end_utc.timestamp(),
                "target_kw": self.target_kw, "baseline_kw": self.baseline_kw,
                "delivered_kw": self.delivered_kw, "series": self.series,
                "counts": vars(self.counts)}


def _points(store: Store, ven_ids: list[str], start: datetime,
            end: datetime) -> list[TelemetryPoint]:
    """The VENs' intervals overlapping [start, end), oldest first: one query per fleet."""
    with store.session() as s:
        return list(s.exec(select(TelemetryPoint).where(
            TelemetryPoint.ven_id.in_(ven_ids), TelemetryPoint.interval_end > start,
            TelemetryPoint.interval_start < end).order_by(TelemetryPoint.interval_start)))


def fleet_series(points: list[TelemetryPoint], kw_sense: float) -> list[tuple[float, float]]:
    """The fleet's kW per reporting interval (summed over the VENs that reported it)."""
    totals: dict[datetime, float] = defaultdict(float)
    for point in points:
        if point.kw is not None:
            totals[point.interval_start] += kw_sense * point.kw
    return [(when.timestamp(), round(kw, 3)) for when, kw in sorted(totals.items())]


def fleet_event(store: Store, event: Event, now: datetime,
                poll_interval: timedelta) -> FleetEvent:
    targets = store.targets(event.event_id)
    ven_ids = [t.ven_id for t in targets]
    points = _points(store, ven_ids, event.start_utc - BASELINE_SPAN,
                     min(event.end_utc, now) + poll_interval)
    latest = {p.ven_id: p for p in points}           # each VEN's last interval in view
    with store.session() as s:
        vens = {v.ven_id: v for v in s.exec(select(Ven).where(Ven.ven_id.in_(ven_ids)))}
    counts = Counts()
    for target in targets:
        if target.opt_type == "optIn":
            counts.opted_in += 1
        elif target.opt_type == "optOut":
            counts.opted_out += 1
        else:
            counts.no_answer += 1
        ven = vens.get(target.ven_id)
        if ven is not None and not is_online(ven, now, poll_interval):
            counts.offline += 1
        last = latest.get(target.ven_id)
        if last is not None and last.plugged_in is False:
            counts.unplugged += 1
    kw_sense = sense(event.program_id)
    series = fleet_series(points, kw_sense)
    before = [kw for when, kw in series if when < event.start_utc.timestamp()]
    baseline = round(sum(before) / len(before), 3) if before else None
    # Discharge: the setpoint per device; charge delay: the capacity limit per device.
    target_kw = event.signal_value * (len(ven_ids) - counts.opted_out)
    return FleetEvent(event, counts, target_kw, baseline, series)


def now_events(store: Store, now: datetime, poll_interval: timedelta) -> list[FleetEvent]:
    """Active events, then the next few not yet started."""
    events = [e for e in store.events() if e.status not in (CANCELLED, COMPLETED, PENDING)
              and e.end_utc > now]
    active = [e for e in events if e.start_utc <= now or e.status == ACTIVE]
    upcoming = sorted((e for e in events if e not in active), key=lambda e: e.start_utc)
    return [fleet_event(store, e, now, poll_interval)
            for e in active + upcoming[:NEXT_EVENTS]]


@dataclass
class VenRow:
    ven: Ven
    online: bool
    soc_pct: float | None
    plugged_in: bool | None
    opt_outs: int
    state: str


def ven_rows(store: Store, now: datetime, poll_interval: timedelta,
             query: str = "") -> list[VenRow]:
    opt_outs: dict[str, int] = defaultdict(int)
    for event in store.events():
        if event.start_utc.year == now.year and event.status != PENDING:
            for target in store.targets(event.event_id):
                if target.opt_type == "optOut":
                    opt_outs[target.ven_id] += 1
    rows = []
    for ven in store.vens():
        if query and query.lower() not in f"{ven.ven_id} {ven.ven_name} {ven.program_id} " \
                                          f"{ven.device_kind}".lower():
            continue
        last = store.last_telemetry(ven.ven_id)
        state = ("revoked" if ven.revoked_at else "disabled" if ven.disabled_at
                 else "registered" if ven.registration_id else "enrolled")
        rows.append(VenRow(ven, is_online(ven, now, poll_interval),
                           last.soc_pct if last else None, last.plugged_in if last else None,
                           opt_outs[ven.ven_id], state))
    return rows


@dataclass
class ProgramSummary:
    program_id: str
    rules: Program | None
    events_this_season: int
    events_left: int | None
    opt_outs: int
    next_events: list[Event]
    exclusions: list = field(default_factory=list)   # storm / emergency periods in force


EXCLUSION_HORIZON = timedelta(days=7)


def exclusions_in_force(settings, now: datetime) -> dict[str, list]:
    """Each planned program's storm and emergency exclusions known by now and touching
    the coming week (settings: the VTN's [planner], or None: no alert feeds, none known)."""
    if settings is None:
        return {}
    from vtn.planning import read_exclusions
    programs = {pid: model.load(pid) for pid in settings.programs}
    return {pid: [e for e in periods if e.known_utc <= now
                  and e.overlaps(now, now + EXCLUSION_HORIZON)]
            for pid, periods in read_exclusions(settings.sources, programs).items()}


def program_summaries(store: Store, now: datetime, settings=None) -> list[ProgramSummary]:
    in_force = exclusions_in_force(settings, now)
    rows = []
    for stored in store.programs():
        rules = program_file(stored.program_id)
        events = [e for e in store.events(program_id=stored.program_id)
                  if e.start_utc.year == now.year and e.status not in (CANCELLED, PENDING)
                  and not e.test_event]
        opt_outs = sum(1 for e in events for t in store.targets(e.event_id)
                       if t.opt_type == "optOut")
        left = rules.budget.max_per_season - len(events) if rules else None
        upcoming = sorted((e for e in store.events(program_id=stored.program_id)
                           if e.start_utc > now and e.status != CANCELLED),
                          key=lambda e: e.start_utc)
        rows.append(ProgramSummary(stored.program_id, rules, len(events), left, opt_outs,
                                   upcoming[:NEXT_EVENTS], in_force.get(stored.program_id, [])))
    return rows


def settlement_programs() -> list[str]:
    return sorted(PARAMS)


def season_settlement(store: Store, program_id: str, season: int, fleet: bool = False):
    """The program's season settled from the store (ValueError when it cannot be)."""
    return settle(program_id, query_season(store, params_for(program_id), season), fleet=fleet)


@dataclass
class EventDetail:
    event: Event
    transitions: list
    responses: list          # (target, ven, last telemetry)
    notices: list
    fleet: FleetEvent


def event_detail(store: Store, event_id: str, now: datetime,
                 poll_interval: timedelta) -> EventDetail | None:
    event = store.event(event_id)
    if event is None:
        return None
    responses = [(t, store.ven(t.ven_id), store.last_telemetry(t.ven_id))
                 for t in store.targets(event_id)]
    return EventDetail(event, list(store.transitions(event_id)), responses,
                       list(store.notices(event_id=event_id)),
                       fleet_event(store, event, now, poll_interval))


@dataclass
class SeasonEventRow:
    event: Event
    delivered_kw: float
    requested_kw: float | None
    participants: int
    opted_out: int

    @property
    def realisation(self) -> float | None:
        """Delivered / asked: the setpoint over the devices targeted (discharge), or the
        fleet's baseline charging load (charge delay: all of it is to be shed)."""
        return self.delivered_kw / self.requested_kw if self.requested_kw else None


def season_rows(store: Store, result) -> list[SeasonEventRow]:
    by_event: dict[str, list] = defaultdict(list)
    for participant in result.participants:
        for performance in participant.events:
            by_event[performance.event_id].append(performance)
    rows = []
    for event_id, performances in by_event.items():
        event = store.event(event_id)
        if event is None:
            continue
        baselines = [p.baseline_kw for p in performances if p.baseline_kw is not None]
        requested = (sum(baselines) if baselines
                     else event.signal_value * len(store.targets(event_id)) or None)
        rows.append(SeasonEventRow(event, round(sum(p.kw for p in performances), 3), requested,
                                   len(performances),
                                   sum(1 for p in performances if p.status == "opted_out")))
    return sorted(rows, key=lambda r: r.event.start_utc)


def change_marker(store: Store) -> tuple:
    """Changes whenever telemetry arrives, an event changes or a VEN answers: the live
    stream recomputes only then (two index-only aggregates, cheap at any fleet size)."""
    with store.session() as s:
        return (s.exec(select(func.max(TelemetryPoint.id))).one(),
                s.exec(select(func.max(EventTransition.id))).one(),
                s.exec(select(func.max(EventTarget.opt_at))).one())


def audit_changes(row: dict) -> list[tuple[str, object, object]]:
    """(field, before, after) of each value an audited change moved: what a reader looks
    for first (the whole rows stay one click away)."""
    before, after = row["before"] or {}, row["after"] or {}
    if not before and len(after) > SHORT_ROW:
        return []                   # a whole new row (an event, a user): see the details
    return [(key, before.get(key), after.get(key)) for key in sorted(before.keys() | after.keys())
            if before.get(key) != after.get(key)]


@dataclass
class TomorrowPlan:
    """One program's next undecided day: what the planner would decide now, its
    forecast, and the events it has already stored as pending (awaiting their notice)."""
    program_id: str
    decision: object | None               # schedules.planner.DayDecision
    forecast: list[tuple[float, float]]   # (unix s, MW) of the day, as issued by now
    pending: list[Event]


def tomorrow(store: Store, settings, clock) -> list[TomorrowPlan]:
    """settings: the VTN's [planner] (vtn.planning.PlannerSettings) or None. Reads the
    planner's data files (sources.DataFileError when one cannot be used)."""
    pending = sorted(store.events(status=PENDING), key=lambda e: e.start_utc)
    if settings is None:
        ids = sorted({e.program_id for e in pending})
        return [TomorrowPlan(pid, None, [], [e for e in pending if e.program_id == pid])
                for pid in ids]
    from schedules.planner import PlannerConfig, plan_next_day
    from vtn.planning import planned_so_far, read_exclusions, read_inputs
    programs = {pid: model.load(pid) for pid in settings.programs}
    found = settings.sources
    inputs = read_inputs(found, next(iter(programs.values())))
    decisions = plan_next_day(programs, inputs,
                              {pid: planned_so_far(store, p) for pid, p in programs.items()},
                              clock, PlannerConfig(forecast=found.forecast),
                              read_exclusions(found, programs))
    plans = []
    for pid, decision in decisions.items():
        plans.append(TomorrowPlan(pid, decision, _day_forecast(inputs, programs[pid],
                                                               decision.day, clock.now()),
                                  [e for e in pending if e.program_id == pid]))
    return plans


def _day_forecast(inputs, program: Program, day, now: datetime) -> list[tuple[float, float]]:
    if inputs.iso_forecast is None:
        return []
    issued = inputs.iso_forecast.as_of(int(now.timestamp()))
    start = datetime.combine(day, datetime.min.time(), program.timezone).timestamp()
    end = start + 24 * 3600
    return [(float(t), round(float(mw), 1)) for t, mw in zip(issued.t, issued.mw)
            if start <= t < end]
