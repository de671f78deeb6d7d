"""Online event planner: decides, day by day, whether and when to call an event.

API
---
`plan_day(program, day, inputs, state, clock, config) -> DayDecision`
    Decide one local `day`. The decision uses only what is known at
    `clock.now()`, which must not be later than the day's notice deadline
    (`decision_moment(program, day)`: the earliest window start minus the
    program's notice, e.g. 15:00 local the day before for ConnectedSolutions).
    `inputs.as_of(now)` cuts every series at that moment before anything
    looks at it, so the decision cannot depend on later data.

`plan_season(program, year, inputs, config, leader=None, progress=None) -> SeasonPlan`
    Replays a season: a ManualClock set to each day's decision moment, then
    `plan_day`; storm alerts that arrive after a decision cancel (or cut short)
    the events they hit. For a program that `follows` another (V2X follows
    ConnectedSolutions), pass the leader program: the events are the leader's.

`plan_next_day(programs, inputs, events_so_far, clock, config, exclusions) -> {id: DayDecision}`
    For a live scheduler: each program's next undecided day, decided now, each
    with its own storm / emergency exclusions.

`standing_events(program, first_day, last_day) -> list[PlannedEvent]`
    The V2X program's daily Clean Peak windows as recurring low-priority
    events (one per local day, in UTC; their UTC times move with DST).

How a day is decided (`plan_day`)
---------------------------------
1. Too late for the notice, out of season, weekend/weekday, holiday: no event.
2. The program's test day: a flagged test event (`test_event=True`) that does
   not count against the season budget.
3. Season maximum (and the BYOD cycle cap) and the per-month cap: hard limits.
4. Forecast the day (ISO's day-ahead forecast or `forecast_own`) and place the
   window where the forecast peak hour most likely is (`peak_hour_chance`, when
   the forecaster gives one), then where the forecast load over the event is
   highest, skipping starts that overlap a known storm exclusion.
5. The season minimum: when the allowed days left are no more than the events
   still needed to reach `min_per_season`, call.
6. The annual peak first: a day whose bias-corrected forecast reaches the
   year's highest load so far (less 5 %) and 88 % of earlier years' annual
   peaks is called in any season month (June/September only then), even one
   event past the typical count. In June/September the forecast is given one
   recent error spread of benefit: a missed annual peak costs more than one
   shoulder event, and an uncertain forecaster (the own one) otherwise misses
   the first hot days of an early heat wave (2017-06-13).
7. Chase months (July/August): call when the forecast peak reaches an estimate
   of the season's N-th highest daily peak (N = typical count minus shoulder
   events). The estimate pools this summer's peaks seen so far with earlier
   summers' peaks on the dates still to come (scaled by this summer's anomaly;
   summers with weather but no load history enter through a tmax regression).
   Behind schedule, the lower threshold "forecast in the top B/R of the last
   three weeks" (B events left for R chase days) is used instead.
   Past the typical count (`typical_per_season`) only for step 6, or for a
   chase day whose forecast beats the estimated season top-20 level by one
   recent forecast-error spread (at most 3 such events; never past the max).

The targeted option (`PlannerConfig(stopping=True)`, `vtn backtest --targeted`:
at most 8 events, aimed at the annual peak hour) replaces steps 5-7 by an
optimal-stopping rule (`_stopping_decision`).

Each decision records what it saw (`DayDecision`: forecast peak, its rank in
the season so far, threshold, events left, exclusions) beside its reason.

Everything here is pure: plain data and an injected clock in, dataclasses out.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from typing import Callable, Mapping

import numpy as np

from flexadr.clock import Clock, ManualClock
from schedules import calendar
from schedules.forecast import (DayForecast, DailyWeather, ForecastSeries, ForecastTemps,
                                HourlySeries, DailyLoad, OwnForecastConfig, day_bounds_s,
                                forecast_iso, forecast_own, off_day, to_epoch_s)
from schedules.model import MonthDay, Program
from schedules.storms import Exclusion

UTC = timezone.utc


class EventKind(enum.StrEnum):
    DISPATCH = "dispatch"
    TEST = "test"
    STANDING = "standing"      # recurring low-priority window (Clean Peak)


# OpenADR 2.0b: priority 0 means "no priority" (the lowest); 1 is the highest.
PRIORITY_DISPATCH = 1
PRIORITY_STANDING = 0


@dataclass(frozen=True)
class PlannedEvent:
    program_id: str
    day: date                     # local date of the event
    start_utc: datetime
    end_utc: datetime
    kind: EventKind
    decided_utc: datetime         # the data cut-off of the decision
    notice_utc: datetime          # publish at the latest here (start - notice)
    followup_utc: datetime | None = None
    priority: int = PRIORITY_DISPATCH
    forecast_peak_mw: float | None = None
    reason: str = ""
    cancelled: str | None = None  # why a later storm alert cancelled it

    @property
    def test_event(self) -> bool:
        return self.kind is EventKind.TEST

    @property
    def duration_s(self) -> float:
        return (self.end_utc - self.start_utc).total_seconds()

    @property
    def active(self) -> bool:
        return self.cancelled is None

    def local(self, tz) -> tuple[datetime, datetime]:
        return self.start_utc.astimezone(tz), self.end_utc.astimezone(tz)


@dataclass(frozen=True)
class DayDecision:
    day: date
    decided_utc: datetime
    event: PlannedEvent | None
    reason: str                       # why called, or why not
    forecast_peak_mw: float | None = None
    threshold_mw: float | None = None
    # what the decision saw, to explain it (`vtn backtest --why`)
    rank: int | None = None           # the day's forecast peak among this season's so far (1: top)
    budget_left: int | None = None    # events left before the season maximum
    exclusions: tuple[str, ...] = ()  # known storm / emergency periods touching the day's window
    forecast_source: str | None = None   # DayForecast.source of the forecast it used


@dataclass(frozen=True)
class PlanInputs:
    """Everything the planner may look at; `as_of` cuts it to what was known.

    Build with `PlanInputs.build(...)`: it adds the per-day tables (`daily`,
    `iso_daily`) once, each row stamped with the moment it became known (the
    day's end for actual load, the issue time for ISO's forecast)."""
    load: HourlySeries                          # actual hourly load
    iso_forecast: ForecastSeries | None = None  # published day-ahead forecast
    weather: DailyWeather | None = None         # daily temperatures
    exclusions: tuple[Exclusion, ...] = ()      # storm / emergency exclusion periods
    daily: DailyLoad | None = None              # complete days of `load`
    iso_daily: DailyLoad | None = None          # days of `iso_forecast`, by issue time
    weather_forecast: ForecastTemps | None = None   # issued hourly temperature forecasts

    @classmethod
    def build(cls, load: HourlySeries, tz, iso_forecast: ForecastSeries | None = None,
              weather: DailyWeather | None = None,
              exclusions: tuple[Exclusion, ...] | list[Exclusion] = (),
              weather_forecast: ForecastTemps | None = None) -> "PlanInputs":
        iso_daily = None
        if iso_forecast is not None:
            table = DailyLoad.build(HourlySeries(iso_forecast.t, iso_forecast.mw), tz)
            first_hour = np.array([day_bounds_s(date.fromordinal(int(o)), tz)[0]
                                   for o in table.ordinal], dtype=np.int64)
            idx = np.clip(np.searchsorted(iso_forecast.t, first_hour), 0, len(iso_forecast.t) - 1)
            iso_daily = replace(table, end_s=iso_forecast.issued_s[idx])
        return cls(load, iso_forecast, weather, tuple(exclusions), DailyLoad.build(load, tz),
                   iso_daily, weather_forecast)

    def as_of(self, cutoff_utc: datetime, tz) -> "PlanInputs":
        cutoff_s = to_epoch_s(cutoff_utc)
        weather = None
        if self.weather is not None:
            weather = self.weather.before(cutoff_utc.astimezone(tz).date().toordinal())
        daily = self.daily if self.daily is not None else DailyLoad.build(self.load, tz)
        return PlanInputs(
            load=self.load.as_of(cutoff_s),
            iso_forecast=self.iso_forecast.as_of(cutoff_s) if self.iso_forecast else None,
            weather=weather,
            exclusions=tuple(e for e in self.exclusions if e.known_utc <= cutoff_utc),
            daily=daily.as_of(cutoff_s),
            iso_daily=self.iso_daily.as_of(cutoff_s) if self.iso_daily is not None else None,
            weather_forecast=(self.weather_forecast.as_of(cutoff_s)
                              if self.weather_forecast is not None else None))


@dataclass(frozen=True)
class PlannerConfig:
    forecast: str = "iso"                 # "iso" or "own"
    target_events: int | None = None      # default: the program's typical per season
    reference_days: int = 21              # recent days whose peaks set the "recent" threshold
    reference: str = "hybrid"             # "recent", "season" or "hybrid" (see plan_day)
    climate_years: int = 4                # earlier years in the season estimate
    target_slack: int = 0                 # aim the season threshold at this many more days
    over_target_top: int = 20             # past the typical count for the top-N days (0: off)
    over_target_sigma: float = 1.0        # ... with this many recent error spreads to spare
    over_target_max: int = 3              # ... at most this many past it
    annual_peak_extra: int = 1            # possible annual-peak days past the typical count
    weather_years: int = 6                # earlier summers known by weather only (0: off)
    anomaly_days: int = 30                # this summer vs earlier years over these days
    anomaly_shrink_days: float = 30.0     # ... trusted n/(n + this)
    shoulder_prior_fraction: float = 0.88  # of earlier years' median annual peak
    shoulder_margin: float = 0.05         # forecast may run this far under the year's max
    annual_peak_sigma: float = 1.0        # shoulder months: plus this many recent error spreads
    stopping: bool = False                # targeted option: optimal stopping (`_stopping_decision`)
    own: OwnForecastConfig = OwnForecastConfig()


@dataclass(frozen=True)
class SeasonState:
    year: int
    events: tuple[PlannedEvent, ...] = ()
    forecast_peaks: tuple[tuple[int, float], ...] = ()   # (day ordinal, forecast peak MW)

    def budget_used(self) -> int:
        return sum(1 for e in self.events if e.kind is EventKind.DISPATCH and e.active)

    def month_used(self, month: int) -> int:
        return sum(1 for e in self.events
                   if e.kind is EventKind.DISPATCH and e.active and e.day.month == month)

    def after(self, decision: DayDecision) -> "SeasonState":
        events = self.events + ((decision.event,) if decision.event else ())
        peaks = self.forecast_peaks
        if decision.forecast_peak_mw is not None:
            peaks = peaks + ((decision.day.toordinal(), decision.forecast_peak_mw),)
        return replace(self, events=events, forecast_peaks=peaks)


def _allowed_days(program: Program, year: int) -> tuple[date, ...]:
    return calendar.allowed_days(program, year)


def decision_moment(program: Program, day: date) -> datetime:
    """The notice deadline of the earliest possible event on `day` (UTC)."""
    return calendar.local_to_utc(program, day, program.window.start) - program.notice


def effective_max(program: Program) -> int:
    """Season cap: max events, and for a cycle-capped program one full-equivalent
    cycle per event at most (a conservative reading: an event may drain the battery)."""
    cap = program.budget.max_per_season
    if program.limits.cycles_per_year is not None and len(calendar.season_days(program, 2023)) >= 365:
        cap = min(cap, int(program.limits.cycles_per_year))
    return cap


def _place_window(program: Program, day: date, forecast: DayForecast | None,
                  exclusions: tuple[Exclusion, ...]) -> calendar.WindowUtc | None:
    """Start where the peak hour most likely falls, then where the forecast load
    over the event is highest; avoid exclusions."""
    duration = program.event_duration
    best, best_score = None, (-np.inf, -np.inf)
    for start in calendar.candidate_starts(program, duration):
        window = calendar.event_window_utc(program, day, start, duration)
        if any(e.overlaps(window.start_utc, window.end_utc) for e in exclusions):
            continue
        score = (0.0, 0.0)
        if forecast is not None:
            span = to_epoch_s(window.start_utc), to_epoch_s(window.end_utc)
            # the chance of holding the peak hour first, the load over the event next
            score = (forecast.peak_chance_between(*span) or 0.0, forecast.sum_between(*span))
        if score > best_score:
            best, best_score = window, score
    return best


def _event(program: Program, day: date, window: calendar.WindowUtc, kind: EventKind,
           decided: datetime, forecast: DayForecast | None, reason: str) -> PlannedEvent:
    return PlannedEvent(
        program_id=program.id, day=day, start_utc=window.start_utc, end_utc=window.end_utc,
        kind=kind, decided_utc=decided, notice_utc=window.start_utc - program.notice,
        followup_utc=(window.start_utc - program.followup) if program.followup else None,
        forecast_peak_mw=forecast.peak_mw if forecast else None, reason=reason)


def _daily_peaks(view: PlanInputs, first_ordinal: int) -> tuple[np.ndarray, np.ndarray]:
    """(ordinals, peak MW) of the complete local days known, from `first_ordinal` on."""
    recent = view.daily.since(first_ordinal)
    return recent.ordinal, recent.peak


def _forecast(program: Program, day: date, view: PlanInputs, cutoff: datetime,
              config: PlannerConfig) -> DayForecast | None:
    cutoff_s = to_epoch_s(cutoff)
    if config.forecast == "iso":
        if view.iso_forecast is None:
            return None
        return forecast_iso(view.iso_forecast, day, program.timezone, cutoff_s)
    return forecast_own(view.load, view.weather, day, program.timezone, cutoff_s, config.own,
                        daily=view.daily, temps=view.weather_forecast)


def _forecast_errors(view: PlanInputs, state: SeasonState, ordinals: np.ndarray,
                     peaks: np.ndarray, config: PlannerConfig) -> np.ndarray:
    """(actual - forecast) daily peaks over the recent days whose forecast is known:
    ISO's published ones, or the planner's own earlier forecasts this season."""
    if config.forecast == "iso" and view.iso_daily is not None and len(ordinals):
        rows = view.iso_daily.rows(ordinals)
        ok = rows >= 0
        return peaks[ok] - view.iso_daily.peak[rows[ok]]
    known = dict(state.forecast_peaks)
    return np.array([p - known[int(o)] for o, p in zip(ordinals, peaks) if int(o) in known])


def _bias_mw(errors: np.ndarray) -> float:
    """Mean recent error: puts the recent actual peaks on the forecast's scale
    (ISO-NE's forecast runs low on average)."""
    return float(np.mean(errors)) if len(errors) >= 5 else 0.0


def _spread_mw(errors: np.ndarray) -> float:
    """Recent forecast error spread; unknown (too few days) counts as large."""
    return float(np.std(errors)) if len(errors) >= 5 else float("inf")


def _season_threshold(program: Program, day: date, view: PlanInputs, chase_target: int,
                      config: PlannerConfig) -> float | None:
    """Estimate of the season's `chase_target`-th highest chase-month daily peak.

    Sample: this season's chase days already seen (actual peaks, weight 1) plus
    earlier years' peaks on the chase dates still to come (weight 1/years),
    scaled by this summer's anomaly against those years on the recent dates
    (shrunk towards 1 while few days have been seen)."""
    daily = _climate_days(program, day, view, config)
    in_chase = np.isin(daily.month, program.targeting.peak_months)
    prior = daily.year < day.year
    n_years = len(np.unique(daily.year[prior & in_chase]))
    if n_years == 0:
        return None
    seen = (daily.year == day.year) & in_chase
    future = prior & in_chase & (daily.month_day >= day.month * 100 + day.day)
    factor = _anomaly(daily, day, config)
    future_peaks = daily.peak[future]
    synthetic = _weather_climate(program, day, view, config) if config.weather_years else None
    if synthetic is not None and len(synthetic[0]):
        # earlier summers known only by their weather widen the sample
        future_peaks = np.concatenate([future_peaks, synthetic[0]])
        n_years += synthetic[1]
    values = np.concatenate([daily.peak[seen], future_peaks * factor])
    weights = np.concatenate([np.ones(int(seen.sum())),
                              np.full(len(future_peaks), 1.0 / n_years)])
    order = np.argsort(-values)
    cumulative = np.cumsum(weights[order])
    k = int(np.searchsorted(cumulative, chase_target))
    return float(values[order][min(k, len(order) - 1)])


def _anomaly(daily: DailyLoad, day: date, config: PlannerConfig) -> float:
    """This summer against earlier years: the last `anomaly_days` days' mean peak
    over the same dates' mean in earlier years, shrunk towards 1 while few
    days have been seen."""
    recent_md = [d.month * 100 + d.day for d in
                 (day - timedelta(days=k) for k in range(1, config.anomaly_days + 1))]
    recent = np.isin(daily.month_day, recent_md)
    recent_now = daily.peak[(daily.year == day.year) & recent]
    recent_then = daily.peak[(daily.year < day.year) & recent]
    if len(recent_now) < 5 or len(recent_then) < 5:
        return 1.0
    ratio = float(np.mean(recent_now) / np.mean(recent_then))
    weight = len(recent_now) / (len(recent_now) + config.anomaly_shrink_days)
    return 1.0 + (ratio - 1.0) * weight


def _days_to_beat(program: Program, day: date, view: PlanInputs, level_mw: float,
                  config: PlannerConfig) -> float | None:
    """How many days after `day` this season are expected to peak above
    `level_mw`: earlier years' peaks on the season dates still to come, scaled
    by this summer's anomaly, per year (None: no earlier season known)."""
    daily = _climate_days(program, day, view, config)
    prior = daily.year < day.year
    years = np.unique(daily.year[prior])
    if not len(years):
        return None
    future = prior & (daily.month_day > day.month * 100 + day.day) & np.array(
        [program.season.contains(date.fromordinal(int(o))) for o in daily.ordinal])
    beats = daily.peak[future] * _anomaly(daily, day, config) > level_mw
    return float(beats.sum()) / len(years)


def _stopping_decision(program: Program, day: date, view: PlanInputs, peak: float, bias: float,
                       used: int, config: PlannerConfig) -> tuple[bool, str]:
    """The targeted option as optimal stopping, aimed at the annual peak hour.

    With k events left, call a day that could set the year's high when the
    chance that no later day of the season beats it is at least 1 / (k + 1):
    later days above it arrive about as a Poisson count with the mean N that
    the climatology gives (`_days_to_beat`), so that chance is exp(-N). Many
    events left: a fair chance is enough; the last one waits for a near-sure day.
    And while no more later days are expected above the year's high so far than
    there are events left, every possible new high is called: events unused at
    the season's end are worth nothing."""
    left = effective_max(program) - used
    expected = peak + max(bias, 0.0)
    year_max = _year_max_so_far(program, day, view)
    if expected < (1 - config.shoulder_margin) * year_max:
        return False, (f"stopping: forecast {expected:.0f} MW below the year's high so far "
                       f"{year_max:.0f} MW")
    better = _days_to_beat(program, day, view, expected, config)
    if better is None:
        return True, "stopping: no earlier season known"
    chance = float(np.exp(-better))
    # events to spare: fewer later days than events are expected to set a new high
    candidates = _days_to_beat(program, day, view, year_max, config)
    why = (f"stopping: {better:.1f} later days expected above {expected:.0f} MW (chance none is "
           f"higher {chance:.2f}, needs 1/{left + 1}), {candidates:.1f} above the year's high "
           f"so far, {left} events left")
    return chance >= 1.0 / (left + 1) or candidates <= left, why


def _year_max_so_far(program: Program, day: date, view: PlanInputs) -> float:
    """The highest hourly load of the calendar year known at the decision."""
    daily = view.daily
    this_year = daily.peak[daily.year == day.year]
    today = view.load.between(day_bounds_s(day - timedelta(days=1), program.timezone)[0],
                              2**62).mw
    return float(max(this_year.max(initial=0.0), today.max(initial=0.0)))


def _climate_days(program: Program, day: date, view: PlanInputs,
                  config: PlannerConfig) -> DailyLoad:
    """The known days of the last `climate_years` years; across a gap in the load
    history (no chase month in those years), the last `climate_years` summers
    before the gap, with this year's days."""
    months = program.targeting.peak_months
    recent = view.daily.since(day.toordinal() - 366 * config.climate_years)
    if np.isin(recent.month, months)[recent.year < day.year].any():
        return recent
    earlier = np.unique(view.daily.year[np.isin(view.daily.month, months)
                                        & (view.daily.year < day.year)])
    if not len(earlier):
        return recent
    first = date(int(earlier[-min(config.climate_years, len(earlier))]), 1, 1)
    older = view.daily.since(first.toordinal())
    return older.select(np.flatnonzero((older.year <= earlier[-1]) | (older.year == day.year)))


def _weather_climate(program: Program, day: date, view: PlanInputs,
                     config: PlannerConfig) -> tuple[np.ndarray, int] | None:
    """Daily peaks for the chase dates still to come in earlier summers that have
    weather but no load history: peak ~ tmax, tmax^2, tavg, weekend, fitted on
    the chase days whose load is known (all before the decision)."""
    weather = view.weather
    if weather is None or not len(weather.day):
        return None
    daily = view.daily
    months = program.targeting.peak_months
    known = np.isin(daily.month, months)
    x_known = _weather_features(weather, daily.ordinal[known], daily.off[known])
    y_known = daily.peak[known]
    ok = np.isfinite(x_known).all(axis=1)
    if ok.sum() < 40:
        return None
    beta, *_ = np.linalg.lstsq(x_known[ok], y_known[ok], rcond=None)
    load_years = set(np.unique(daily.year[known]).tolist())
    out, years = [], 0
    for year in range(day.year - config.weather_years, day.year):
        if year in load_years:
            continue
        start = MonthDay(day.month, day.day).in_year(year)   # Feb 29 -> Feb 28
        ords = np.array([o for o in range(start.toordinal(), date(year, 12, 31).toordinal() + 1)
                         if date.fromordinal(o).month in months], dtype=np.int64)
        if not len(ords):
            continue
        x = _weather_features(weather, ords, off_day(ords))
        good = np.isfinite(x).all(axis=1)
        if good.sum() < 0.9 * len(ords):
            continue
        out.append(x[good] @ beta)
        years += 1
    return (np.concatenate(out) if out else np.empty(0)), years


def _weather_features(weather, ordinals: np.ndarray, off: np.ndarray) -> np.ndarray:
    tmax = weather.lookup(ordinals, "tmax")
    return np.column_stack([np.ones(len(ordinals)), tmax, tmax ** 2,
                            weather.lookup(ordinals, "tavg"), off])


def _annual_peak_possible(program: Program, day: date, view: PlanInputs, forecast_peak: float,
                          bias: float, spread: float, config: PlannerConfig) -> tuple[bool, str]:
    """Could `day` be the calendar year's peak? Compare the (bias-corrected) forecast
    with the year's highest load so far and with earlier years' annual peaks."""
    daily = view.daily
    # annual peak of each earlier year, from what is known
    priors = [float(daily.peak[daily.year == y].max()) for y in np.unique(daily.year)
              if y < day.year]
    year_max = _year_max_so_far(program, day, view)
    expected = forecast_peak + max(bias, 0.0)
    if config.annual_peak_sigma and np.isfinite(spread) \
            and day.month not in program.targeting.peak_months:
        # a shoulder month is called only for the annual peak: there, missing it
        # is the costly error, so the forecast gets its uncertainty's benefit
        expected += config.annual_peak_sigma * spread
    floor = config.shoulder_prior_fraction * float(np.median(priors)) if priors else 0.0
    ok = expected >= floor and expected >= (1 - config.shoulder_margin) * year_max
    return ok, (f"annual-peak check: forecast {expected:.0f} MW vs year max so far "
                f"{year_max:.0f}, prior-years floor {floor:.0f}")


def plan_day(program: Program, day: date, inputs: PlanInputs, state: SeasonState,
             clock: Clock, config: PlannerConfig = PlannerConfig()) -> DayDecision:
    """Decide `day` with what is known at `clock.now()` (see the module docstring)."""
    now = clock.now()
    deadline = decision_moment(program, day)

    seen: dict = {}      # the inputs each decision records, filled in as they are known

    def no(reason: str, **extra) -> DayDecision:
        return DayDecision(day, now, None, reason, **extra, **seen)

    if now > deadline:
        return no("past the notice deadline")
    exclusion = calendar.day_exclusion(program, day)
    if exclusion:
        return no(exclusion)
    view = inputs.as_of(now, program.timezone)
    whole = calendar.window_utc(program, day, program.window.start, program.window.end)
    seen["exclusions"] = tuple(dict.fromkeys(
        e.reason for e in view.exclusions if e.overlaps(whole.start_utc, whole.end_utc)))
    seen["budget_left"] = effective_max(program) - state.budget_used()

    if day == calendar.test_event_day(program, day.year):
        forecast = _forecast(program, day, view, now, config)
        window = _place_window(program, day, forecast, view.exclusions)
        if window is not None:
            event = _event(program, day, window, EventKind.TEST, now, forecast,
                           "program test day")
            if program.test_event.count_in_budget:
                event = replace(event, kind=EventKind.DISPATCH, reason="program test day (counted)")
            return DayDecision(day, now, event, "program test day", **seen)

    used = state.budget_used()
    if used >= effective_max(program):
        return no("season maximum reached")
    cap = program.budget.max_per_month
    if cap is not None and state.month_used(day.month) >= cap:
        return no("month cap reached")

    forecast = _forecast(program, day, view, now, config)
    if forecast is None:
        return no("no forecast")
    peak = forecast.peak_mw
    seen["rank"] = 1 + sum(1 for _, earlier in state.forecast_peaks if earlier > peak)
    seen["forecast_source"] = forecast.source
    window = _place_window(program, day, forecast, view.exclusions)
    if window is None:
        return no("storm exclusion", forecast_peak_mw=peak)

    recent_ordinals, recent = _daily_peaks(view, day.toordinal() - 1 - config.reference_days)
    errors = _forecast_errors(view, state, recent_ordinals, recent, config)
    bias = _bias_mw(errors)

    def call(reason: str, threshold: float | None = None) -> DayDecision:
        event = _event(program, day, window, EventKind.DISPATCH, now, forecast, reason)
        return DayDecision(day, now, event, reason, peak, threshold, **seen)

    if config.stopping:
        verdict, why = _stopping_decision(program, day, view, peak, bias, used, config)
        return call(why) if verdict else no(why, forecast_peak_mw=peak)

    # Season minimum: the allowed days left are just enough to reach it.
    allowed = _allowed_days(program, day.year)
    days_left = [d for d in allowed if d >= day]
    if program.budget.min_per_season - used >= len(days_left):
        return call("season minimum")

    # The annual peak hour comes first: in any month, and past the typical
    # count (never past the maximum, checked above).
    months = program.targeting.peak_months
    target = min(config.target_events or program.budget.typical_per_season, effective_max(program))
    if program.targeting.shoulder_needs_annual_peak:
        possible, why = _annual_peak_possible(program, day, view, peak, bias,
                                             _spread_mw(errors), config)
        if possible and used < target + config.annual_peak_extra:
            return call("possible annual peak; " + why)
        if day.month not in months:
            return no("shoulder month, not an annual-peak day; " + why, forecast_peak_mw=peak)
    if used >= target:
        # past the typical count only for a day among the season's very top ones
        if config.over_target_top > 0 and day.month in months \
                and used < target + config.over_target_max:
            top = _season_threshold(program, day, view, config.over_target_top, config)
            sure = config.over_target_sigma * _spread_mw(errors)
            if top is not None and peak >= top - bias + sure:
                return call(f"past the typical count: forecast {peak:.0f} MW >= "
                            f"top-{config.over_target_top} estimate {top - bias:.0f} MW",
                            top - bias)
        return no("season target reached", forecast_peak_mw=peak)

    threshold, why = _chase_threshold(program, day, view, state, config, used, target,
                                      allowed, recent, bias)
    if threshold is None or peak >= threshold:
        return call(f"forecast peak {peak:.0f} MW >= {why}" if threshold is not None else why,
                    threshold)
    return no(f"forecast peak {peak:.0f} MW < {why}", forecast_peak_mw=peak,
              threshold_mw=threshold)


def _chase_threshold(program: Program, day: date, view: PlanInputs, state: SeasonState,
                     config: PlannerConfig, used: int, target: int,
                     allowed: tuple[date, ...], recent: np.ndarray,
                     bias: float) -> tuple[float | None, str]:
    """The forecast peak (MW) a chase day needs, and how it was set; None = call
    without a threshold (budget to spare, or no history yet)."""
    months = program.targeting.peak_months
    remaining = target - used
    chase_left = sum(1 for d in allowed if d >= day and d.month in months)
    share = remaining / max(chase_left, 1)
    # "recent": the forecast in the top `share` of the recent weeks' peaks
    recent_threshold = None
    if share < 1 and len(recent) >= 5:
        recent_threshold = float(np.quantile(recent, 1 - share)) - bias
    pacing = f"budget pacing: {remaining} events for {chase_left} days"
    if config.reference == "recent":
        if recent_threshold is None:
            return None, pacing
        return recent_threshold, f"{recent_threshold:.0f} MW ({pacing})"

    # "season" / "hybrid": an estimate of the season's target-th highest chase day
    shoulder_used = sum(1 for e in state.events if e.kind is EventKind.DISPATCH
                        and e.active and e.day.month not in months)
    chase_target = target - shoulder_used
    estimate = _season_threshold(program, day, view, chase_target + config.target_slack, config)
    if estimate is None:
        # no earlier summer in the history: the recent weeks are all there is
        if recent_threshold is None:
            return None, "no history: " + pacing
        return recent_threshold, f"{recent_threshold:.0f} MW (no earlier summer; {pacing})"
    threshold = estimate - bias
    if config.reference == "hybrid" and recent_threshold is not None:
        # behind schedule: the more lenient of the season and the recent threshold
        chase_total = sum(1 for d in allowed if d.month in months)
        done = 1 - chase_left / max(chase_total, 1)
        if used - shoulder_used < chase_target * done:
            threshold = min(threshold, recent_threshold)
    return threshold, f"season threshold {threshold:.0f} MW"


@dataclass(frozen=True)
class SeasonPlan:
    program_id: str
    year: int
    decisions: tuple[DayDecision, ...]
    events: tuple[PlannedEvent, ...]      # including cancelled ones (see .cancelled)

    @property
    def active_events(self) -> list[PlannedEvent]:
        return [e for e in self.events if e.active]


def cancel_for_storms(event: PlannedEvent, exclusions: tuple[Exclusion, ...] | list[Exclusion],
                      ) -> PlannedEvent:
    """An exclusion known before the event starts cancels it; one that becomes
    known during the event ends it at that moment."""
    for period in exclusions:
        if not period.overlaps(event.start_utc, event.end_utc):
            continue
        if period.known_utc <= event.start_utc:
            return replace(event, cancelled=f"storm: {period.reason}")
        if period.known_utc < event.end_utc:
            event = replace(event, end_utc=max(period.known_utc, period.start_utc),
                            reason=event.reason + f"; cut short by storm: {period.reason}")
    return event


def plan_season(program: Program, year: int, inputs: PlanInputs,
                config: PlannerConfig = PlannerConfig(), leader: Program | None = None,
                progress: Callable[[date], None] | None = None) -> SeasonPlan:
    """Replay one season online (see the module docstring)."""
    if program.follows:
        if leader is None or leader.id != program.follows:
            raise ValueError(f"{program.id} follows {program.follows}: pass that program as leader")
        led = plan_season(leader, year, inputs, config, progress=progress)
        events = tuple(replace(e, program_id=program.id) for e in led.events)
        return SeasonPlan(program.id, year, led.decisions, events)

    state = SeasonState(year)
    clock = ManualClock(datetime(year, 1, 1, tzinfo=UTC))
    decisions = []
    for day in calendar.season_days(program, year):
        clock.set(decision_moment(program, day))
        # alerts known by now cancel planned events that have not started yet
        known = [e for e in inputs.exclusions if e.known_utc <= clock.now()]
        if known:
            state = replace(state, events=tuple(
                cancel_for_storms(e, known) if e.start_utc > clock.now() and e.active else e
                for e in state.events))
        decision = plan_day(program, day, inputs, state, clock, config)
        decisions.append(decision)
        state = state.after(decision)
        if progress:
            progress(day)
    # later alerts (known before or during an event) still cancel or cut it short
    events = tuple(cancel_for_storms(e, inputs.exclusions) if e.active else e
                   for e in state.events)
    return SeasonPlan(program.id, year, tuple(decisions), events)


def plan_next_day(programs: dict[str, Program], inputs: PlanInputs,
                  events_so_far: dict[str, list[PlannedEvent]], clock: Clock,
                  config: PlannerConfig = PlannerConfig(),
                  exclusions: Mapping[str, tuple[Exclusion, ...]] | None = None,
                  ) -> dict[str, DayDecision]:
    """What a VTN scheduler calls (e.g. hourly): for each program, decide the next
    local day whose notice deadline has not passed yet, from the events already
    planned this season. `exclusions`, when given, are each program's own storm
    and emergency periods (in place of `inputs.exclusions`). Programs that follow
    another copy its decision; their standing Clean Peak events come from
    `standing_events`."""
    out: dict[str, DayDecision] = {}
    now = clock.now()
    for pid, program in programs.items():
        if program.follows:
            continue
        day = calendar.local_date(program, now)
        while decision_moment(program, day) < now:
            day += timedelta(days=1)
        state = SeasonState(day.year, tuple(e for e in events_so_far.get(pid, ())
                                            if e.day.year == day.year))
        own = inputs if exclusions is None else replace(inputs, exclusions=exclusions.get(pid, ()))
        out[pid] = plan_day(program, day, own, state, clock, config)
    for pid, program in programs.items():
        leader = out.get(program.follows or "")
        if leader is not None:
            event = replace(leader.event, program_id=pid) if leader.event else None
            out[pid] = replace(leader, event=event)
    return out


def standing_events(program: Program, first_day: date, last_day: date) -> list[PlannedEvent]:
    """Clean Peak windows as one low-priority event per local day (known in advance:
    they are program rules, so their notice is the program's notice)."""
    out = []
    day = first_day
    while day <= last_day:
        window = calendar.clean_peak_window(program, day)
        if window is not None:
            span = calendar.window_utc(program, day, window.window.start, window.window.end)
            out.append(PlannedEvent(
                program_id=program.id, day=day, start_utc=span.start_utc, end_utc=span.end_utc,
                kind=EventKind.STANDING, decided_utc=span.start_utc - program.notice,
                notice_utc=span.start_utc - program.notice, priority=PRIORITY_STANDING,
                reason=f"Clean Peak window ({window.name})"))
        day += timedelta(days=1)
    return out
