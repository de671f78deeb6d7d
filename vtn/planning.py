"""The VTN's planner job: forecast + alerts + program rules -> pending events -> published.

Every run (hourly under `vtn serve`):
1. `withdraw_for_exclusions`: an event that a storm alert or a declared
   emergency known by now overlaps is cancelled (or, under way, cut short at
   the exclusion) - the planner only avoided what was known when it decided;
2. `plan_and_store` asks the planner for each program's next undecided day,
   using only what is known now and the program's own exclusions, and stores
   a called event as *pending* with its targets;
3. `publish_due` sends pending events once their notice time has come (start
   minus the program's notice).
The data files are read at every run, so a feed that is appended to (or a forecast
file an operator drops in place) is picked up; a file that cannot be used is logged
(file, line, field) and that run changes nothing. With `[planner] nws`, each run
first refreshes the live NWS forecasts (vtn.weather_feed), which keep their last
good values when the service fails. Every decision, called or not, is stored with
what it saw (`vtn planner decisions`).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import NamedTuple

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from flexadr.clock import Clock
from schedules import calendar, emergencies, model, sources, storms
from schedules.forecast import ForecastRows
from schedules.model import Dispatch, Program
from schedules.planner import (DayDecision, EventKind, PlanInputs, PlannedEvent, PlannerConfig,
                               plan_next_day)
from schedules.storms import Exclusion
from vtn import audit
from vtn.lifecycle import cancel, modify, publish, publish_planned
from vtn.store import CANCELLED, PENDING, Event, PlannerDecision, Store
from vtn.weather_feed import NwsFeed, NwsSettings

log = logging.getLogger(__name__)
PLANNER = audit.Actor("planner", "system")


@dataclass(frozen=True)
class PlannerSources:
    load_csv: Path                    # ISO-NE-style hourly load + day-ahead forecast
    load_history: tuple[Path, ...] = ()   # older load files read before it (across a gap)
    weather_csv: Path | None = None   # daily temperatures (own forecaster)
    weather_forecast: Path | None = None   # issued hourly temperature forecasts (own forecaster)
    alerts: tuple[Path, ...] = ()     # NWS CAP ATOM or api.weather.gov GeoJSON files
    emergencies: tuple[Path, ...] = ()   # declared emergencies CSV (schedules/emergencies.py)
    forecast: str = "iso"             # "iso" or "own"
    setpoint_kw: float = 5.0          # discharge request per device


def read_inputs(found: PlannerSources, program: Program,
                live: ForecastRows | None = None) -> PlanInputs:
    """The I/O edge: read the load, forecast and weather files (exclusions apart);
    raises sources.DataFileError for a file that cannot be used. `live`: issued
    forecasts of a feed (vtn.weather_feed), over the file's for the same hours."""
    data = sources.read_load_files((*found.load_history, found.load_csv), program.timezone)
    weather = sources.read_daily_weather(found.weather_csv) if found.weather_csv else None
    rows = (sources.read_weather_forecast_rows(found.weather_forecast, program.timezone)
            if found.weather_forecast else None)
    if live is not None:
        rows = live if rows is None else rows + live
    issued = rows.table(program.timezone) if rows is not None else None
    return PlanInputs.build(data.load, program.timezone, data.iso_forecast, weather,
                            weather_forecast=issued)


def read_exclusions(found: PlannerSources,
                    programs: dict[str, Program]) -> dict[str, tuple[Exclusion, ...]]:
    """Each program's storm and emergency exclusions; a follower (V2X) also takes
    its leader's, as its events are the leader's."""
    alerts = [alert for path in found.alerts for alert in sources.read_alerts(path)]
    declared = [e for path in found.emergencies for e in sources.read_emergencies(path)]
    for stray in emergencies.unused(programs.values(), declared):
        log.warning("declared emergency of type %r (%s): no program excludes that type",
                    stray.type, stray.start_utc.isoformat())

    def own(program: Program) -> list[Exclusion]:
        return storms.exclusions(program, alerts) + emergencies.exclusions(program, declared)

    out = {}
    for pid, program in programs.items():
        periods = own(program)
        leader = programs.get(program.follows or "") or (
            model.load(program.follows) if program.follows else None)
        if leader is not None:
            periods += own(leader)
        out[pid] = tuple(sorted(periods, key=lambda e: (e.start_utc, e.end_utc)))
    return out


