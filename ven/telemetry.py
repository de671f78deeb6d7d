"""Sampling the adapter into reporting intervals.

An interval's kW is derived from the energy registers (not an instantaneous
reading), so the reported average is the energy that really flowed.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from adapters.base import Reading

# Report callbacks for the kW, kWh and SoC points of one report fire within
# milliseconds of each other: they must all get the same interval.
SAME_TICK = timedelta(milliseconds=500)


@dataclass(frozen=True)
class IntervalReading:
    start: datetime
    end: datetime
    kw: float          # mean power into the device
    kwh: float         # net energy into the device in the interval
    soc_pct: float


class IntervalSampler:
    """Turns successive readings into back-to-back intervals.

    The span from agent start to the first reporting tick is not reported:
    it is shorter than the reporting interval and would overlap the next one.
    """

    def __init__(self, first: Reading, time_scale: float = 1.0):
        self.time_scale = time_scale
        self._last_reading = first
        self._closed_at: datetime | None = None
        self._last_interval: IntervalReading | None = None

    def close(self, reading: Reading) -> IntervalReading | None:
        """Close the interval that ends at `reading`; None while there is nothing to report."""
        if self._closed_at is not None and reading.at - self._closed_at < SAME_TICK:
            return self._last_interval
        previous, primed = self._last_reading, self._closed_at is not None
        self._last_reading, self._closed_at = reading, reading.at
        seconds = (reading.at - previous.at).total_seconds()
        if not primed or seconds <= 0:
            self._last_interval = None
            return None
        kwh = ((reading.kwh_imported - previous.kwh_imported)
               - (reading.kwh_exported - previous.kwh_exported))
        hours = seconds * self.time_scale / 3600
        self._last_interval = IntervalReading(previous.at, reading.at, kwh / hours, kwh,
                                              reading.soc_pct)
        return self._last_interval
