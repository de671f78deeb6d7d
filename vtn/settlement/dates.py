"""Local-calendar helpers settlement needs: holidays, business days, and local
clock windows turned into UTC (the DST-sensitive step).

schedules/calendar.py will own the program calendars; this is the small,
self-contained subset settlement needs today (US federal holidays).
"""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """n-th (1-based) `weekday` (Mon=0) of the month; n=-1 for the last."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    nxt = date(year + (month == 12), month % 12 + 1, 1)
    last = nxt - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    """Federal rule: a Saturday holiday is observed Friday, a Sunday one Monday."""
    if day.weekday() == 5:
        return day - timedelta(days=1)
    if day.weekday() == 6:
        return day + timedelta(days=1)
    return day


@lru_cache(maxsize=64)
def us_holidays(year: int) -> frozenset[date]:
    """US federal holidays of `year`, both the calendar date and the observed weekday."""
    fixed = [date(year, 1, 1), date(year, 6, 19), date(year, 7, 4),
             date(year, 11, 11), date(year, 12, 25)]
    floating = [
        _nth_weekday(year, 1, 0, 3),    # Martin Luther King Jr. Day
        _nth_weekday(year, 2, 0, 3),    # Washington's Birthday
        _nth_weekday(year, 5, 0, -1),   # Memorial Day
        _nth_weekday(year, 9, 0, 1),    # Labor Day
        _nth_weekday(year, 10, 0, 2),   # Columbus Day
        _nth_weekday(year, 11, 3, 4),   # Thanksgiving
    ]
    days = set(fixed) | {_observed(d) for d in fixed} | set(floating)
    # New Year's Day on a Saturday is observed on Dec 31 of the year before.
    if date(year + 1, 1, 1).weekday() == 5:
        days.add(date(year, 12, 31))
    return frozenset(days)


def is_holiday(day: date) -> bool:
    return day in us_holidays(day.year)


def is_business_day(day: date) -> bool:
    return day.weekday() < 5 and not is_holiday(day)


def last_business_day(year: int, month: int) -> date:
    day = date(year + (month == 12), month % 12 + 1, 1) - timedelta(days=1)
    while not is_business_day(day):
        day -= timedelta(days=1)
    return day


def local_date(when_utc: datetime, tz: ZoneInfo) -> date:
    return when_utc.astimezone(tz).date()


def local_window_utc(day: date, start: time, end: time, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants of local clock times `start`-`end` on local `day`.

    Built from the local wall clock, so the same window is 4 h after UTC in
    summer and 5 h in winter, and a window on a DST day keeps its clock hours.
    """
    start_local = datetime.combine(day, start, tzinfo=tz)
    end_day = day if end > start else day + timedelta(days=1)
    end_local = datetime.combine(end_day, end, tzinfo=tz)
    return start_local.astimezone(timezone.utc), end_local.astimezone(timezone.utc)


def local_time_span(start_utc: datetime, end_utc: datetime, tz: ZoneInfo) -> tuple[time, time]:
    """Local wall-clock start and end of a UTC span (for 'the same hours' elsewhere)."""
    return start_utc.astimezone(tz).time(), end_utc.astimezone(tz).time()