def _as_planned(event: Event, program: Program) -> PlannedEvent:
    kind = EventKind.TEST if event.test_event else EventKind.DISPATCH
    return PlannedEvent(program_id=event.program_id,
                        day=calendar.local_date(program, event.start_utc),
                        start_utc=event.start_utc, end_utc=event.end_utc, kind=kind,
                        decided_utc=event.created_at, notice_utc=event.start_utc - program.notice)


def planned_so_far(store: Store, program: Program) -> list[PlannedEvent]:
    return [_as_planned(event, program) for event in store.events(program_id=program.id)
            if event.status != CANCELLED]


def plan_and_store(store: Store, programs: dict[str, Program], inputs: PlanInputs, clock: Clock,
                   setpoint_kw: float, config: PlannerConfig = PlannerConfig(),
                   exclusions: dict[str, tuple[Exclusion, ...]] | None = None) -> list[Event]:
    """Decide each program's next day now; store what the planner calls as pending events."""
    so_far = {pid: planned_so_far(store, program) for pid, program in programs.items()}
    stored = []
    decisions = plan_next_day(programs, inputs, so_far, clock, config, exclusions)
    for pid, decision in decisions.items():
        planned = decision.event
        if planned is not None and any(p.day == planned.day for p in so_far.get(pid, [])):
            continue                                   # that day is already decided
        event = _store_call(store, programs[pid], decision, clock, setpoint_kw)
        if event is not None:
            stored.append(event)
        elif planned is None:
            log.info("planner: no %s event on %s (%s)", pid, decision.day, decision.reason)
    return stored


def _store_call(store: Store, program: Program, decision: DayDecision, clock: Clock,
                setpoint_kw: float) -> Event | None:
    """The decision kept with what it saw; a called day also becomes a pending event."""
    planned, event = decision.event, None
    with store.transaction():
        if planned is not None:
            targets = [ven.ven_id for ven in store.vens(program.id)]
            if targets:
                event = publish(store, program, planned.start_utc, planned.end_utc, targets,
                                clock, setpoint_kw=setpoint_kw
                                if program.dispatch is Dispatch.DISCHARGE else None,
                                test_event=planned.test_event, planned=True)
                _audit(store, clock, "event.create", None, event, decision.reason)
                log.info("planner: %s event %s on %s (%s)", program.id, event.event_id,
                         planned.day, decision.reason)
            else:
                log.warning("planner: %s event on %s has no enrolled VEN", program.id,
                            planned.day)
        store.record_decision(as_record(program.id, decision, event))
    return event


def as_record(program_id: str, decision: DayDecision, event: Event | None) -> PlannerDecision:
    return PlannerDecision(
        program_id=program_id, day=decision.day, decided_utc=decision.decided_utc,
        event_id=event.event_id if event is not None else None, reason=decision.reason,
        forecast_peak_mw=decision.forecast_peak_mw, threshold_mw=decision.threshold_mw,
        rank=decision.rank, budget_left=decision.budget_left,
        exclusions="; ".join(decision.exclusions), forecast_source=decision.forecast_source)


def publish_due(store: Store, programs: dict[str, Program], clock: Clock) -> list[Event]:
    """Send every pending event whose notice time has come."""
    now = clock.now()
    sent = []
    for event in store.events(status=PENDING):
        program = programs.get(event.program_id)
        if program is None or event.start_utc - program.notice > now:
            continue
        with store.transaction():
            before = audit.snapshot(event)
            sent.append(publish_planned(store, event.event_id, clock))
            _audit(store, clock, "event.publish", before, sent[-1], "notice time")
    return sent


