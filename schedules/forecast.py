"""Hourly load series, ISO's day-ahead forecast, and the planner's own forecaster.

Pure: numpy arrays in, numpy arrays out; no files. Times are epoch seconds
(int64) of the hour START in UTC; `*_s` names say so.

Honesty is structural: every series has an `as_of(cutoff_s)` view holding only
what was known at `cutoff_s` (load hours that had ENDED, ISO forecasts that
had been ISSUED, weather days that had ENDED, issued weather forecasts by
their issue time), and `forecast_own` re-applies the cut itself, so a decision
can never see the decision day or later (except forecasts issued before it).

The own forecaster (`forecast_own`) predicts day D's hourly load from
- load history up to the decision moment (the day before D, mid-afternoon),
- daily temperature (tmax/tavg) of days that ended before the decision day,
- the calendar (weekend / holiday),
as: daily peak by weighted least squares on analogous past days (same time of
year in earlier years, plus the recent weeks), times an hourly shape averaged
over the nearest analog days. It also says how likely each hour is to be the
day's peak hour (`peak_hour_chance`: the peak hours of same-season days with a
similar peak), which is what event windows are placed by. numpy only.

Given issued hourly temperature forecasts of several cities (`ForecastTemps`,
e.g. GFS day-ahead runs), the daily peak comes instead from a regression on
them (`_peak_from_temps`: cooling degrees per city, heat build-up, night low,
calendar, recent load level), refitted at each decision on the days before it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

UTC = timezone.utc
HOUR_S = 3600
DAY_S = 86400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# ISO-NE publishes its day-ahead load forecast the morning before the operating
# day; we take 10:00 local the day before as the moment it is known.
ISO_ISSUE_LOCAL = time(10, 0)


def to_epoch_s(when: datetime) -> int:
    return int((when - _EPOCH).total_seconds())


def from_epoch_s(seconds: int | float) -> datetime:
    return _EPOCH + timedelta(seconds=int(seconds))


@dataclass(frozen=True)
class HourlySeries:
    """Hourly MW values; t = epoch seconds of each hour's start (UTC), increasing."""
    t: np.ndarray
    mw: np.ndarray

    def as_of(self, cutoff_s: int) -> "HourlySeries":
        """Only the hours that had ended by `cutoff_s`."""
        n = int(np.searchsorted(self.t, cutoff_s - HOUR_S, side="right"))
        return HourlySeries(self.t[:n], self.mw[:n])

    def between(self, start_s: int, end_s: int) -> "HourlySeries":
        lo = int(np.searchsorted(self.t, start_s, side="left"))
        hi = int(np.searchsorted(self.t, end_s, side="left"))
        return HourlySeries(self.t[lo:hi], self.mw[lo:hi])


@dataclass(frozen=True)
class ForecastSeries:
    """A published forecast: value per target hour, and when it was issued."""
    t: np.ndarray
    mw: np.ndarray
    issued_s: np.ndarray

    def as_of(self, cutoff_s: int) -> "ForecastSeries":
        """Rows issued by `cutoff_s` (issue times rise with the target hour)."""
        n = int(np.searchsorted(self.issued_s, cutoff_s, side="right"))
        return ForecastSeries(self.t[:n], self.mw[:n], self.issued_s[:n])

    def between(self, start_s: int, end_s: int) -> HourlySeries:
        lo = int(np.searchsorted(self.t, start_s, side="left"))
        hi = int(np.searchsorted(self.t, end_s, side="left"))
        return HourlySeries(self.t[lo:hi], self.mw[lo:hi])


@dataclass(frozen=True)
class DailyWeather:
    """Daily weather at one station; `day` = local date ordinals (date.toordinal())."""
    day: np.ndarray
    tmax: np.ndarray
    tmin: np.ndarray
    tavg: np.ndarray

    def before(self, day_ordinal: int) -> "DailyWeather":
        """Only days strictly before `day_ordinal` (whole days that had ended)."""
        n = int(np.searchsorted(self.day, day_ordinal, side="left"))
        return DailyWeather(self.day[:n], self.tmax[:n], self.tmin[:n], self.tavg[:n])

    def lookup(self, ordinals: np.ndarray, column: str) -> np.ndarray:
        values = getattr(self, column)
        idx = np.searchsorted(self.day, ordinals)
        idx = np.clip(idx, 0, max(len(self.day) - 1, 0))
        if len(self.day) == 0:
            return np.full(len(ordinals), np.nan)
        found = self.day[idx] == ordinals
        return np.where(found, values[idx], np.nan)


