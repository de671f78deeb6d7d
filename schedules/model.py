"""Program rules loaded from `schedules/programs/*.toml`, validated.

Times and dates in program files are local to the program's time zone
(`timezone = "America/New_York"`); whatever the rest of the system stores is
UTC (see `schedules.calendar` for the local -> UTC conversions).

`load(name_or_path)` returns a frozen `Program`; a file with problems raises
`ProgramError(source, problems)` where `problems` lists EVERY problem found,
each as "field.path: what is wrong", so `vtn programs check FILE` can show
them all at once instead of one per run.
"""
from __future__ import annotations

import enum
import math
import re
import tomllib
from dataclasses import dataclass, field, replace
from datetime import date, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

PROGRAMS_DIR = Path(__file__).parent / "programs"


class Dispatch(enum.StrEnum):
    CHARGE_DELAY = "charge_delay"
    DISCHARGE = "discharge"


class StormAction(enum.StrEnum):
    NO_EVENT = "no_event"                            # drop/cancel events in the period
    NO_DISCHARGE_CHARGE_FULL = "no_discharge_charge_full"   # BYOD storm watch


class TestEventRule(enum.StrEnum):
    FIRST_NON_HOLIDAY_WEEKDAY = "first_non_holiday_weekday"


# OpenADR 2.0b signal names and the signal types each allows (oadr_20b.xsd).
SIGNAL_TYPES: dict[str, set[str]] = {
    "SIMPLE": {"level"},
    "LOAD_CONTROL": {"x-loadControlCapacity", "x-loadControlLevelOffset",
                     "x-loadControlPercentOffset", "x-loadControlSetpoint"},
    "LOAD_DISPATCH": {"setpoint", "delta", "level", "multiplier"},
    "ELECTRICITY_PRICE": {"price", "priceRelative", "priceMultiplier"},
}

SEVERITIES = ("Unknown", "Minor", "Moderate", "Severe", "Extreme")

# Payment keys must say their unit: season kW rate, flat dollars, energy rates.
PAYMENT_SUFFIXES = ("_usd_per_kw", "_usd_per_kwh", "_usd_per_mwh", "_usd", "_years")

_UGC = re.compile(r"^[A-Z]{2}[CZ]\d{3}$")
_FIPS6 = re.compile(r"^\d{6}$")
_MONTH_DAY = re.compile(r"^(\d{2})-(\d{2})$")
_PROGRAM_ID = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class SignalMapping:
    """How the program's events look on the wire (OpenADR 2.0b signal name/type)."""
    name: str
    type: str
    value: float | None = None   # fixed payload, e.g. 0.0 capacity for charge-delay
    unit: str | None = None      # 'kW' for LOAD_DISPATCH setpoints


@dataclass(frozen=True)
class DailyWindow:
    """Local wall-clock window an event must lie in."""
    start: time
    end: time

    @property
    def length(self) -> timedelta:
        return (timedelta(hours=self.end.hour, minutes=self.end.minute)
                - timedelta(hours=self.start.hour, minutes=self.start.minute))


@dataclass(frozen=True)
class MonthDay:
    """A date without a year ("06-19"); Feb 29 falls back to Feb 28 in common years."""
    month: int
    day: int

    def in_year(self, year: int) -> date:
        try:
            return date(year, self.month, self.day)
        except ValueError:          # 02-29 in a common year
            return date(year, self.month, self.day - 1)

    def __str__(self) -> str:
        return f"{self.month:02d}-{self.day:02d}"


@dataclass(frozen=True)
class Season:
    """Inclusive local date range, may wrap over New Year (Dec 1 - Feb 28/29)."""
    start: MonthDay
    end: MonthDay

    def contains(self, day: date) -> bool:
        md = (day.month, day.day)
        start, end = (self.start.month, self.start.day), (self.end.month, self.end.day)
        if start <= end:
            return start <= md <= end
        return md >= start or md <= end


@dataclass(frozen=True)
class DayRules:
    weekdays: bool = True
    weekends: bool = True
    holiday_country: str = "US"
    holiday_subdivision: str | None = None
    holidays: tuple[str, ...] = ()        # names from the `holidays` package, or "*" for all
    holidays_observed: bool = False       # also the "(observed)" weekday of a holiday
    extra_dates: tuple[MonthDay, ...] = ()  # program-specific dates, every year


@dataclass(frozen=True)
class EventBudget:
    min_per_season: int
    typical_per_season: int
    max_per_season: int
    max_per_month: int | None = None
    targeted_max_per_season: int | None = None   # commercial "targeted" option


