"""Readers at the edge: files -> the plain data the pure planner takes.

- `read_isone_csv` (`read_load_files` for several): ISO-NE-style hourly CSV (columns `utc_hour_ending`,
  `demand_mw_clean` or `demand_mw`, `isone_dayahead_forecast_mw`; see
  flexadr/data/PROVENANCE.md) -> actual load and ISO's day-ahead forecast series.
- `read_daily_weather`: Meteostat-style daily CSV (`time`, `tavg`, `tmin`, `tmax`).
- `read_weather_forecast`: issued hourly temperature forecasts of several cities
  (`timestamp_local`, `temperature_2m`, `city`).
- `read_alerts`: an NWS CAP ATOM feed or api.weather.gov GeoJSON file.
- `read_emergencies`: declared emergencies (`type,start,end[,declared,description]`).

A file a reader cannot use raises `DataFileError`, whose message names the file
and, for each problem, the line and column: a missing file, text that is not
UTF-8, no data rows, a missing column, a time that does not parse or does not
come after the row before, a number column holding something else (an empty
number is a missing value, NaN), XML or JSON that does not parse. Up to
MAX_PROBLEMS problems are listed at once, so one run shows what to fix.
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
from lxml import etree

from schedules.forecast import (HOUR_S, WEATHER_FORECAST_LEAD_S, DailyWeather, ForecastSeries,
                                ForecastRows, ForecastTemps, HourlySeries, iso_issue_times)
from schedules.emergencies import Emergency, EmergencyFormatError, parse_emergencies
from schedules.storms import Alert, AlertFormatError, parse_alerts

UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NAN = float("nan")
MAX_PROBLEMS = 10

# (line, what is wrong); line None: the file as a whole
Problem = tuple[int | None, str]


class DataFileError(ValueError):
    """A data file the readers cannot use: one message line per problem, each
    starting `FILE:LINE:` (or `FILE:` when no line applies)."""

    def __init__(self, path: str | Path, problems: list[Problem], unlisted: int = 0) -> None:
        lines = [f"{path}:{line}: {text}" if line is not None else f"{path}: {text}"
                 for line, text in problems]
        if unlisted:
            lines.append(f"{path}: {unlisted} more problems not listed")
        super().__init__("\n".join(lines))


class _Problems:
    """What is wrong with one file so far; reading goes on to find the rest."""

    def __init__(self, path: str | Path) -> None:
        self.path = path
        self.listed: list[Problem] = []
        self.count = 0

    def add(self, line: int | None, text: str) -> None:
        self.count += 1
        if self.count <= MAX_PROBLEMS:
            self.listed.append((line, text))

    def raise_any(self) -> None:
        if self.count:
            # times out of order are found after the row-by-row pass: list by line
            listed = sorted(self.listed, key=lambda problem: problem[0] or 0)
            raise DataFileError(self.path, listed, self.count - len(self.listed))


@dataclass(frozen=True)
class LoadFile:
    load: HourlySeries                  # actual hourly load (MW)
    iso_forecast: ForecastSeries | None  # ISO's day-ahead forecast, with issue times


def _read_bytes(path: str | Path) -> bytes:
    """The file's bytes; a `.gz` file (as the packaged data ships) decompressed."""
    try:
        data = Path(path).read_bytes()
        return gzip.decompress(data) if str(path).endswith(".gz") else data
    except OSError as err:       # gzip.BadGzipFile is an OSError
        raise DataFileError(path, [(None, (err.strerror or str(err)).lower())]) from None
    except EOFError:
        raise DataFileError(path, [(None, "truncated gzip file")]) from None


def _read_text(path: str | Path) -> str:
    data = _read_bytes(path)
    try:
        return data.decode("utf-8-sig")     # spreadsheets often write a byte-order mark
    except UnicodeDecodeError as err:
        bad = err.start
    line = data.count(b"\n", 0, bad) + 1
    raise DataFileError(path, [(line, f"not UTF-8 text (byte {data[bad]:#04x})")])


