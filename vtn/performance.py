"""Event performance from stored telemetry (pure).

Average over the FULL event: time not covered by any interval counts as 0 kW.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Iterable


@dataclass(frozen=True)
class Interval:
    start: datetime
    end: datetime
    kw: float


def mean_kw(intervals: Iterable[Interval], start: datetime, end: datetime) -> float:
    """Time-weighted mean of interval-average kW over [start, end); gaps count as 0 kW."""
    duration_s = (end - start).total_seconds()
    if duration_s <= 0:
        raise ValueError("the event must end after it starts")
    weighted = 0.0
    for interval in intervals:
        overlap_s = (min(interval.end, end) - max(interval.start, start)).total_seconds()
        if overlap_s > 0:
            weighted += interval.kw * overlap_s
    return weighted / duration_s