@dataclass(frozen=True)
class Targeting:
    """What the planner chases inside the season."""
    peak_months: tuple[int, ...] = (7, 8)      # months whose daily peaks are targeted
    top_days: int = 40                          # the N highest daily peaks of those months
    # shoulder months (season minus peak_months) only for a forecast annual peak
    shoulder_needs_annual_peak: bool = True


@dataclass(frozen=True)
class TestEvent:
    rule: TestEventRule
    month: int
    count_in_budget: bool = False


@dataclass(frozen=True)
class StormRule:
    zones: tuple[str, ...]                 # UGC zone/county codes or FIPS6 codes
    event_types: tuple[str, ...]           # NWS event names, e.g. "Hurricane Warning"
    min_severity: str = "Severe"
    before: timedelta = timedelta(0)       # exclusion starts this long before onset
    after: timedelta = timedelta(0)        # ... and ends this long after the alert ends
    action: StormAction = StormAction.NO_EVENT


@dataclass(frozen=True)
class EmergencyRule:
    """Emergencies the utility or the ISO declares (not weather alerts): events of
    these types exclude events from `before` ahead of their start to `after` past
    their end."""
    types: tuple[str, ...]                 # e.g. "Type 1", "Type 2", "Severe Outage"
    before: timedelta = timedelta(0)
    after: timedelta = timedelta(0)
    action: StormAction = StormAction.NO_EVENT


@dataclass(frozen=True)
class CleanPeakWindow:
    name: str
    season: Season
    window: DailyWindow
    usd_per_mwh: float | None = None


@dataclass(frozen=True)
class DeviceLimits:
    cycles_per_year: float | None = None   # full-equivalent discharge cycles
    min_soc_pct: float | None = None
    inverter_max_kw: float | None = None   # eligible inverter capacity
    charger_min_kw: float | None = None    # eligible charger power range
    charger_max_kw: float | None = None
    devices_per_household: int | None = None
    islanding_owner_control: bool = False  # in a grid outage no utility command applies


class PerformanceMetric(enum.StrEnum):
    # average kW over the FULL event; partial discharge is averaged over the whole event
    MEAN_KW_FULL_EVENT = "mean_kw_full_event"


@dataclass(frozen=True)
class Performance:
    """How settlement measures an event and a season (read by the settlement code)."""
    event_metric: PerformanceMetric = PerformanceMetric.MEAN_KW_FULL_EVENT
    missing_as_zero: bool = True           # missing data, opt-out, offline, unplugged = 0 kW
    season_over_all_events: bool = True    # season = mean over ALL events called
    max_interval_min: int = 15             # interval data this fine or finer
    solar_curtailment_counts: bool = False


@dataclass(frozen=True)
class Connectivity:
    offline_events_before_notice: int      # notify once offline for more than this many events
    reconnect_days: int                    # unenrol if not back this many days after the notice


@dataclass(frozen=True)
class Program:
    id: str
    name: str
    market_context: str
    timezone: ZoneInfo
    dispatch: Dispatch
    signal: SignalMapping
    window: DailyWindow
    durations: tuple[timedelta, ...]
    notice: timedelta
    telemetry_interval: timedelta
    min_soc_pct: float = 20.0
    # Everything below has defaults so older callers building Program by hand keep working.
    season: Season = Season(MonthDay(1, 1), MonthDay(12, 31))
    days: DayRules = DayRules()
    budget: EventBudget = EventBudget(0, 0, 366)
    targeting: Targeting = Targeting()
    default_duration: timedelta | None = None    # preferred length; None = longest allowed
    followup: timedelta | None = None            # second notice this long before start
    fixed_window: bool = False                   # event always spans the whole window
    follows: str | None = None                   # program whose event times this one copies
    test_event: TestEvent | None = None
    storms: tuple[StormRule, ...] = ()
    emergencies: tuple[EmergencyRule, ...] = ()
    clean_peak: tuple[CleanPeakWindow, ...] = ()
    limits: DeviceLimits = DeviceLimits()
    payment: dict[str, float] = field(default_factory=dict)
    payment_schedule: dict[str, str] = field(default_factory=dict)   # when each payment is made
    opt_out_max_per_season: int | None = None
    conflicts_with: tuple[str, ...] = ()        # a device here may not also be in these
    connectivity: Connectivity | None = None
    performance: Performance = Performance()

    @property
    def event_duration(self) -> timedelta:
        return self.default_duration or max(self.durations)


