"""Season replay and metrics: how well a program's events chase the real peaks.

`run(program, inputs, years, ...)` replays each season with the online planner
(or a baseline) and scores it against the actual load:

- `peak_hour_hit`: the calendar year's highest-load hour lies inside an event;
- `top40_hit`: share of the `targeting.top_days` (40) highest daily peaks of the
  `targeting.peak_months` (July-August) whose peak hour lies inside an event
  on that day;
- `event_count`: events that count against the season budget (not test events,
  not events cancelled by a storm).

Baselines, computed by the same scoring code:
- `hindsight`: the season's highest day plus the chase-month days with the
  highest ACTUAL daily peak, `typical_per_season` in all, each window placed on
  the actual load (an upper bound no online planner can reach);
- `forecast-rank`: the same ranking on the forecast instead of the actual load,
  knowing the whole season's forecasts in advance (not online either);
- `threshold`: every allowed day whose forecast daily peak is at least a fixed
  MW threshold (up to the season maximum), window at the forecast peak.

Pure apart from the optional progress callback: plain data in, dataclasses out.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timezone
from typing import Callable

import numpy as np

from schedules import calendar
from schedules.forecast import DayForecast, HourlySeries, day_bounds_s, from_epoch_s, to_epoch_s
from schedules.model import Program
from schedules.planner import (DayDecision, EventKind, PlanInputs, PlannedEvent, PlannerConfig, SeasonPlan,
                               _event, _forecast, _place_window, decision_moment, effective_max,
                               plan_season)

UTC = timezone.utc
POLICIES = ("planner", "hindsight", "forecast-rank", "threshold")
DEFAULT_THRESHOLD_MW = 18500.0


@dataclass(frozen=True)
class SeasonResult:
    year: int
    events: tuple[PlannedEvent, ...]       # active events (dispatch and test)
    peak_hour_hit: bool
    top40_hit: float
    event_count: int
    annual_peak_utc: datetime | None = None
    cancelled: int = 0
    decisions: tuple[DayDecision, ...] = ()   # the planner's, day by day (baselines: none)


@dataclass(frozen=True)
class BacktestResult:
    program_id: str
    policy: str
    forecast: str
    seasons: tuple[SeasonResult, ...]

    @property
    def summary(self) -> dict:
        n = len(self.seasons)
        return {
            "peak_hour_hits": sum(s.peak_hour_hit for s in self.seasons),
            "seasons": n,
            "top40_hit_mean": round(float(np.mean([s.top40_hit for s in self.seasons])), 4)
            if n else 0.0,
            "event_count_mean": round(float(np.mean([s.event_count for s in self.seasons])), 2)
            if n else 0.0,
        }


def _hour_inside(events: list[PlannedEvent], hour_start_s: int) -> bool:
    """The whole hour [start, start + 1 h) lies inside one event."""
    for e in events:
        if to_epoch_s(e.start_utc) <= hour_start_s and hour_start_s + 3600 <= to_epoch_s(e.end_utc):
            return True
    return False


def score_season(program: Program, year: int, events: list[PlannedEvent],
                 load: HourlySeries) -> SeasonResult:
    """Score active events of one season against the actual hourly load."""
    tz = program.timezone
    active = [e for e in events if e.active and e.kind in (EventKind.DISPATCH, EventKind.TEST)]
    lo, _ = day_bounds_s(date(year, 1, 1), tz)
    hi, _ = day_bounds_s(date(year + 1, 1, 1), tz)
    year_load = load.between(lo, hi)
    peak_hit, peak_utc = False, None
    if len(year_load.t):
        k = int(np.nanargmax(year_load.mw))
        peak_utc = from_epoch_s(year_load.t[k])
        peak_hit = _hour_inside(active, int(year_load.t[k]))

    by_day: dict[date, list[PlannedEvent]] = {}
    for e in active:
        by_day.setdefault(e.day, []).append(e)
    peaks = []      # (peak MW, day, peak hour start)
    day = date(year, 1, 1)
    months = set(program.targeting.peak_months)
    while day.year == year:
        if day.month in months:
            start, end = day_bounds_s(day, tz)
            hours = load.between(start, end)
            if len(hours.t) and np.isfinite(hours.mw).any():
                k = int(np.nanargmax(hours.mw))
                peaks.append((float(hours.mw[k]), day, int(hours.t[k])))
        day = date.fromordinal(day.toordinal() + 1)
    peaks.sort(key=lambda p: -p[0])
    top = peaks[:program.targeting.top_days]
    hits = sum(_hour_inside(by_day.get(d, []), t) for _, d, t in top)
    counted = sum(1 for e in active if e.kind is EventKind.DISPATCH)
    return SeasonResult(year, tuple(sorted(active, key=lambda e: e.start_utc)), peak_hit,
                        hits / len(top) if top else 0.0, counted, peak_utc,
                        sum(1 for e in events if not e.active))


def _actual_forecast(program: Program, day: date, load: HourlySeries) -> DayForecast | None:
    start, end = day_bounds_s(day, program.timezone)
    hours = load.between(start, end)
    return DayForecast(day, hours.t, hours.mw, "actual") if len(hours.t) else None


def hindsight_events(program: Program, year: int, inputs: PlanInputs,
                     config: PlannerConfig | None = None) -> list[PlannedEvent]:
    """The season's highest day, then the top allowed days of the chase months,
    `typical_per_season` in all. Ranked and placed on the actual load, or with
    `config` on the forecast (knowing the whole season's forecasts in advance)."""
    days = [d for d in calendar.season_days(program, year) if calendar.is_allowed_day(program, d)]
    scored = []
    for day in days:
        if config is None:
            fc = _actual_forecast(program, day, inputs.load)
        else:
            moment = decision_moment(program, day)
            fc = _forecast(program, day, inputs.as_of(moment, program.timezone), moment, config)
        if fc is not None:
            scored.append((fc.peak_mw, day, fc))
    year_peak = max((s[0] for s in scored), default=None)
    # the season's highest day first (the annual peak when it falls in season), then
    # the chase months only: what the program aims at
    scored.sort(key=lambda s: (s[0] != year_peak, -s[0]))
    scored = [s for s in scored if s[0] == year_peak or s[1].month in program.targeting.peak_months]
    out = []
    for _, day, fc in scored[:min(program.budget.typical_per_season, effective_max(program))]:
        window = _place_window(program, day, fc, inputs.exclusions)
        if window is not None:
            out.append(_event(program, day, window, EventKind.DISPATCH,
                              decision_moment(program, day), fc,
                              "hindsight" if config is None else "season ranking by forecast"))
    return sorted(out, key=lambda e: e.start_utc)


def threshold_events(program: Program, year: int, inputs: PlanInputs, config: PlannerConfig,
                     threshold_mw: float) -> list[PlannedEvent]:
    """Every allowed day whose forecast peak >= threshold_mw, up to the season maximum."""
    out = []
    for day in calendar.season_days(program, year):
        if len(out) >= effective_max(program) or not calendar.is_allowed_day(program, day):
            continue
        moment = decision_moment(program, day)
        view = inputs.as_of(moment, program.timezone)
        fc = _forecast(program, day, view, moment, config)
        if fc is None or fc.peak_mw < threshold_mw:
            continue
        window = _place_window(program, day, fc, view.exclusions)
        if window is not None:
            out.append(_event(program, day, window, EventKind.DISPATCH, moment, fc,
                              f"forecast >= {threshold_mw:.0f} MW"))
    return out


def run(program: Program, inputs: PlanInputs, years: list[int],
        config: PlannerConfig = PlannerConfig(), policy: str = "planner",
        leader: Program | None = None, threshold_mw: float = DEFAULT_THRESHOLD_MW,
        progress: Callable[[date], None] | None = None) -> BacktestResult:
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}")
    seasons = []
    for year in years:
        if policy == "planner":
            plan: SeasonPlan = plan_season(program, year, inputs, config, leader=leader,
                                           progress=progress)
            events = list(plan.events)
        elif policy == "hindsight":
            events = hindsight_events(leader or program, year, inputs)
        elif policy == "forecast-rank":
            events = hindsight_events(leader or program, year, inputs, config)
        else:
            events = threshold_events(leader or program, year, inputs, config, threshold_mw)
        if policy != "planner" and progress:
            for day in calendar.season_days(leader or program, year):
                progress(day)
        score = score_season(program, year, events, inputs.load)
        seasons.append(replace(score, decisions=plan.decisions) if policy == "planner" else score)
    return BacktestResult(program.id, policy, config.forecast, tuple(seasons))


