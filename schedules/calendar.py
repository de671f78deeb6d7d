"""Seasons, allowed days, holidays and daily windows of a program, local -> UTC.

Pure: takes a Program and dates, returns dates and UTC datetimes. Program files
speak local wall-clock time; every datetime returned here is timezone-aware UTC.
On DST days a window keeps its wall-clock ends, so a window over 02:00 on the
spring-forward night is an hour shorter in real time (and an hour longer in
the fall): that is what a participant reading the notice expects.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache

from schedules.model import (CleanPeakWindow, DailyWindow, DayRules, Program, Season,
                             TestEventRule)

UTC = timezone.utc


@dataclass(frozen=True)
class WindowUtc:
    start_utc: datetime
    end_utc: datetime

    @property
    def duration_s(self) -> float:
        return (self.end_utc - self.start_utc).total_seconds()

    def contains(self, when_utc: datetime) -> bool:
        return self.start_utc <= when_utc < self.end_utc

    def overlaps(self, start_utc: datetime, end_utc: datetime) -> bool:
        return self.start_utc < end_utc and start_utc < self.end_utc


def local_to_utc(program: Program, day: date, at: time) -> datetime:
    """Local wall-clock `at` on `day` -> UTC. A time in the spring-forward gap is
    read with the pre-transition offset (fold=0), i.e. it lands an hour later."""
    return datetime.combine(day, at, tzinfo=program.timezone).astimezone(UTC)


def local_date(program: Program, when_utc: datetime) -> date:
    return when_utc.astimezone(program.timezone).date()


def window_utc(program: Program, day: date, start: time, end: time) -> WindowUtc:
    """The local window [start, end) on `day` in UTC; end 23:59:59.999999 means midnight."""
    start_utc = local_to_utc(program, day, start)
    if end == time.max:
        end_utc = local_to_utc(program, day + timedelta(days=1), time(0))
    else:
        end_utc = local_to_utc(program, day, end)
    return WindowUtc(start_utc, end_utc)


def event_window_utc(program: Program, day: date, start: time,
                     duration: timedelta) -> WindowUtc:
    """An event starting at local `start` lasting `duration` of wall-clock time."""
    end_local = datetime.combine(day, start) + duration
    start_utc = local_to_utc(program, day, start)
    end_utc = local_to_utc(program, end_local.date(), end_local.time())
    return WindowUtc(start_utc, end_utc)


def program_window_utc(program: Program, day: date) -> WindowUtc:
    return window_utc(program, day, program.window.start, program.window.end)


def season_days(program: Program, year: int) -> list[date]:
    """Every local date of `year` in the program's season (a wrapping season is
    cut at the calendar year: its Jan-Feb part and its December part)."""
    return list(_season_days(program.season, year))


@lru_cache(maxsize=256)
def _season_days(season: Season, year: int) -> tuple[date, ...]:
    day, out = date(year, 1, 1), []
    while day.year == year:
        if season.contains(day):
            out.append(day)
        day += timedelta(days=1)
    return tuple(out)


@lru_cache(maxsize=256)
def _package_holidays(country: str, subdivision: str | None, year: int,
                      observed: bool) -> dict[date, str]:
    import holidays as holidays_pkg
    cal = holidays_pkg.country_holidays(country, subdiv=subdivision, years=year,
                                        observed=observed)
    return dict(cal.items())


def holidays_in_year(program: Program, year: int) -> dict[date, str]:
    """The program's no-event dates of `year`: named package holidays (their
    observed weekday too when the program says so) plus program-specific dates."""
    return dict(_holidays_in_year(program.days, year))


@lru_cache(maxsize=256)
def _holidays_in_year(rules: DayRules, year: int) -> tuple[tuple[date, str], ...]:
    out: dict[date, str] = {}
    if rules.holidays:
        every = "*" in rules.holidays
        wanted = set(rules.holidays)
        cal = _package_holidays(rules.holiday_country, rules.holiday_subdivision, year,
                                rules.holidays_observed)
        for day, names in cal.items():
            for name in names.split("; "):
                base = name.replace(" (observed)", "")
                if every or base in wanted:
                    out[day] = name
    for md in rules.extra_dates:
        out.setdefault(md.in_year(year), f"program date {md}")
    return tuple(sorted(out.items()))


def day_exclusion(program: Program, day: date) -> str | None:
    """Why `day` cannot carry an event by the calendar rules, or None if it can."""
    broken = day_rule_broken(program, day)
    return None if broken is None else broken[1]


def day_rule_broken(program: Program, day: date) -> tuple[str, str] | None:
    """The calendar rule `day` breaks, as (rule: season | days | holidays, why), or None."""
    return _day_exclusion(program.season, program.days, day)


def _day_exclusion(season: Season, rules: DayRules, day: date) -> tuple[str, str] | None:
    if not season.contains(day):
        return "season", "out of season"
    weekend = day.weekday() >= 5
    if weekend and not rules.weekends:
        return "days", "weekend"
    if not weekend and not rules.weekdays:
        return "days", "weekday"
    holiday = _holiday_lookup(rules, day.year).get(day)
    if holiday:
        return "holidays", f"holiday: {holiday}"
    return None


def allowed_days(program: Program, year: int) -> tuple[date, ...]:
    """The season's days of `year` that pass the calendar rules, in order."""
    return _allowed_days(program.season, program.days, year)


@lru_cache(maxsize=256)
def _allowed_days(season: Season, rules: DayRules, year: int) -> tuple[date, ...]:
    return tuple(d for d in _season_days(season, year) if _day_exclusion(season, rules, d) is None)


@lru_cache(maxsize=256)
def _holiday_lookup(rules: DayRules, year: int) -> dict[date, str]:
    return dict(_holidays_in_year(rules, year))


def is_allowed_day(program: Program, day: date) -> bool:
    return day_exclusion(program, day) is None


def test_event_day(program: Program, year: int) -> date | None:
    """The program's test day in `year` (e.g. first non-holiday weekday of June)."""
    rule = program.test_event
    if rule is None:
        return None
    if rule.rule is TestEventRule.FIRST_NON_HOLIDAY_WEEKDAY:
        day = date(year, rule.month, 1)
        holidays = holidays_in_year(program, year)
        while day.month == rule.month:
            if day.weekday() < 5 and day not in holidays:
                return day
            day += timedelta(days=1)
    return None


def clean_peak_window(program: Program, day: date) -> CleanPeakWindow | None:
    for window in program.clean_peak:
        if window.season.contains(day):
            return window
    return None


def candidate_starts(program: Program, duration: timedelta) -> list[time]:
    """Local start times, on the hour, that keep an event of `duration` in the window."""
    window: DailyWindow = program.window
    if program.fixed_window:
        return [window.start]
    out = []
    start = datetime.combine(date(2000, 1, 1), window.start)
    end = datetime.combine(date(2000, 1, 1), window.end)
    while start + duration <= end:
        out.append(start.time())
        start += timedelta(hours=1)
    return out
