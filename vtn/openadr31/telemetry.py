"""A 3.1 report's values as the store's telemetry intervals (the rows 2.0b reports fill).

USAGE (energy over the interval) -> kwh, DEMAND (power) -> kw, STORAGE_CHARGE_LEVEL (a
0..1 fraction, per the report-payloads enumeration) -> soc_pct. Other payload types
stay in the stored report only. kw keeps the store's sign: power into the device.
Several resources of one VEN reporting the same interval are summed (kw, kwh) and
averaged (soc_pct), since the store holds one row per VEN and interval.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from vtn.openadr31.problems import bad_request
from flexadr.oadr3_time import NOW
from vtn.openadr31.schemas import IntervalPeriod, ReportRequest

# payload type -> (TelemetryPoint column, factor per unit; None = units not given)
QUANTITIES = {
    "USAGE": ("kwh", {None: 1.0, "KWH": 1.0, "WH": 0.001}),
    "DEMAND": ("kw", {None: 1.0, "KW": 1.0, "W": 0.001}),
    "STORAGE_CHARGE_LEVEL": ("soc_pct", {None: 100.0, "PERCENT": 100.0}),
}
_AVERAGED = ("soc_pct",)

Point = tuple[datetime, datetime, dict]


def telemetry_points(report: ReportRequest) -> list[Point]:
    """The intervals to record, or a 400 Problem naming the field that is wrong."""
    factors = _factors(report)
    merged: dict[datetime, tuple[datetime, dict[str, list[float]]]] = {}
    for r, resource in enumerate(report.resources):
        for i, interval in enumerate(resource.intervals):
            where = f"resources.{r}.intervals.{i}"
            start, end = _interval_times(resource.intervalPeriod, interval.intervalPeriod, i, where)
            for p, payload in enumerate(interval.payloads):
                if payload.type not in QUANTITIES:
                    continue
                column, _ = QUANTITIES[payload.type]
                value = payload.values[0] if len(payload.values) == 1 else None
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise bad_request(f"{where}.payloads.{p}.values",
                                      f"{payload.type} takes one number")
                if payload.type == "STORAGE_CHARGE_LEVEL" and not 0 <= value <= 1:
                    raise bad_request(f"{where}.payloads.{p}.values",
                                      "STORAGE_CHARGE_LEVEL is a fraction from 0 to 1")
                _, values = merged.setdefault(start, (end, {}))
                values.setdefault(column, []).append(value * factors[payload.type])
    return [(start, end, {column: (sum(v) / len(v) if column in _AVERAGED else sum(v))
                          for column, v in values.items()})
            for start, (end, values) in sorted(merged.items())]


def _factors(report: ReportRequest) -> dict[str, float]:
    units = {payload_type: None for payload_type in QUANTITIES}
    for d, descriptor in enumerate(report.payloadDescriptors or ()):
        if descriptor.payloadType in QUANTITIES:
            known = QUANTITIES[descriptor.payloadType][1]
            unit = descriptor.units.upper() if descriptor.units else None
            if unit not in known:
                raise bad_request(f"payloadDescriptors.{d}.units",
                                  f"{descriptor.payloadType} in {descriptor.units} is not "
                                  f"understood here (use {', '.join(u for u in known if u)})")
            units[descriptor.payloadType] = unit
    return {t: QUANTITIES[t][1][unit] for t, unit in units.items()}


def _interval_times(default: IntervalPeriod | None, own: IntervalPeriod | None, index: int,
                    where: str) -> tuple[datetime, datetime]:
    """An interval's own period wins; else the resource's, the index-th step from its start."""
    duration = (own.duration if own and own.duration else None) or (
        default.duration if default else None)
    if duration is None or duration <= timedelta(0):
        raise bad_request(f"{where}.intervalPeriod.duration", "needs a positive duration")
    if own is not None and own.start is not None:
        start = own.start
    elif default is not None and default.start is not None:
        start = later(default.start, duration, f"{where}.intervalPeriod", steps=index)
    else:
        raise bad_request(f"{where}.intervalPeriod", "needs a start (here or on the resource)")
    if NOW in (own and own.start, default and default.start):
        raise bad_request(f"{where}.intervalPeriod.start", "a report interval needs a real start")
    return start, later(start, duration, f"{where}.intervalPeriod")


def later(start: datetime, length: timedelta, where: str, steps: int = 1) -> datetime:
    """start + steps * length, or a 400 naming `where` past the calendar's end."""
    try:
        return start + steps * length
    except OverflowError:
        raise bad_request(where, "ends past the year 9999") from None