def decision_json(decision: DayDecision, tz) -> dict:
    """One day's decision and what it saw (`vtn backtest --why`)."""
    def mw(value: float | None) -> float | None:
        return round(value, 1) if value is not None else None

    return {"day": decision.day.isoformat(),
            "decided": decision.decided_utc.astimezone(tz).isoformat(),
            "event": decision.event is not None,
            "reason": decision.reason,
            "forecast_peak_mw": mw(decision.forecast_peak_mw),
            "forecast_source": decision.forecast_source,
            "threshold_mw": mw(decision.threshold_mw),
            "rank": decision.rank,
            "budget_left": decision.budget_left,
            "exclusions": list(decision.exclusions)}


def to_json(result: BacktestResult, program: Program, why: bool = False) -> dict:
    """The `vtn backtest --json` document, in the issue's shape; event times in
    program-local ISO 8601; a test event carries `"testEvent": true`. With `why`,
    each season also lists every day's decision (`decision_json`)."""
    tz = program.timezone

    def event_json(e: PlannedEvent) -> dict:
        out = {"start": e.start_utc.astimezone(tz).isoformat(),
               "end": e.end_utc.astimezone(tz).isoformat()}
        if e.test_event:
            out["testEvent"] = True
        return out

    return {
        "program": program.id,
        "seasons": [{
            "year": s.year,
            "events": [event_json(e) for e in s.events],
            "peak_hour_hit": s.peak_hour_hit,
            "top40_hit": round(s.top40_hit, 4),
            "event_count": s.event_count,
            **({"decisions": [decision_json(d, tz) for d in s.decisions]} if why else {}),
        } for s in result.seasons],
        "summary": result.summary,
    }