class _CsvFile:
    """A CSV file's columns and data rows, and the problems found reading them.

    `needs`: groups of column names; the file must have one column of each group."""

    def __init__(self, path: str | Path, needs: tuple[tuple[str, ...], ...]) -> None:
        self.problems = _Problems(path)
        self.reader = csv.reader(io.StringIO(_read_text(path), newline=""))
        header = next(self.reader, None)
        if header is None:
            raise DataFileError(path, [(None, "empty file")])
        self.width = len(header)
        self.columns = {name.strip(): i for i, name in enumerate(header)}
        missing = [group for group in needs if not any(name in self.columns for name in group)]
        if missing:
            raise DataFileError(path, [(1, _missing_columns(missing, needs, list(self.columns)))])

    def _rows(self) -> Iterator[tuple[int, list[str]]]:
        """(first line, fields) of each non-blank row with as many fields as the header."""
        first = self.reader.line_num + 1
        try:
            for row in self.reader:
                if row and len(row) != self.width:
                    self.problems.add(first, f"{len(row)} fields where the header has "
                                             f"{self.width}")
                elif row:
                    yield first, row
                first = self.reader.line_num + 1
        except csv.Error as err:
            self.problems.add(first, f"not CSV: {err}")

    def series(self, time_column: str, parse: Callable[[str], int], show: Callable[[int], str],
               number_columns: tuple[str, ...], group_column: str | None = None,
               ) -> tuple[np.ndarray, np.ndarray]:
        """Times (`parse` of `time_column`, increasing) and one row of floats per
        number column (NaN where empty or absent). With `group_column`, times
        increase within each group and `self.groups` holds each row's group.
        Raises DataFileError with every problem found."""
        wanted = [(self.columns.get(name), name) for name in number_columns]
        number = self._number
        times, lines, values, groups = [], [], [], []
        for line, row in self._rows():
            when = self._time(parse, row, time_column, line)
            numbers = [number(row, index, name, line) for index, name in wanted]
            group = row[self.columns[group_column]].strip() if group_column else ""
            if group_column and not group:
                self.problems.add(line, f"{group_column}: empty")
            elif when is not None:
                times.append(when)
                lines.append(line)
                values.append(numbers)
                groups.append(group)
        for name in dict.fromkeys(groups):
            rows = [i for i, g in enumerate(groups) if g == name]
            self._check_rising(time_column, [times[i] for i in rows], [lines[i] for i in rows],
                               show)
        if not lines and not self.problems.count:
            self.problems.add(None, "no data rows")
        self.problems.raise_any()
        self.groups = groups
        columns = np.array(values, dtype=np.float64).reshape(-1, len(wanted)).T.copy()
        return np.asarray(times, dtype=np.int64), columns

    def _number(self, row: list[str], index: int | None, column: str, line: int) -> float:
        """The cell as a float; empty (or an absent optional column) is NaN."""
        if index is None:
            return NAN
        text = row[index]
        if not text:
            return NAN
        try:
            return float(text)
        except ValueError:
            if text.strip():
                self.problems.add(line, f"{column}: not a number: {text!r}")
            return NAN

    def _time(self, parse: Callable[[str], int], row: list[str], column: str,
              line: int) -> int | None:
        try:
            return parse(row[self.columns[column]])
        except ValueError as err:
            self.problems.add(line, f"{column}: {err}")
            return None

    def _check_rising(self, column: str, times: list[int], lines: list[int],
                      show: Callable[[int], str]) -> None:
        """Each row's time must come after the previous row's: the series are searched by time."""
        for i in np.flatnonzero(np.diff(np.asarray(times, dtype=np.int64)) <= 0):
            self.problems.add(lines[i + 1], f"{column}: {show(times[i + 1])} is not after "
                                            f"{show(times[i])} on line {lines[i]}")


def _missing_columns(missing: list[tuple[str, ...]], needs: tuple[tuple[str, ...], ...],
                     header: list[str]) -> str:
    def names(groups: Iterable[tuple[str, ...]]) -> str:
        return " and ".join(" or ".join(group) for group in groups)

    # the header shows a wrong delimiter or a misspelt name at a glance
    return (f"missing column {names(missing)} (needs {names(needs)}; the header has "
            f"{', '.join(header)})")


_HOUR_ENDING = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d")


def _hour_start_s(text: str) -> int:
    """Epoch seconds of the start of the hour ending at `text` (UTC)."""
    try:
        if not _HOUR_ENDING.fullmatch(text):
            raise ValueError
        ending = datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"not a 'YYYY-MM-DD HH:MM' time: {text!r}") from None
    if ending.minute:
        raise ValueError(f"not on the hour: {text!r}")
    return int((ending - _EPOCH).total_seconds()) - HOUR_S


def _show_hour_ending(start_s: int) -> str:
    return datetime.fromtimestamp(start_s + HOUR_S, UTC).strftime("%Y-%m-%d %H:%M")


def _day(text: str) -> int:
    try:
        return date.fromisoformat(text).toordinal()
    except ValueError:
        raise ValueError(f"not a 'YYYY-MM-DD' date: {text!r}") from None


def _show_day(ordinal: int) -> str:
    return date.fromordinal(ordinal).isoformat()


def read_isone_csv(path: str | Path, tz: ZoneInfo = ZoneInfo("America/New_York")) -> LoadFile:
    """Actual load (`demand_mw_clean`, else `demand_mw`) and ISO's forecast (None
    without any `isone_dayahead_forecast_mw` value) by hour; hours must increase.
    Raises DataFileError for a file it cannot use."""
    table = _CsvFile(path, (("utc_hour_ending",), ("demand_mw_clean", "demand_mw")))
    t, (clean, raw, fc) = table.series("utc_hour_ending", _hour_start_s, _show_hour_ending,
                                       ("demand_mw_clean", "demand_mw",
                                        "isone_dayahead_forecast_mw"))
    iso_forecast = ForecastSeries(t, fc, iso_issue_times(t, tz)) if np.isfinite(fc).any() else None
    return LoadFile(HourlySeries(t, np.where(np.isnan(clean), raw, clean)), iso_forecast)