def withdraw_for_exclusions(store: Store, exclusions: dict[str, tuple[Exclusion, ...]],
                            clock: Clock) -> list[Event]:
    """Cancel each open event that an exclusion known by now overlaps from its
    start or from now; an event that may run until the exclusion begins is cut
    short there (its new end must lie ahead, or VENs would never see it)."""
    now = clock.now()
    changed = []
    for event in store.open_events():
        if event.end_utc <= now:
            continue
        hits = [p for p in exclusions.get(event.program_id, ())
                if p.known_utc <= now and p.overlaps(max(event.start_utc, now), event.end_utc)]
        if not hits:
            continue
        first = min(hits, key=lambda p: p.start_utc)
        before = audit.snapshot(event)
        if first.start_utc <= max(event.start_utc, now):
            with store.transaction():
                changed.append(cancel(store, event.event_id, clock))
                _audit(store, clock, "event.cancel", before, changed[-1], first.reason)
            log.warning("planner: %s event %s cancelled: %s", event.program_id,
                        event.event_id, first.reason)
        else:
            with store.transaction():
                changed.append(modify(store, event.event_id, clock, end_utc=first.start_utc))
                _audit(store, clock, "event.modify", before, changed[-1], first.reason)
            log.warning("planner: %s event %s cut short at %s: %s", event.program_id,
                        event.event_id, first.start_utc.isoformat(), first.reason)
    return changed


def _audit(store: Store, clock: Clock, action: str, before: dict | None, after: Event,
           reason: str) -> None:
    """The planner's own changes are in the audit trail too (actor "planner")."""
    with store.session() as session:
        audit.record(session, actor=PLANNER.name, action=action, subject_type="event",
                     subject_id=after.event_id, before=before, after=audit.snapshot(after),
                     reason=reason, clock=clock)


class PlanningRun(NamedTuple):
    planned: list[Event]
    published: list[Event]
    withdrawn: list[Event]        # cancelled or cut short by a storm / emergency


def run_once(store: Store, programs: dict[str, Program], found: PlannerSources,
             clock: Clock, live: ForecastRows | None = None) -> PlanningRun:
    """One scheduler tick: withdraw what a new exclusion hits, plan, publish what is due."""
    leader = next(iter(programs.values()))
    inputs = read_inputs(found, leader, live)
    exclusions = read_exclusions(found, programs)
    withdrawn = withdraw_for_exclusions(store, exclusions, clock)
    planned = plan_and_store(store, programs, inputs, clock, found.setpoint_kw,
                             PlannerConfig(forecast=found.forecast), exclusions)
    return PlanningRun(planned, publish_due(store, programs, clock), withdrawn)


@dataclass(frozen=True)
class PlannerSettings:
    """The `[planner]` table of the VTN config."""
    programs: tuple[str, ...]
    sources: PlannerSources
    every: timedelta = field(default=timedelta(hours=1))
    nws: NwsSettings | None = None    # live hourly forecasts from api.weather.gov


class PlanningSchedule:
    """Runs `run_once` on an APScheduler interval, off the event loop (it reads files)."""

    def __init__(self, store: Store, settings: PlannerSettings, clock: Clock):
        self.store = store
        self.settings = settings
        self.clock = clock
        self.programs = {pid: model.load(pid) for pid in settings.programs}
        self.scheduler = AsyncIOScheduler(timezone=timezone.utc)
        self.feed = NwsFeed(settings.nws) if settings.nws is not None else None
        self.ticks = 0
        self.leadership = None    # vtn serve: several workers, one planner (vtn/leadership.py)

    def start(self) -> None:
        self.scheduler.add_job(self.tick, "interval", seconds=self.settings.every.total_seconds(),
                               next_run_time=datetime.now(timezone.utc), max_instances=1,
                               coalesce=True)
        self.scheduler.start()

    async def tick(self) -> None:
        if self.leadership is not None and not self.leadership.leading:
            return
        if self.feed is not None:
            await self.feed.refresh()
        try:
            planned, published, withdrawn = await asyncio.to_thread(
                run_once, self.store, self.programs, self.settings.sources, self.clock,
                self.feed.rows() if self.feed is not None else None)
        except sources.DataFileError as err:
            # a bad data file must not stop the VTN; the message names what to fix (a
            # traceback would bury it) and the next tick reads the files again
            log.error("planner run failed: %s", err)
            return
        except Exception:     # a planner bug must not stop the VTN either
            log.exception("planner run failed")
            return
        finally:
            self.ticks += 1
        log.info("planner: %d planned, %d published, %d withdrawn", len(planned),
                 len(published), len(withdrawn))

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