def targeted(program: Program) -> Program:
    """The program under its commercial "targeted" option: at most
    `targeted_max_per_season` events (ConnectedSolutions: 8), no minimum."""
    cap = program.budget.targeted_max_per_season
    if cap is None:
        raise ValueError(f"{program.id} has no targeted option (events.targeted_max_per_season)")
    budget = EventBudget(0, cap, cap, program.budget.max_per_month, cap)
    return replace(program, budget=budget)


class ProgramError(ValueError):
    """A program file that cannot be loaded; `problems` lists 'field: problem' lines."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: " + "; ".join(problems))


@lru_cache(maxsize=16)
def holiday_names(country: str, subdivision: str | None) -> frozenset[str]:
    """Every holiday name the `holidays` package knows for this calendar."""
    import holidays as holidays_pkg
    cal = holidays_pkg.country_holidays(country, subdiv=subdivision, years=range(2010, 2041),
                                        observed=False)
    return frozenset(n for names in cal.values() for n in names.split("; "))


class _Reader:
    """Reads typed fields out of nested TOML tables, collecting every problem."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def problem(self, path: str, text: str) -> None:
        self.problems.append(f"{path}: {text}")

    def table(self, data: dict, key: str, path: str, required: bool = True) -> dict | None:
        value = data.get(key)
        if value is None:
            if required:
                self.problem(path, "missing")
            return None
        if not isinstance(value, dict):
            self.problem(path, "must be a table")
            return None
        return value

    def get(self, data: dict, key: str, path: str, kind: type | tuple, required: bool = True,
            default: Any = None) -> Any:
        if key not in data:
            if required:
                self.problem(path, "missing")
            return default
        value = data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        # bool is an int in Python; a number field given `true` is still wrong
        if isinstance(value, bool) and bool not in kinds:
            self.problem(path, f"must be {kinds[0].__name__}, got {value!r}")
            return default
        if not isinstance(value, kinds):
            self.problem(path, f"must be {kinds[0].__name__}, got {value!r}")
            return default
        if isinstance(value, float) and not math.isfinite(value):
            self.problem(path, f"must be a finite number, got {value!r}")
            return default
        return value

    def unknown(self, data: dict, allowed: set[str], path: str) -> None:
        for key in sorted(set(data) - allowed):
            self.problem(f"{path}{key}", "unknown field")

    def clock_time(self, data: dict, key: str, path: str) -> time | None:
        text = self.get(data, key, path, str)
        if text is None:
            return None
        if text == "24:00":      # end of day, as people write it
            return time(23, 59, 59, 999999)
        try:
            return time.fromisoformat(text)
        except ValueError:
            self.problem(path, f"not a local time HH:MM: {text!r}")
            return None

    def month_day(self, text: Any, path: str) -> MonthDay | None:
        match = _MONTH_DAY.match(text) if isinstance(text, str) else None
        if not match:
            self.problem(path, f"not a date MM-DD: {text!r}")
            return None
        month, day = int(match[1]), int(match[2])
        try:
            date(2000, month, day)          # leap year: 02-29 is allowed
        except ValueError:
            self.problem(path, f"no such date: {text!r}")
            return None
        return MonthDay(month, day)

    def hours(self, data: dict, key: str, path: str, required: bool = True,
              positive: bool = True) -> timedelta | None:
        value = self.get(data, key, path, (int, float), required)
        if value is None:
            return None
        if value < 0 or (positive and value == 0):
            self.problem(path, f"must be {'> 0' if positive else '>= 0'} hours, got {value}")
            return None
        if value > MAX_HOURS:
            self.problem(path, f"must be at most {MAX_HOURS} hours (a year), got {value}")
            return None
        return timedelta(hours=value)

    def count(self, data: dict, key: str, path: str, required: bool = True) -> int | None:
        value = self.get(data, key, path, int, required)
        if value is not None and value < 0:
            self.problem(path, f"must be >= 0, got {value}")
            return None
        return value

    def season(self, data: dict, path: str) -> Season | None:
        start = self.month_day(data.get("start"), f"{path}.start")
        end = self.month_day(data.get("end"), f"{path}.end")
        return Season(start, end) if start and end else None

    def window(self, data: dict, path: str) -> DailyWindow | None:
        start = self.clock_time(data, "start", f"{path}.start")
        end = self.clock_time(data, "end", f"{path}.end")
        if start is None or end is None:
            return None
        if end <= start:
            self.problem(f"{path}.end", f"window end {end:%H:%M} is not after start {start:%H:%M}")
            return None
        return DailyWindow(start, end)