def read_load_files(paths: Iterable[str | Path],
                    tz: ZoneInfo = ZoneInfo("America/New_York")) -> LoadFile:
    """Several `read_isone_csv` files as one history (e.g. older years from one
    source and recent months from another, with a gap between): taken in time
    order; hours may not overlap. Raises DataFileError."""
    files = sorted(((read_isone_csv(path, tz), path) for path in paths),
                   key=lambda item: int(item[0].load.t[0]))
    for (before, first), (after, second) in zip(files, files[1:]):
        if after.load.t[0] <= before.load.t[-1]:
            raise DataFileError(second, [(None, f"its hours overlap those of {first} (from "
                                                f"{_show_hour_ending(int(after.load.t[0]))} to "
                                                f"{_show_hour_ending(int(before.load.t[-1]))} "
                                                f"UTC, hour ending)")])
    load = HourlySeries(np.concatenate([f.load.t for f, _ in files]),
                        np.concatenate([f.load.mw for f, _ in files]))
    forecasts = [f.iso_forecast for f, _ in files if f.iso_forecast is not None]
    iso = ForecastSeries(*(np.concatenate([getattr(fc, name) for fc in forecasts])
                           for name in ("t", "mw", "issued_s"))) if forecasts else None
    return LoadFile(load, iso)


def read_daily_weather(path: str | Path) -> DailyWeather:
    """Daily `tmax`, `tmin` (optional) and `tavg` by `time` (a date; days must
    increase). Raises DataFileError for a file it cannot use."""
    table = _CsvFile(path, (("time",), ("tmax",), ("tavg",)))
    days, (tmax, tmin, tavg) = table.series("time", _day, _show_day, ("tmax", "tmin", "tavg"))
    return DailyWeather(days, tmax, tmin, tavg)


def _local_hour(tz: ZoneInfo) -> Callable[[str], int]:
    def parse(text: str) -> int:
        """Epoch seconds of a local wall-clock hour start (`YYYY-MM-DD HH:MM[:SS]`)."""
        try:
            if not _LOCAL_HOUR.fullmatch(text):
                raise ValueError
            wall = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not a 'YYYY-MM-DD HH:MM:SS' time: {text!r}") from None
        if wall.minute or wall.second:
            raise ValueError(f"not on the hour: {text!r}")
        local = wall.replace(tzinfo=tz)
        try:
            utc = local.astimezone(UTC)
            if utc.astimezone(tz).replace(tzinfo=None) != wall:
                raise ValueError(f"{text!r} does not exist in {tz.key} (clocks spring forward)")
        except OverflowError:
            raise ValueError(f"out of range: {text!r}") from None
        return int((utc - _EPOCH).total_seconds())
    return parse


_LOCAL_HOUR = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d(:\d\d)?")


def read_weather_forecast(path: str | Path,
                          tz: ZoneInfo = ZoneInfo("America/New_York")) -> ForecastTemps:
    """The issued forecast file as a table (see `read_weather_forecast_rows`)."""
    return read_weather_forecast_rows(path, tz).table(tz)


def read_weather_forecast_rows(path: str | Path,
                               tz: ZoneInfo = ZoneInfo("America/New_York")) -> ForecastRows:
    """Issued hourly temperature forecasts: `timestamp_local` (wall clock in `tz`,
    hour beginning; increasing within each city), `temperature_2m` (deg C), `city`.
    Each value counts as issued WEATHER_FORECAST_LEAD_S before its hour (the
    file's day-ahead runs). Raises DataFileError for a file it cannot use."""
    table = _CsvFile(path, (("timestamp_local",), ("temperature_2m",), ("city",)))
    parse = _local_hour(tz)
    t, (temp,) = table.series("timestamp_local", parse,
                              lambda s: datetime.fromtimestamp(s, tz).strftime("%Y-%m-%d %H:%M"),
                              ("temperature_2m",), group_column="city")
    return ForecastRows(tuple(table.groups), t, temp, t - WEATHER_FORECAST_LEAD_S)


def read_alerts(path: str | Path) -> list[Alert]:
    """Alerts of a CAP ATOM feed or GeoJSON file; raises DataFileError when it
    does not parse (with the parser's line and column) or is not such a feed."""
    data = _read_bytes(path)
    problem: Problem
    try:
        return parse_alerts(data)
    except etree.XMLSyntaxError as err:
        line, column = err.position
        # lxml ends its message with the position, which the FILE:LINE prefix gives
        message = re.sub(r", line \d+, column \d+$", "", err.msg)
        problem = (line, f"column {column}: not well-formed XML: {message}")
    except json.JSONDecodeError as err:
        problem = (err.lineno, f"column {err.colno}: not valid JSON: {err.msg}")
    except UnicodeDecodeError as err:
        problem = (None, f"not UTF-8 text: {err.reason}")
    except AlertFormatError as err:
        problem = (err.line, str(err))
    raise DataFileError(path, [problem])


def read_emergencies(path: str | Path) -> list[Emergency]:
    """Declared emergencies (`schedules/emergencies.py`); raises DataFileError
    naming each bad row."""
    try:
        return parse_emergencies(_read_text(path))
    except EmergencyFormatError as err:
        raise DataFileError(path, err.problems[:MAX_PROBLEMS],
                            max(len(err.problems) - MAX_PROBLEMS, 0)) from None
