"""Readers at the edge: files -> the plain data the pure planner takes.

- `read_isone_csv`: ISO-NE-style hourly CSV (columns `utc_hour_ending`,
  `demand_mw_clean` or `demand_mw`, `isone_dayahead_forecast_mw`; see
  shared/data/PROVENANCE.md) -> actual load and ISO's day-ahead forecast series.
- `read_daily_weather`: Meteostat-style daily CSV (`time`, `tavg`, `tmin`, `tmax`).
- `read_alerts`: an NWS CAP ATOM feed or api.weather.gov GeoJSON file.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from schedules.forecast import DailyWeather, ForecastSeries, HourlySeries, iso_issue_times
from schedules.storms import Alert, parse_alerts

UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class DataFileError(ValueError):
    """A data file the planner cannot use; the message names the file and line."""


@dataclass(frozen=True)
class LoadFile:
    load: HourlySeries                  # actual hourly load (MW)
    iso_forecast: ForecastSeries | None  # ISO's day-ahead forecast, with issue times


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else float("nan")
    except ValueError:
        return float("nan")


def read_isone_csv(path: str | Path, tz: ZoneInfo = ZoneInfo("America/New_York")) -> LoadFile:
    starts, actual, forecast = [], [], []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            ending = datetime.strptime(row["utc_hour_ending"], "%Y-%m-%d %H:%M")
            start = ending.replace(tzinfo=UTC) - timedelta(hours=1)
            starts.append(int((start - _EPOCH).total_seconds()))
            clean = _number(row.get("demand_mw_clean"))
            actual.append(clean if clean == clean else _number(row.get("demand_mw")))
            forecast.append(_number(row.get("isone_dayahead_forecast_mw")))
    t = np.asarray(starts, dtype=np.int64)
    mw = np.asarray(actual, dtype=np.float64)
    fc = np.asarray(forecast, dtype=np.float64)
    iso = None
    if np.isfinite(fc).any():
        iso = ForecastSeries(t, fc, iso_issue_times(t, tz))
    return LoadFile(HourlySeries(t, mw), iso)


def read_daily_weather(path: str | Path) -> DailyWeather:
    days, tmax, tmin, tavg = [], [], [], []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            days.append(date.fromisoformat(row["time"]).toordinal())
            tmax.append(_number(row.get("tmax")))
            tmin.append(_number(row.get("tmin")))
            tavg.append(_number(row.get("tavg")))
    return DailyWeather(np.asarray(days, dtype=np.int64), np.asarray(tmax), np.asarray(tmin),
                        np.asarray(tavg))


def read_alerts(path: str | Path) -> list[Alert]:
    return parse_alerts(Path(path).read_bytes())