_TOP_KEYS = {"id", "name", "market_context", "timezone", "dispatch", "notice_h", "followup_h",
             "telemetry_interval_min", "min_soc_pct", "follows", "opt_out_max_per_season",
             "signal", "window", "season", "days", "events", "targeting", "test_event",
             "storms", "emergencies", "clean_peak", "limits", "payment", "payment_schedule", "description",
             "conflicts_with", "connectivity", "performance"}


# Every duration in a program file (notice, follow-up, storm margins) is well under a year.
MAX_HOURS = 366 * 24


def from_mapping(data: dict, source: str = "<program>") -> Program:
    """Build a Program from parsed TOML; raise ProgramError listing every problem."""
    r = _Reader()
    r.unknown(data, _TOP_KEYS, "")
    ident = r.get(data, "id", "id", str)
    name = r.get(data, "name", "name", str)
    market_context = r.get(data, "market_context", "market_context", str)

    tz = None
    tz_name = r.get(data, "timezone", "timezone", str)
    if tz_name is not None:
        try:
            tz = ZoneInfo(tz_name)
        except (ZoneInfoNotFoundError, ValueError):
            r.problem("timezone", f"unknown time zone {tz_name!r}")

    dispatch = None
    dispatch_text = r.get(data, "dispatch", "dispatch", str)
    if dispatch_text is not None:
        try:
            dispatch = Dispatch(dispatch_text)
        except ValueError:
            r.problem("dispatch", f"must be one of {[d.value for d in Dispatch]}, got {dispatch_text!r}")

    signal = _signal(r, data)
    window, durations, default_duration, fixed = _window(r, data)
    notice = r.hours(data, "notice_h", "notice_h")
    followup = r.hours(data, "followup_h", "followup_h", required=False)
    if notice and followup and followup >= notice:
        r.problem("followup_h", f"follow-up ({followup}) must come after the first notice ({notice})")
    interval_min = r.get(data, "telemetry_interval_min", "telemetry_interval_min", (int, float),
                         required=False, default=15)
    if interval_min is not None and interval_min <= 0:
        r.problem("telemetry_interval_min", f"must be > 0, got {interval_min}")
        interval_min = 15
    min_soc = r.get(data, "min_soc_pct", "min_soc_pct", (int, float), required=False, default=20.0)
    if min_soc is not None and not 0 <= min_soc <= 100:
        r.problem("min_soc_pct", f"must be within 0-100, got {min_soc}")

    season = Season(MonthDay(1, 1), MonthDay(12, 31))
    season_table = r.table(data, "season", "season", required=False)
    if season_table is not None:
        r.unknown(season_table, {"start", "end"}, "season.")
        season = r.season(season_table, "season") or season

    days = _days(r, data)
    budget = _budget(r, data)
    targeting = _targeting(r, data)
    test_event = _test_event(r, data)
    storms = _storms(r, data)
    emergencies = _emergencies(r, data)
    clean_peak = _clean_peak(r, data)
    limits = _limits(r, data)
    payment = _payment(r, data)
    opt_out = r.count(data, "opt_out_max_per_season", "opt_out_max_per_season", required=False)
    follows = r.get(data, "follows", "follows", str, required=False)
    if follows is not None and not _PROGRAM_ID.match(follows):
        r.problem("follows", f"not a program id: {follows!r}")
    conflicts = r.get(data, "conflicts_with", "conflicts_with", list, required=False, default=[])
    for i, other in enumerate(conflicts):
        if not isinstance(other, str) or not _PROGRAM_ID.match(other):
            r.problem(f"conflicts_with[{i}]", f"not a program id: {other!r}")
    if ident and ident in conflicts:
        r.problem("conflicts_with", "a program cannot conflict with itself")
    if ident is not None and not _PROGRAM_ID.match(ident):
        r.problem("id", f"must be lower_snake_case: {ident!r}")
    connectivity = _connectivity(r, data)
    performance = _performance(r, data)
    schedule = r.get(data, "payment_schedule", "payment_schedule", dict, required=False,
                     default={})
    for key, value in schedule.items():
        if not isinstance(value, str):
            r.problem(f"payment_schedule.{key}", f"must be text, got {value!r}")
        elif key not in payment and not any(k.startswith(key) for k in payment):
            r.problem(f"payment_schedule.{key}", "no payment of that name in [payment]")

    if r.problems:
        raise ProgramError(source, r.problems)
    return Program(
        id=ident, name=name, market_context=market_context, timezone=tz, dispatch=dispatch,
        signal=signal, window=window, durations=durations, notice=notice,
        telemetry_interval=timedelta(minutes=interval_min), min_soc_pct=float(min_soc),
        season=season, days=days, budget=budget, targeting=targeting,
        default_duration=default_duration, followup=followup, fixed_window=fixed,
        follows=follows, test_event=test_event, storms=storms, emergencies=emergencies,
        clean_peak=clean_peak,
        limits=limits, payment=payment, opt_out_max_per_season=opt_out,
        payment_schedule={k: v for k, v in schedule.items() if isinstance(v, str)},
        conflicts_with=tuple(c for c in conflicts if isinstance(c, str)),
        connectivity=connectivity, performance=performance)


