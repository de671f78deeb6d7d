"""The National Weather Service's hourly gridpoint forecast as issued temperature rows (pure).

api.weather.gov answers a point (`/points/{lat},{lon}`) with the URL of its
grid cell's hourly forecast (`properties.forecastHourly`); that document's
`properties.periods` hold one hour each (`startTime` with its UTC offset,
`temperature` in `temperatureUnit` F or C, or, with the API's newer
quantitative values, an object with a `unitCode` and `value`). Its
`properties.updateTime` is when the NWS issued the forecast, so the planner sees
each value only from then on, as it does the file's day-ahead values.

Parsing raises `NwsFormatError` naming what is missing; the feed (vtn/weather_feed.py)
keeps the last good forecast when a document cannot be used.
"""
from __future__ import annotations

from datetime import datetime

import numpy as np

from schedules.forecast import HOUR_S, ForecastRows


UNIT_CODES = {"wmoUnit:degC": "C", "wmoUnit:degF": "F"}


class NwsFormatError(ValueError):
    """An api.weather.gov document that is not what the planner can use."""


def hourly_forecast_url(points: dict) -> str:
    """`properties.forecastHourly` of a /points answer."""
    url = _get(points, "properties", "forecastHourly")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise NwsFormatError(f"properties.forecastHourly is not a URL: {url!r}")
    return url


def forecast_rows(hourly: dict, city: str) -> ForecastRows:
    """One row per forecast hour of `city`, issued at the document's updateTime."""
    issued = _epoch(_get(hourly, "properties", "updateTime")
                    or _get(hourly, "properties", "generatedAt"), "properties.updateTime")
    periods = _get(hourly, "properties", "periods")
    if not isinstance(periods, list) or not periods:
        raise NwsFormatError("properties.periods: no forecast periods")
    t, temp = [], []
    for n, period in enumerate(periods):
        if not isinstance(period, dict):
            raise NwsFormatError(f"properties.periods[{n}] is not an object")
        start = _epoch(period.get("startTime"), f"properties.periods[{n}].startTime")
        t.append(start - start % HOUR_S)
        temp.append(_celsius(period, n))
    return ForecastRows((city,) * len(t), np.asarray(t, dtype=np.int64),
                        np.asarray(temp, dtype=np.float64),
                        np.full(len(t), issued, dtype=np.int64))


def _celsius(period: dict, n: int) -> float:
    value, unit = period.get("temperature"), period.get("temperatureUnit")
    if isinstance(value, dict):     # {"unitCode": "wmoUnit:degC", "value": 31.1}
        unit = UNIT_CODES.get(value.get("unitCode"), value.get("unitCode"))
        value = value.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise NwsFormatError(f"properties.periods[{n}].temperature is not a number: {value!r}")
    if unit == "F":
        return (value - 32.0) * 5.0 / 9.0
    if unit == "C":
        return float(value)
    raise NwsFormatError(f"properties.periods[{n}].temperatureUnit {unit!r} is neither F nor C")


def _epoch(text, where: str) -> int:
    try:
        when = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise NwsFormatError(f"{where} is not an ISO 8601 time: {text!r}") from None
    if when.tzinfo is None:
        raise NwsFormatError(f"{where} has no UTC offset: {text!r}")
    return int(when.timestamp())


def _get(document, *keys):
    for key in keys:
        if not isinstance(document, dict):
            return None
        document = document.get(key)
    return document