# The issued weather forecast file holds, for each valid hour, the value from
# the model run about 24 h before it (Open-Meteo "previous runs", day 1): that
# is its issue time. A decision at 15:00 the day before sees the event day's
# hours up to the one starting 15:00, not its evening.
WEATHER_FORECAST_LEAD_S = 24 * HOUR_S


@dataclass(frozen=True)
class ForecastRows:
    """Issued hourly temperatures as rows, before they become a ForecastTemps table:
    the form in which a file and a live feed are put together (`+`; a later row
    for the same city and hour replaces an earlier one)."""
    city: tuple[str, ...]        # per row
    t: np.ndarray                # valid hour start, epoch s
    temp: np.ndarray             # deg C
    issued: np.ndarray           # epoch s

    def __add__(self, other: "ForecastRows") -> "ForecastRows":
        return ForecastRows(self.city + other.city, np.concatenate([self.t, other.t]),
                            np.concatenate([self.temp, other.temp]),
                            np.concatenate([self.issued, other.issued]))

    def table(self, tz: ZoneInfo) -> "ForecastTemps":
        cities = tuple(dict.fromkeys(self.city))
        index = {name: i for i, name in enumerate(cities)}
        city = np.fromiter((index[c] for c in self.city), dtype=np.int64, count=len(self.city))
        # The last row of each city and hour wins, with its own issue time.
        key = city * (1 << 40) + self.t
        _, last_reversed = np.unique(key[::-1], return_index=True)
        keep = np.sort(len(key) - 1 - last_reversed)
        return ForecastTemps.build(cities, city[keep], self.t[keep], self.temp[keep],
                                   self.issued[keep], tz)