def _signal(r: _Reader, data: dict) -> SignalMapping | None:
    table = r.table(data, "signal", "signal")
    if table is None:
        return None
    r.unknown(table, {"name", "type", "value", "unit"}, "signal.")
    name = r.get(table, "name", "signal.name", str)
    kind = r.get(table, "type", "signal.type", str)
    value = r.get(table, "value", "signal.value", (int, float), required=False)
    unit = r.get(table, "unit", "signal.unit", str, required=False)
    if name is not None and name not in SIGNAL_TYPES:
        r.problem("signal.name", f"not an OpenADR 2.0b signal name: {name!r} "
                                 f"(one of {sorted(SIGNAL_TYPES)})")
    elif name is not None and kind is not None and kind not in SIGNAL_TYPES[name]:
        r.problem("signal.type", f"{kind!r} is not a type of {name} "
                                 f"(one of {sorted(SIGNAL_TYPES[name])})")
    if name is None or kind is None:
        return None
    return SignalMapping(name, kind, None if value is None else float(value), unit)


def _window(r: _Reader, data: dict):
    table = r.table(data, "window", "window")
    if table is None:
        return None, (), None, False
    r.unknown(table, {"start", "end", "durations_h", "default_duration_h", "fixed"}, "window.")
    window = r.window(table, "window")
    durations: list[timedelta] = []
    hours = r.get(table, "durations_h", "window.durations_h", list)
    for i, h in enumerate(hours or []):
        path = f"window.durations_h[{i}]"
        if (isinstance(h, bool) or not isinstance(h, (int, float)) or not math.isfinite(h)
                or h <= 0):
            r.problem(path, f"must be a positive number of hours, got {h!r}")
            continue
        length = timedelta(hours=h)
        if window is not None and length > window.length:
            r.problem(path, f"duration {h} h is longer than the window "
                            f"{window.start:%H:%M}-{window.end:%H:%M}")
        durations.append(length)
    if hours is not None and not hours:
        r.problem("window.durations_h", "must list at least one duration")
    default = r.hours(table, "default_duration_h", "window.default_duration_h", required=False)
    if default is not None and durations and default not in durations:
        r.problem("window.default_duration_h", "must be one of window.durations_h")
    fixed = r.get(table, "fixed", "window.fixed", bool, required=False, default=False)
    if fixed and window is not None and durations and max(durations) != window.length:
        r.problem("window.fixed", "a fixed window needs a duration equal to the window")
    return window, tuple(durations), default, bool(fixed)


def _days(r: _Reader, data: dict) -> DayRules:
    table = r.table(data, "days", "days", required=False)
    if table is None:
        return DayRules()
    r.unknown(table, {"weekdays", "weekends", "holiday_country", "holiday_subdivision",
                      "holidays", "holidays_observed", "extra_dates"}, "days.")
    weekdays = r.get(table, "weekdays", "days.weekdays", bool, required=False, default=True)
    weekends = r.get(table, "weekends", "days.weekends", bool, required=False, default=True)
    if weekdays is False and weekends is False:
        r.problem("days", "no day allowed: weekdays and weekends are both false")
    country = r.get(table, "holiday_country", "days.holiday_country", str, required=False,
                    default="US")
    subdivision = r.get(table, "holiday_subdivision", "days.holiday_subdivision", str,
                        required=False)
    known: frozenset[str] | None = None
    try:
        known = holiday_names(country, subdivision)
    except (NotImplementedError, KeyError, ValueError) as err:
        r.problem("days.holiday_country", f"unknown holiday calendar {country}/{subdivision}: {err}")
    names = r.get(table, "holidays", "days.holidays", list, required=False, default=[])
    for i, holiday in enumerate(names):
        if holiday == "*":
            continue
        if not isinstance(holiday, str):
            r.problem(f"days.holidays[{i}]", f"must be a holiday name, got {holiday!r}")
        elif known is not None and holiday not in known:
            r.problem(f"days.holidays[{i}]", f"unknown holiday name {holiday!r} for {country}")
    observed = r.get(table, "holidays_observed", "days.holidays_observed", bool, required=False,
                     default=False)
    extra = []
    for i, text in enumerate(r.get(table, "extra_dates", "days.extra_dates", list,
                                   required=False, default=[])):
        md = r.month_day(text, f"days.extra_dates[{i}]")
        if md:
            extra.append(md)
    return DayRules(bool(weekdays), bool(weekends), country, subdivision,
                    tuple(n for n in names if isinstance(n, str)), bool(observed), tuple(extra))


