"""The VTN's planner job: forecast + alerts + program rules -> pending events -> published.

Every run (hourly under `vtn serve`), `plan_and_store` asks the planner for each
program's next undecided day, using only what is known now, and stores a
called event as *pending* with its targets. `publish_due` sends pending events
once their notice time has come (start minus the program's notice). The data
files are read at every run, so a feed that is appended to is picked up; a file
that cannot be used is logged (file, line, field) and that run plans nothing.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from flexadr.clock import Clock
from schedules import calendar, sources, storms
from schedules import model
from schedules.model import Dispatch, Program
from schedules.planner import (EventKind, PlanInputs, PlannedEvent, PlannerConfig,
                               plan_next_day)
from vtn.lifecycle import publish, publish_planned
from vtn.store import CANCELLED, PENDING, Event, Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannerSources:
    load_csv: Path                    # ISO-NE-style hourly load + day-ahead forecast
    weather_csv: Path | None = None   # daily temperatures (own forecaster)
    alerts: tuple[Path, ...] = ()     # NWS CAP ATOM or api.weather.gov GeoJSON files
    forecast: str = "iso"             # "iso" or "own"
    setpoint_kw: float = 5.0          # discharge request per device


def read_inputs(found: PlannerSources, program: Program) -> PlanInputs:
    """The I/O edge: read every source file into the planner's inputs; raises
    sources.DataFileError for a file that cannot be used."""
    data = sources.read_isone_csv(found.load_csv, program.timezone)
    weather = sources.read_daily_weather(found.weather_csv) if found.weather_csv else None
    alerts = [alert for path in found.alerts for alert in sources.read_alerts(path)]
    return PlanInputs.build(data.load, program.timezone, data.iso_forecast, weather,
                            storms.exclusions(program, alerts))


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
                   setpoint_kw: float, config: PlannerConfig = PlannerConfig()) -> list[Event]:
    """Decide each program's next day now; store what the planner calls as pending events."""
    so_far = {pid: planned_so_far(store, program) for pid, program in programs.items()}
    stored = []
    for pid, decision in plan_next_day(programs, inputs, so_far, clock, config).items():
        planned = decision.event
        if planned is None:
            log.info("planner: no %s event on %s (%s)", pid, decision.day, decision.reason)
            continue
        if any(p.day == planned.day for p in so_far.get(pid, [])):
            continue                                   # that day is already decided
        targets = [ven.ven_id for ven in store.vens(pid)]
        if not targets:
            log.warning("planner: %s event on %s has no enrolled VEN", pid, planned.day)
            continue
        program = programs[pid]
        event = publish(store, program, planned.start_utc, planned.end_utc, targets, clock,
                        setpoint_kw=setpoint_kw if program.dispatch is Dispatch.DISCHARGE else None,
                        test_event=planned.test_event, planned=True)
        log.info("planner: %s event %s on %s (%s)", pid, event.event_id, planned.day,
                 decision.reason)
        stored.append(event)
    return stored


def publish_due(store: Store, programs: dict[str, Program], clock: Clock) -> list[Event]:
    """Send every pending event whose notice time has come."""
    now = clock.now()
    sent = []
    for event in store.events(status=PENDING):
        program = programs.get(event.program_id)
        if program is None or event.start_utc - program.notice > now:
            continue
        sent.append(publish_planned(store, event.event_id, clock))
    return sent


def run_once(store: Store, programs: dict[str, Program], found: PlannerSources,
             clock: Clock) -> tuple[list[Event], list[Event]]:
    """One scheduler tick: plan, then publish what is due. Returns (planned, published)."""
    leader = next(iter(programs.values()))
    inputs = read_inputs(found, leader)
    planned = plan_and_store(store, programs, inputs, clock, found.setpoint_kw,
                             PlannerConfig(forecast=found.forecast))
    return planned, publish_due(store, programs, clock)


@dataclass(frozen=True)
class PlannerSettings:
    """The `[planner]` table of the VTN config."""
    programs: tuple[str, ...]
    sources: PlannerSources
    every: timedelta = field(default=timedelta(hours=1))


def settings_from(table: dict[str, Any], base: Path) -> PlannerSettings:
    """Parse `[planner]`; relative paths are relative to the config file."""
    def path(value: str) -> Path:
        return (base / value).resolve()

    try:
        return PlannerSettings(
            programs=tuple(table["programs"]),
            sources=PlannerSources(
                load_csv=path(table["load_csv"]),
                weather_csv=path(table["weather_csv"]) if table.get("weather_csv") else None,
                alerts=tuple(path(p) for p in table.get("alerts", [])),
                forecast=table.get("forecast", "iso"),
                setpoint_kw=float(table.get("setpoint_kw", 5.0))),
            every=timedelta(minutes=float(table.get("every_min", 60))))
    except KeyError as err:
        raise ValueError(f"planner.{err.args[0]}: missing") from err


class PlanningSchedule:
    """Runs `run_once` on an APScheduler interval, off the event loop (it reads files)."""

    def __init__(self, store: Store, settings: PlannerSettings, clock: Clock):
        self.store = store
        self.settings = settings
        self.clock = clock
        self.programs = {pid: model.load(pid) for pid in settings.programs}
        self.scheduler = AsyncIOScheduler(timezone=timezone.utc)
        self.ticks = 0

    def start(self) -> None:
        self.scheduler.add_job(self.tick, "interval", seconds=self.settings.every.total_seconds(),
                               next_run_time=datetime.now(timezone.utc), max_instances=1,
                               coalesce=True)
        self.scheduler.start()

    async def tick(self) -> None:
        try:
            planned, published = await asyncio.to_thread(
                run_once, self.store, self.programs, self.settings.sources, self.clock)
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
        log.info("planner: %d planned, %d published", len(planned), len(published))

    def stop(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