@dataclass(frozen=True)
class ForecastTemps:
    """Issued hourly temperature forecasts (deg C) of several cities, by local day.

    `temp[i, c, h]`: city `c`, local hour `h` of day `ordinal[i]` (NaN: none);
    `issued[i, h]`: when that hour's values were issued (epoch s). `as_of`
    blanks every value issued after the cut-off."""
    cities: tuple[str, ...]
    ordinal: np.ndarray          # local date ordinals of the days with a value, increasing
    temp: np.ndarray             # (days, cities, 24)
    issued: np.ndarray           # (days, 24) epoch s; a huge value where no row

    @classmethod
    def build(cls, cities: tuple[str, ...], city: np.ndarray, t: np.ndarray, temp: np.ndarray,
              issued_s: np.ndarray, tz: ZoneInfo) -> "ForecastTemps":
        """From rows: city index, valid hour start (epoch s), value, issue time."""
        days, hours = local_day_hour(t, tz)
        ordinal, row = np.unique(days, return_inverse=True)
        table = np.full((len(ordinal), len(cities), 24), np.nan)
        table[row, city, hours] = temp
        when = np.full((len(ordinal), 24), np.iinfo(np.int64).min, dtype=np.int64)
        # an hour is known once every city's value for it is
        np.maximum.at(when, (row, hours), issued_s)
        when[np.isnan(table).all(axis=1)] = np.iinfo(np.int64).max
        return cls(cities, ordinal.astype(np.int64), table, when)

    def as_of(self, cutoff_s: int) -> "ForecastTemps":
        """Days with a value issued by `cutoff_s`, later values blanked."""
        some = np.flatnonzero((self.issued <= cutoff_s).any(axis=1))
        n = int(some[-1]) + 1 if len(some) else 0
        temp, issued = self.temp[:n], self.issued[:n]
        late = issued > cutoff_s
        if late.any():
            temp = temp.copy()
            temp[np.broadcast_to(late[:, None, :], temp.shape)] = np.nan
        return replace(self, ordinal=self.ordinal[:n], temp=temp, issued=issued)

    def rows(self, ordinals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row of each ordinal in the table, and whether the table has that day."""
        idx = np.clip(np.searchsorted(self.ordinal, ordinals), 0, max(len(self.ordinal) - 1, 0))
        found = (self.ordinal[idx] == ordinals) if len(self.ordinal) else \
            np.zeros(len(ordinals), dtype=bool)
        return idx, found

    def hours_known(self, ordinal: int) -> np.ndarray:
        """(24,) bool: the local hours of day `ordinal` with a value for every city."""
        (i,), (found,) = self.rows(np.array([ordinal]))
        if not found:
            return np.zeros(24, dtype=bool)
        return ~np.isnan(self.temp[i]).any(axis=0)

    def day_high(self, ordinals: np.ndarray, hours: slice = slice(0, 24),
                 low: bool = False) -> np.ndarray:
        """(days, cities): each day's highest (`low`: lowest) forecast temperature
        in `hours`; NaN where a city has no value there or the day is not in the table."""
        out = np.full((len(ordinals), len(self.cities)), np.nan)
        idx, ok = self.rows(ordinals)
        if ok.any():
            part = self.temp[idx[ok], :, hours]
            sign = -1.0 if low else 1.0
            filled = np.where(np.isnan(part), -np.inf, sign * part)
            out[ok] = np.where(np.isnan(part).all(axis=2), np.nan, sign * filled.max(axis=2))
        return out


@dataclass(frozen=True)
class DayForecast:
    """Forecast hourly load for one local day."""
    day: date
    t: np.ndarray         # hour starts (epoch s, UTC) of the local day
    mw: np.ndarray
    source: str           # "iso", "own", "own+issued" (from issued weather forecasts)
    # chance that each hour is the day's peak hour, when the forecaster knows it
    peak_hour_chance: np.ndarray | None = None

    @property
    def peak_mw(self) -> float:
        return float(np.nanmax(self.mw))

    def peak_chance_between(self, start_s: int, end_s: int) -> float | None:
        if self.peak_hour_chance is None:
            return None
        keep = (self.t >= start_s) & (self.t < end_s)
        return float(np.sum(self.peak_hour_chance[keep]))

    def sum_between(self, start_s: int, end_s: int) -> float:
        keep = (self.t >= start_s) & (self.t < end_s)
        return float(np.nansum(self.mw[keep]))


def day_bounds_s(day: date, tz: ZoneInfo) -> tuple[int, int]:
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    return to_epoch_s(start.astimezone(UTC)), to_epoch_s(end.astimezone(UTC))


def iso_issue_times(t: np.ndarray, tz: ZoneInfo) -> np.ndarray:
    """Issue moment of each target hour's day-ahead forecast: 10:00 local the day before."""
    days, _ = local_day_hour(t, tz)
    issue_of_day: dict[int, int] = {}
    for ordinal in np.unique(days):
        day = date.fromordinal(int(ordinal)) - timedelta(days=1)
        issue_of_day[int(ordinal)] = to_epoch_s(
            datetime.combine(day, ISO_ISSUE_LOCAL, tzinfo=tz).astimezone(UTC))
    return np.fromiter((issue_of_day[int(d)] for d in days), dtype=np.int64, count=len(days))


@lru_cache(maxsize=64)
def _year_offsets(tz_key: str, year: int) -> np.ndarray:
    """UTC offset (s) of `tz` at every hour of a UTC calendar year (calendar facts only)."""
    tz = ZoneInfo(tz_key)
    start = datetime(year, 1, 1, tzinfo=UTC)
    hours = int((datetime(year + 1, 1, 1, tzinfo=UTC) - start).total_seconds() // HOUR_S)
    out = np.empty(hours, dtype=np.int64)
    # the offset only changes at DST transitions: compute per day, fix the two odd days
    for h in range(0, hours, 24):
        a = (start + timedelta(hours=h)).astimezone(tz).utcoffset()
        b = (start + timedelta(hours=min(h + 23, hours - 1))).astimezone(tz).utcoffset()
        if a == b:
            out[h:h + 24] = int(a.total_seconds())
        else:
            for k in range(h, min(h + 24, hours)):
                out[k] = int((start + timedelta(hours=k)).astimezone(tz)
                             .utcoffset().total_seconds())
    return out


def local_day_hour(t: np.ndarray, tz: ZoneInfo) -> tuple[np.ndarray, np.ndarray]:
    """Local date ordinal and local hour (0-23) of each UTC hour start."""
    if len(t) == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64)
    years = (t // DAY_S).astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    offsets = np.empty(len(t), dtype=np.int64)
    for year in np.unique(years):
        sel = years == year
        base = to_epoch_s(datetime(int(year), 1, 1, tzinfo=UTC))
        offsets[sel] = _year_offsets(tz.key, int(year))[(t[sel] - base) // HOUR_S]
    local = t + offsets
    # 719163 = date(1970, 1, 1).toordinal()
    return local // DAY_S + 719163, (local % DAY_S) // HOUR_S


def day_hours_s(day: date, tz: ZoneInfo) -> np.ndarray:
    start, end = day_bounds_s(day, tz)
    return np.arange(start, end, HOUR_S, dtype=np.int64)


def forecast_iso(iso: ForecastSeries, day: date, tz: ZoneInfo,
                 cutoff_s: int) -> DayForecast | None:
    """ISO's published forecast for `day`, if it had been issued by `cutoff_s`."""
    start, end = day_bounds_s(day, tz)
    hours = iso.as_of(cutoff_s).between(start, end)
    if len(hours.t) == 0 or not np.isfinite(hours.mw).any():
        return None
    return DayForecast(day, hours.t, hours.mw, "iso")


# ---------------------------------------------------------------- own forecaster

@dataclass(frozen=True)
class OwnForecastConfig:
    season_halfwidth_days: int = 40   # analog days: same time of year +- this, earlier years
    recent_days: int = 35             # ... plus the most recent days
    analogs: int = 12                 # days averaged for the hourly shape
    peak_analogs: int = 40            # days of similar peak that vote for the peak hour (0: off)
    peak_analog_max_age_days: int = 1461      # ... from the last four years only
    ridge: float = 1e-3
    # with issued temperature forecasts (`_peak_from_temps`)
    temps_first_hour: int = 9         # the forecast high is taken from this local hour on
    temps_min_days: int = 14          # past days with a forecast before it is used
    temps_halflife_days: float = 120.0   # a day this old weighs half as much as yesterday
    temps_max_age_days: int = 730        # ... and older days are left out (bounded refits)
    temps_ridge: float = 0.02
    cooling_knee_c: float = 24.0


def _daily_table(load: HourlySeries, tz: ZoneInfo):
    """Per complete local day: ordinal, 24-hour profile (MW, by local hour)."""
    days, hours = local_day_hour(load.t, tz)
    if len(days) == 0:
        return np.empty(0, dtype=np.int64), np.empty((0, 24))
    first = int(days[0])
    n = int(days[-1]) - first + 1
    prof = np.full((n, 24), np.nan)
    prof[days - first, hours] = load.mw     # the repeated fall-back hour: last one wins
    count = np.bincount(days - first, minlength=n)
    # the spring-forward day has 23 hours: borrow the missing 02:00 from 01:00
    gap = np.isnan(prof[:, 2]) & (count == 23)
    prof[gap, 2] = prof[gap, 1]
    complete = (count >= 23) & ~np.isnan(prof).any(axis=1)
    ordinals = np.arange(first, first + n, dtype=np.int64)
    return ordinals[complete], prof[complete]


@lru_cache(maxsize=4096)
def _is_holiday(ordinal: int) -> bool:
    import holidays as holidays_pkg
    day = date.fromordinal(ordinal)
    return day in holidays_pkg.country_holidays("US", years=day.year)


def off_day(ordinals: np.ndarray) -> np.ndarray:
    """1.0 for weekends and US federal holidays (load runs lower)."""
    weekday = (ordinals + 6) % 7          # date.fromordinal(o).weekday()
    return np.array([1.0 if w >= 5 or _is_holiday(int(o)) else 0.0
                     for o, w in zip(ordinals, weekday)])


@dataclass(frozen=True)
class DailyLoad:
    """Complete local days of a load series: one row per day, with the moment the
    day ended (`end_s`) so `as_of` keeps only days that had ended."""
    ordinal: np.ndarray     # local date ordinals, increasing (days with gaps left out)
    end_s: np.ndarray       # epoch s of the day's end (next local midnight, UTC)
    profile: np.ndarray     # (days, 24) MW by local hour
    peak: np.ndarray        # daily max MW
    off: np.ndarray         # 1.0 weekend / holiday
    year: np.ndarray        # calendar facts of each day, for fast selections
    month: np.ndarray
    month_day: np.ndarray   # month * 100 + day
    doy: np.ndarray         # day of year 1-366

    @classmethod
    def build(cls, load: HourlySeries, tz: ZoneInfo) -> "DailyLoad":
        ordinals, prof = _daily_table(load, tz)
        dates = [date.fromordinal(int(o)) for o in ordinals]
        ends = np.array([day_bounds_s(d, tz)[1] for d in dates], dtype=np.int64)
        peak = prof.max(axis=1) if len(ordinals) else np.empty(0)
        return cls(ordinals, ends, prof, peak, off_day(ordinals),
                   np.array([d.year for d in dates], dtype=np.int64),
                   np.array([d.month for d in dates], dtype=np.int64),
                   np.array([d.month * 100 + d.day for d in dates], dtype=np.int64),
                   np.array([d.timetuple().tm_yday for d in dates], dtype=np.int64))

    def select(self, part: slice | np.ndarray) -> "DailyLoad":
        """The rows in `part` (a slice, or row indices in order)."""
        return DailyLoad(self.ordinal[part], self.end_s[part], self.profile[part],
                         self.peak[part], self.off[part], self.year[part], self.month[part],
                         self.month_day[part], self.doy[part])

    def as_of(self, cutoff_s: int) -> "DailyLoad":
        n = int(np.searchsorted(self.end_s, cutoff_s, side="right"))
        return self.select(slice(0, n))

    def since(self, ordinal: int) -> "DailyLoad":
        lo = int(np.searchsorted(self.ordinal, ordinal, side="left"))
        return self.select(slice(lo, None))

    def rows(self, ordinals: np.ndarray) -> np.ndarray:
        """Row index of each ordinal, -1 where that day is missing."""
        if len(self.ordinal) == 0:
            return np.full(len(ordinals), -1)
        idx = np.clip(np.searchsorted(self.ordinal, ordinals), 0, len(self.ordinal) - 1)
        return np.where(self.ordinal[idx] == ordinals, idx, -1)


def forecast_own(load: HourlySeries, weather: DailyWeather | None, day: date, tz: ZoneInfo,
                 cutoff_s: int, config: OwnForecastConfig = OwnForecastConfig(),
                 daily: DailyLoad | None = None,
                 temps: ForecastTemps | None = None) -> DayForecast | None:
    """Day-ahead hourly forecast for `day` from data known at `cutoff_s` only.

    `daily` is `DailyLoad.build(load, tz)` when the caller has it (it is cut to
    `cutoff_s` here as well); built from `load` otherwise. With issued weather
    forecasts (`temps`, cut to `cutoff_s` here too) the daily peak comes from
    them (`_peak_from_temps`) once enough past days have both."""
    load = load.as_of(cutoff_s)                       # hours that had ended
    daily = (daily or DailyLoad.build(load, tz)).as_of(cutoff_s)
    temps = temps.as_of(cutoff_s) if temps is not None else None
    cutoff_day = int(local_day_hour(np.array([cutoff_s]), tz)[0][0])
    weather = weather.before(cutoff_day) if weather is not None else None   # days that had ended
    target = day.toordinal()
    if len(daily.ordinal) < 30 or target - 1 < cutoff_day:
        return None
    # The last local hours of the decision day that had fully ended: we see the
    # morning and early afternoon of the day before D.
    _, cutoff_hour = local_day_hour(np.array([cutoff_s]), tz)
    last_hour = int(cutoff_hour[0]) - 1
    seen_from, seen_to = max(last_hour - 2, 0), max(last_hour, 0) + 1
    partial = load.between(day_bounds_s(date.fromordinal(target - 1), tz)[0], cutoff_s)
    if len(partial.t) == 0:
        return None
    # the day before D is seen only up to the decision moment
    _, seen_hours = local_day_hour(partial.t, tz)
    seen = (seen_hours >= seen_from) & (seen_hours < seen_to)
    prev_level = float(np.mean(partial.mw[seen])) if seen.any() else float(partial.mw[-1])
    from_temps = None
    if temps is not None:
        from_temps = _peak_from_temps(daily, temps, target, prev_level, (seen_from, seen_to),
                                      config)
    if from_temps is not None:
        # the issued forecast replaces the days-old observed weather; the load
        # regression below then only chooses the analog days of the hourly shape
        weather = None

    # training days: same time of year in earlier years, plus the recent weeks
    ords = daily.ordinal
    doy = daily.doy
    target_doy = day.timetuple().tm_yday
    near_season = np.abs(((doy - target_doy + 182) % 365) - 182) <= config.season_halfwidth_days
    recent = ords >= target - config.recent_days
    prev1, prev2 = daily.rows(ords - 1), daily.rows(ords - 2)
    train = (near_season | recent) & (prev1 >= 0) & (prev2 >= 0)
    if train.sum() < 20:
        return None

    def features(targets, prev_level, peak2, off_t, off_prev):
        cols = [np.ones(len(targets)), prev_level, peak2, off_t, off_prev]
        if weather is not None and len(weather.day):
            cols.append(weather.lookup(targets - 2, "tmax"))
            cols.append(weather.lookup(targets - 3, "tmax"))
            cols.append(weather.lookup(targets - 2, "tavg"))
        return np.column_stack(cols)

    rows = np.flatnonzero(train)
    x = features(ords[rows], daily.profile[prev1[rows], seen_from:seen_to].mean(axis=1),
                 daily.peak[prev2[rows]], daily.off[rows], daily.off[prev1[rows]])
    y = daily.peak[rows]
    ok = np.isfinite(x).all(axis=1) & np.isfinite(y)
    if ok.sum() < 20:
        return None
    x, y, rows = x[ok], y[ok], rows[ok]
    # recent days weigh more: the load level drifts from year to year
    age_days = (target - ords[rows]).astype(float)
    w = np.where(age_days <= config.recent_days, 3.0, 1.0) / (1.0 + age_days / 365.0)
    mu, sd = x[:, 1:].mean(axis=0), x[:, 1:].std(axis=0) + 1e-9
    xs = np.column_stack([x[:, 0], (x[:, 1:] - mu) / sd])
    a = xs.T @ (xs * w[:, None]) + config.ridge * np.eye(xs.shape[1]) * w.sum()
    beta = np.linalg.solve(a, xs.T @ (y * w))

    # the row for D
    r2 = daily.rows(np.array([target - 2]))[0]
    peak2 = daily.peak[r2] if r2 >= 0 else np.nan
    xt = features(np.array([target]), np.array([prev_level]), np.array([peak2]),
                  off_day(np.array([target])), off_day(np.array([target - 1])))
    xt = np.where(np.isfinite(xt), xt, np.r_[1.0, mu][None, :])
    xts = np.column_stack([xt[:, 0], (xt[:, 1:] - mu) / sd])
    peak = from_temps if from_temps is not None else float((xts @ beta)[0])

    # hourly shape: mean normalised profile of the nearest analog days
    dist = ((xs[:, 1:] - xts[:, 1:]) ** 2).sum(axis=1) + (age_days / 60.0) ** 2
    nearest = rows[np.argsort(dist)[:config.analogs]]
    shapes = daily.profile[nearest] / daily.peak[nearest, None]
    shape = shapes.mean(axis=0)

    hours = day_hours_s(day, tz)
    _, local_hours = local_day_hour(hours, tz)
    off_target = float(off_day(np.array([target]))[0])
    # the peak hour moves over the years (behind-the-meter solar pushes it later)
    voters = rows[near_season[rows] & (target - ords[rows] <= config.peak_analog_max_age_days)]
    chance = _peak_hour_chance(daily, voters, peak, off_target, config)
    source = "own+issued" if from_temps is not None else "own"
    return DayForecast(day, hours, peak * shape[local_hours], source,
                       chance[local_hours] if chance is not None else None)


def _peak_hour_chance(daily: DailyLoad, rows: np.ndarray, peak_mw: float, off: float,
                      config: OwnForecastConfig) -> np.ndarray | None:
    """Share of the `peak_analogs` same-season days whose daily peak was closest
    to `peak_mw` (same weekday/weekend class) that peaked in each local hour:
    hot days peak earlier than mild ones, so the level picks the hour."""
    if not config.peak_analogs:
        return None
    same = rows[daily.off[rows] == off]
    if len(same) < config.peak_analogs:
        same = rows
    if not len(same):
        return None
    nearest = same[np.argsort(np.abs(daily.peak[same] - peak_mw))[:config.peak_analogs]]
    hours = np.argmax(daily.profile[nearest], axis=1)
    return np.bincount(hours, minlength=24)[:24] / len(nearest)


def _peak_from_temps(daily: DailyLoad, temps: ForecastTemps, target: int, prev_level: float,
                     seen: tuple[int, int], config: OwnForecastConfig) -> float | None:
    """Daily peak of day `target` from the issued temperature forecasts.

    Weighted ridge regression on the past days that have a forecast:
    peak ~ the day before's load at the hours seen at the decision (the recent
    level: it absorbs the drift between years and data sources), each city's
    forecast high of the target day over the hours issued by the decision,
    with a cooling knee, the heat of the two days before (build-up), the
    night's low (humid nights stay warm), weekend / holiday and the weekday.
    Refitted at every decision; None while fewer than `temps_min_days` such
    days are known."""
    known = temps.hours_known(target)
    hours = np.flatnonzero(known[config.temps_first_hour:]) + config.temps_first_hour
    if len(hours) < 3:
        return None
    span = slice(config.temps_first_hour, int(hours[-1]) + 1)

    def features(ords: np.ndarray, level: np.ndarray, off: np.ndarray,
                 off_before: np.ndarray) -> np.ndarray:
        high = temps.day_high(ords, span)                     # (days, cities)
        before = (0.6 * temps.day_high(ords - 1) + 0.4 * temps.day_high(ords - 2)).mean(axis=1)
        night = temps.day_high(ords, slice(0, 7), low=True).mean(axis=1)   # humid nights stay warm
        weekday = (ords + 6) % 7
        return np.column_stack([
            np.ones(len(ords)), level, high, np.maximum(high - config.cooling_knee_c, 0.0),
            np.maximum(before - config.cooling_knee_c, 0.0), night, off, off_before,
            (weekday == 0) * (1 - off), (weekday == 4) * (1 - off)])

    # the days whose features can be known, and not older than the age limit
    daily = daily.since(max(int(temps.ordinal[0]) + 2, target - config.temps_max_age_days))
    prev = daily.rows(daily.ordinal - 1)
    rows = np.flatnonzero((prev >= 0) & temps.rows(daily.ordinal)[1])
    if not len(rows):
        return None
    x = features(daily.ordinal[rows], daily.profile[prev[rows], seen[0]:seen[1]].mean(axis=1),
                 daily.off[rows], daily.off[prev[rows]])
    y = daily.peak[rows]
    ok = np.isfinite(x).all(axis=1)
    if ok.sum() < config.temps_min_days:
        return None
    x, y, age = x[ok], y[ok], (target - daily.ordinal[rows[ok]]).astype(float)
    w = 1.0 / (1.0 + age / config.temps_halflife_days)
    xt = features(np.array([target]), np.array([prev_level]), off_day(np.array([target])),
                  off_day(np.array([target - 1])))
    if not np.isfinite(xt).all():
        return None
    mu, sd = x[:, 1:].mean(axis=0), x[:, 1:].std(axis=0) + 1e-6
    xs = np.column_stack([x[:, 0], (x[:, 1:] - mu) / sd])
    penalty = config.temps_ridge * np.eye(xs.shape[1]) * w.sum()
    penalty[0, 0] = 0.0
    beta = np.linalg.solve(xs.T @ (xs * w[:, None]) + penalty, xs.T @ (y * w))
    return float(np.r_[1.0, (xt[0, 1:] - mu) / sd] @ beta)