def _budget(r: _Reader, data: dict) -> EventBudget:
    table = r.table(data, "events", "events")
    if table is None:
        return EventBudget(0, 0, 0)
    r.unknown(table, {"min_per_season", "typical_per_season", "max_per_season", "max_per_month",
                      "targeted_max_per_season"}, "events.")
    lo = r.count(table, "min_per_season", "events.min_per_season")
    hi = r.count(table, "max_per_season", "events.max_per_season")
    typical = r.count(table, "typical_per_season", "events.typical_per_season", required=False)
    month = r.count(table, "max_per_month", "events.max_per_month", required=False)
    targeted = r.count(table, "targeted_max_per_season", "events.targeted_max_per_season",
                       required=False)
    if lo is not None and hi is not None and hi < lo:
        r.problem("events.max_per_season", f"max events {hi} is below min events {lo}")
    if typical is not None and lo is not None and hi is not None and not lo <= typical <= hi:
        r.problem("events.typical_per_season", f"typical {typical} is outside min-max {lo}-{hi}")
    if targeted is not None and hi is not None and targeted > hi:
        r.problem("events.targeted_max_per_season", f"{targeted} is above max events {hi}")
    if typical is None and lo is not None and hi is not None:
        typical = (lo + hi) // 2
    return EventBudget(lo or 0, typical or 0, hi or 0, month, targeted)


def _targeting(r: _Reader, data: dict) -> Targeting:
    table = r.table(data, "targeting", "targeting", required=False)
    if table is None:
        return Targeting()
    r.unknown(table, {"peak_months", "top_days", "shoulder_needs_annual_peak"}, "targeting.")
    months = r.get(table, "peak_months", "targeting.peak_months", list, required=False,
                   default=[7, 8])
    for i, m in enumerate(months):
        if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= 12:
            r.problem(f"targeting.peak_months[{i}]", f"not a month 1-12: {m!r}")
    top = r.count(table, "top_days", "targeting.top_days", required=False) or 40
    shoulder = r.get(table, "shoulder_needs_annual_peak", "targeting.shoulder_needs_annual_peak",
                     bool, required=False, default=True)
    return Targeting(tuple(m for m in months if isinstance(m, int)), top, bool(shoulder))


def _test_event(r: _Reader, data: dict) -> TestEvent | None:
    table = r.table(data, "test_event", "test_event", required=False)
    if table is None:
        return None
    r.unknown(table, {"rule", "month", "count_in_budget"}, "test_event.")
    rule_text = r.get(table, "rule", "test_event.rule", str)
    rule = None
    if rule_text is not None:
        try:
            rule = TestEventRule(rule_text)
        except ValueError:
            r.problem("test_event.rule", f"unknown rule {rule_text!r} "
                                         f"(one of {[t.value for t in TestEventRule]})")
    month = r.get(table, "month", "test_event.month", int)
    if month is not None and not 1 <= month <= 12:
        r.problem("test_event.month", f"not a month 1-12: {month}")
    counts = r.get(table, "count_in_budget", "test_event.count_in_budget", bool, required=False,
                   default=False)
    return TestEvent(rule, month, bool(counts)) if rule and month else None


def _array_of_tables(r: _Reader, data: dict, key: str,
                     fields: set[str]) -> list[tuple[int, str, dict]]:
    """(index, field path, table) of each `[[key]]` table, unknown fields reported."""
    out = []
    for i, table in enumerate(r.get(data, key, key, list, required=False, default=[])):
        path = f"{key}[{i}]"
        if not isinstance(table, dict):
            r.problem(path, "must be a table")
            continue
        r.unknown(table, fields, f"{path}.")
        out.append((i, path, table))
    return out


