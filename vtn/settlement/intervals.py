"""Time-weighted interval arithmetic: the one place that turns interval-average
kW into window averages and energies.

Telemetry intervals may be 1, 5, 15 or 60 minutes long (or anything else) and
may straddle a window edge: each interval contributes its kW weighted by the
seconds it overlaps the window. Seconds of the window with no interval count
as 0 kW, which is how every program treats missing data.
"""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from vtn.settlement.model import TelemetryInterval

KwOf = Callable[[TelemetryInterval], float]


def overlap_s(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> float:
    """Seconds that [a_start, a_end) and [b_start, b_end) share."""
    return max(0.0, (min(a_end, b_end) - max(a_start, b_start)).total_seconds())


def raw_kw(interval: TelemetryInterval) -> float:
    return interval.kw


class Series:
    """One participant's intervals, sorted and non-overlapping (the readers
    reject overlaps), so window look-ups are a bisection, not a scan."""

    def __init__(self, intervals: Iterable[TelemetryInterval]):
        self.intervals = sorted(intervals, key=lambda iv: iv.start_utc)
        self._ends = [iv.end_utc for iv in self.intervals]

    def __len__(self) -> int:
        return len(self.intervals)

    def within(self, start_utc: datetime, end_utc: datetime) -> Iterator[TelemetryInterval]:
        """Intervals that overlap [start_utc, end_utc)."""
        i = bisect_right(self._ends, start_utc)   # first interval ending after start
        while i < len(self.intervals) and self.intervals[i].start_utc < end_utc:
            yield self.intervals[i]
            i += 1


@dataclass(frozen=True)
class WindowAverage:
    kw: float          # time-weighted average over the FULL window; gaps count 0 kW
    covered_s: float   # seconds of the window that some interval covers
    window_s: float

    @property
    def complete(self) -> bool:
        return self.covered_s >= self.window_s


def window_average(series: Series, start_utc: datetime, end_utc: datetime,
                   kw_of: KwOf = raw_kw) -> WindowAverage:
    window_s = (end_utc - start_utc).total_seconds()
    if window_s <= 0:
        raise ValueError(f"empty window {start_utc.isoformat()}..{end_utc.isoformat()}")
    kw_s = 0.0
    covered_s = 0.0
    for iv in series.within(start_utc, end_utc):
        share_s = overlap_s(iv.start_utc, iv.end_utc, start_utc, end_utc)
        kw_s += kw_of(iv) * share_s
        covered_s += share_s
    return WindowAverage(kw=kw_s / window_s, covered_s=covered_s, window_s=window_s)


def window_kwh(series: Series, start_utc: datetime, end_utc: datetime,
               kw_of: KwOf = raw_kw) -> float:
    """Energy in the window: sum of kW x overlapping hours."""
    return sum(kw_of(iv) * overlap_s(iv.start_utc, iv.end_utc, start_utc, end_utc) / 3600.0
               for iv in series.within(start_utc, end_utc))


def by_participant(telemetry: Iterable[TelemetryInterval]) -> dict[str, Series]:
    grouped: dict[str, list[TelemetryInterval]] = {}
    for iv in telemetry:
        grouped.setdefault(iv.participant, []).append(iv)
    return {p: Series(ivs) for p, ivs in grouped.items()}