def _storms(r: _Reader, data: dict) -> tuple[StormRule, ...]:
    out = []
    for _, path, table in _array_of_tables(r, data, "storms", {
            "zones", "event_types", "min_severity", "before_h", "after_h", "action",
            "description"}):
        zones = r.get(table, "zones", f"{path}.zones", list) or []
        for j, zone in enumerate(zones):
            if not isinstance(zone, str) or not (_UGC.match(zone) or _FIPS6.match(zone)):
                r.problem(f"{path}.zones[{j}]", f"not a UGC code (MAZ020, MAC025) or FIPS6 "
                                               f"code (025025): {zone!r}")
        types = r.get(table, "event_types", f"{path}.event_types", list) or []
        if not types:
            r.problem(f"{path}.event_types", "must list at least one NWS event type")
        severity = r.get(table, "min_severity", f"{path}.min_severity", str, required=False,
                         default="Severe")
        if severity not in SEVERITIES:
            r.problem(f"{path}.min_severity", f"must be one of {list(SEVERITIES)}, got {severity!r}")
        before = r.hours(table, "before_h", f"{path}.before_h", required=False, positive=False)
        after = r.hours(table, "after_h", f"{path}.after_h", required=False, positive=False)
        out.append(StormRule(tuple(z for z in zones if isinstance(z, str)),
                             tuple(str(t) for t in types), severity or "Severe",
                             before or timedelta(0), after or timedelta(0),
                             _action(r, table, path)))
    return tuple(out)


def _action(r: _Reader, table: dict, path: str) -> StormAction:
    text = r.get(table, "action", f"{path}.action", str, required=False, default="no_event")
    try:
        return StormAction(text)
    except ValueError:
        r.problem(f"{path}.action", f"must be one of {[a.value for a in StormAction]}, "
                                    f"got {text!r}")
        return StormAction.NO_EVENT


def _emergencies(r: _Reader, data: dict) -> tuple[EmergencyRule, ...]:
    out = []
    for _, path, table in _array_of_tables(r, data, "emergencies", {
            "types", "before_h", "after_h", "action", "description"}):
        types = r.get(table, "types", f"{path}.types", list) or []
        if not types:
            r.problem(f"{path}.types", "must list at least one declared emergency type")
        for j, name in enumerate(types):
            if not isinstance(name, str) or not name.strip():
                r.problem(f"{path}.types[{j}]", f"must be a non-empty name, got {name!r}")
        before = r.hours(table, "before_h", f"{path}.before_h", required=False, positive=False)
        after = r.hours(table, "after_h", f"{path}.after_h", required=False, positive=False)
        out.append(EmergencyRule(tuple(t.strip() for t in types if isinstance(t, str)),
                                 before or timedelta(0), after or timedelta(0),
                                 _action(r, table, path)))
    return tuple(out)


def _clean_peak(r: _Reader, data: dict) -> tuple[CleanPeakWindow, ...]:
    out: list[CleanPeakWindow] = []
    for i, path, table in _array_of_tables(r, data, "clean_peak", {
            "name", "start", "end", "window_start", "window_end", "usd_per_mwh"}):
        name = r.get(table, "name", f"{path}.name", str, default=f"clean_peak_{i}")
        season = r.season(table, path)
        window = r.window({"start": table.get("window_start"), "end": table.get("window_end")},
                          f"{path}.window")
        rate = r.get(table, "usd_per_mwh", f"{path}.usd_per_mwh", (int, float), required=False)
        if rate is not None and rate < 0:
            r.problem(f"{path}.usd_per_mwh", f"must be >= 0, got {rate}")
        if season and window:
            out.append(CleanPeakWindow(name, season, window, rate))
    # Each day of the year belongs to at most one Clean Peak season (leap year checked).
    for day in (date(2024, 1, 1) + timedelta(days=n) for n in range(366)):
        owners = [w.name for w in out if w.season.contains(day)]
        if len(owners) > 1:
            r.problem("clean_peak", f"seasons {owners} overlap on {day:%m-%d}")
            break
    return tuple(out)


def _limits(r: _Reader, data: dict) -> DeviceLimits:
    table = r.table(data, "limits", "limits", required=False)
    if table is None:
        return DeviceLimits()
    r.unknown(table, {"cycles_per_year", "min_soc_pct", "inverter_max_kw", "charger_min_kw",
                      "charger_max_kw", "devices_per_household", "islanding_owner_control"},
              "limits.")
    cycles = r.get(table, "cycles_per_year", "limits.cycles_per_year", (int, float),
                   required=False)
    if cycles is not None and cycles <= 0:
        r.problem("limits.cycles_per_year", f"must be > 0, got {cycles}")
    floor = r.get(table, "min_soc_pct", "limits.min_soc_pct", (int, float), required=False)
    if floor is not None and not 0 <= floor <= 100:
        r.problem("limits.min_soc_pct", f"must be within 0-100, got {floor}")
    kw = {}
    for key in ("inverter_max_kw", "charger_min_kw", "charger_max_kw"):
        value = r.get(table, key, f"limits.{key}", (int, float), required=False)
        if value is not None and value <= 0:
            r.problem(f"limits.{key}", f"must be > 0 kW, got {value}")
            value = None
        kw[key] = None if value is None else float(value)
    if kw["charger_min_kw"] and kw["charger_max_kw"] and kw["charger_max_kw"] < kw["charger_min_kw"]:
        r.problem("limits.charger_max_kw", "below limits.charger_min_kw")
    devices = r.count(table, "devices_per_household", "limits.devices_per_household",
                      required=False)
    islanding = r.get(table, "islanding_owner_control", "limits.islanding_owner_control", bool,
                      required=False, default=False)
    return DeviceLimits(cycles, floor, kw["inverter_max_kw"], kw["charger_min_kw"],
                        kw["charger_max_kw"], devices, bool(islanding))


def _connectivity(r: _Reader, data: dict) -> Connectivity | None:
    table = r.table(data, "connectivity", "connectivity", required=False)
    if table is None:
        return None
    r.unknown(table, {"offline_events_before_notice", "reconnect_days"}, "connectivity.")
    events = r.count(table, "offline_events_before_notice",
                     "connectivity.offline_events_before_notice")
    days = r.count(table, "reconnect_days", "connectivity.reconnect_days")
    return Connectivity(events, days) if events is not None and days is not None else None


def _performance(r: _Reader, data: dict) -> Performance:
    table = r.table(data, "performance", "performance", required=False)
    if table is None:
        return Performance()
    r.unknown(table, {"event_metric", "missing_as_zero", "season_over_all_events",
                      "max_interval_min", "solar_curtailment_counts"}, "performance.")
    metric_text = r.get(table, "event_metric", "performance.event_metric", str, required=False,
                        default=PerformanceMetric.MEAN_KW_FULL_EVENT.value)
    try:
        metric = PerformanceMetric(metric_text)
    except ValueError:
        r.problem("performance.event_metric",
                  f"must be one of {[m.value for m in PerformanceMetric]}, got {metric_text!r}")
        metric = PerformanceMetric.MEAN_KW_FULL_EVENT
    flags = {key: bool(r.get(table, key, f"performance.{key}", bool, required=False,
                             default=getattr(Performance(), key)))
             for key in ("missing_as_zero", "season_over_all_events", "solar_curtailment_counts")}
    interval = r.get(table, "max_interval_min", "performance.max_interval_min", int,
                     required=False, default=15)
    if interval is not None and interval <= 0:
        r.problem("performance.max_interval_min", f"must be > 0, got {interval}")
        interval = 15
    return Performance(metric, flags["missing_as_zero"], flags["season_over_all_events"],
                       interval or 15, flags["solar_curtailment_counts"])


def _payment(r: _Reader, data: dict) -> dict[str, float]:
    table = r.table(data, "payment", "payment", required=False)
    if table is None:
        return {}
    out = {}
    for key, value in table.items():
        path = f"payment.{key}"
        if not key.endswith(PAYMENT_SUFFIXES):
            r.problem(path, f"name must end with a unit, one of {list(PAYMENT_SUFFIXES)}")
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            r.problem(path, f"must be a number, got {value!r}")
        elif not math.isfinite(value):
            r.problem(path, f"must be a finite number, got {value!r}")
        elif value < 0:
            r.problem(path, f"must be >= 0, got {value}")
        else:
            out[key] = float(value)
    return out


def parse(text: str, source: str = "<program>") -> Program:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ProgramError(source, [f"toml: not valid TOML: {err}"]) from err
    return from_mapping(data, source)


def load(path: str | Path) -> Program:
    """Load a program by name (`connected_solutions`) or by path to a .toml file."""
    path = Path(path)
    if not path.suffix:
        path = PROGRAMS_DIR / f"{path}.toml"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ProgramError(str(path), [f"file: cannot read: {err.strerror}"]) from err
    except UnicodeDecodeError as err:
        raise ProgramError(str(path), [f"file: not UTF-8 text (byte {err.start})"]) from err
    return parse(text, str(path))


def load_all() -> dict[str, Program]:
    return {p.stem: load(p) for p in sorted(PROGRAMS_DIR.glob("*.toml"))}
