"""From device readings to reporting intervals.

The agent samples its adapter often (default every 60 s) and closes an
interval at each reporting boundary (the program's 15 minutes, or what the
VTN asked for). An interval's kW comes from the energy registers, so the
reported average is the energy that really flowed. An interval the agent did
not see from start to end (start-up, restart, device silent at a boundary) is
not invented: it is skipped, or reported with the device offline and no kW.

A busy agent (a loaded machine, compressed time) samples late; a late sample
is still taken, for the tick it was due at (`next_sample_tick`), and the
recorder is told that tick, so however late the reading it belongs to its
boundary. Its energy register is wound back from the reading's own time to
the tick at the power it reads: the device's meter decides how much energy
flowed, the power only where the boundary falls inside the stretch between
two readings. Consecutive intervals share that estimate, so their sum is the
meter's delta exactly; what a late reading can move is energy from one side
of its boundary to the other, and none at all when the device switched on the
boundary itself (its own schedule: `sim`, OCPP charging profiles). A tick more
than a whole sample period behind is given up (nothing is invented for it),
and the run goes on from the latest tick.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from adapters.base import Reading
from flexadr.clock import ceil_to, floor_to


@dataclass(frozen=True)
class IntervalReading:
    start: datetime
    end: datetime
    kw: float | None          # mean power into the device; None when unknown
    kwh: float | None         # net energy into the device in the interval
    soc_pct: float | None
    plugged_in: bool | None
    online: bool


def next_sample_tick(last: datetime | None, now: datetime, period: timedelta) -> datetime:
    """The tick the next sample stands for: the one after `last` (at once, if it has
    passed), or the latest one passed when the agent is more than a period behind."""
    if last is None:
        return ceil_to(now + timedelta(microseconds=1), period)
    return max(last + period, floor_to(now, period))


class IntervalRecorder:
    def __init__(self, interval: timedelta, sample_period: timedelta, time_scale: float = 1.0):
        if interval % sample_period:
            raise ValueError(f"the sample period {sample_period} must divide the interval {interval}")
        self.interval = interval
        self.sample_period = sample_period
        self.time_scale = time_scale
        self._boundary: datetime | None = None   # the last boundary a sample fell on
        self._opening: Reading | None = None     # the device's reading there (None: silent)
        self._online = True                      # every sample since then answered

    def observe(self, tick: datetime, reading: Reading | None) -> IntervalReading | None:
        """Feed the sample taken for `tick` (None: the device did not answer), whenever
        it was read; maybe close an interval."""
        if reading is None:
            self._online = False
        if floor_to(tick, self.interval) != tick or tick == self._boundary:
            return None
        continuing = self._boundary is not None and tick - self._boundary == self.interval
        closed = self._close(tick, reading) if continuing else None
        # A longer gap means the agent itself was not sampling: nothing is invented for it.
        self._boundary, self._opening, self._online = tick, reading, reading is not None
        return closed

    def _net_kwh_at(self, reading: Reading, boundary: datetime) -> float:
        """Net energy register at the boundary, from a reading taken before or after it.

        Events start and end on boundaries, so the power at a reading taken
        after the boundary is the power since the boundary, and at one taken
        before it the power up to it: the register is wound back (or forward)
        at that power. A device that switches late (an adapter that writes its
        controls at the edge) moves its lag's energy across the boundary.
        """
        offset_h = (reading.at - boundary).total_seconds() * self.time_scale / 3600
        return reading.kwh_imported - reading.kwh_exported - reading.kw * offset_h

    def _close(self, end: datetime, reading: Reading | None) -> IntervalReading:
        start, opening = self._boundary, self._opening
        if reading is None or opening is None:
            # The device was silent at one end: it is reported offline, with no energy figures.
            return IntervalReading(start, end, None, None, None, None, online=False)
        kwh = self._net_kwh_at(reading, end) - self._net_kwh_at(opening, start)
        hours = (end - start).total_seconds() * self.time_scale / 3600
        return IntervalReading(start, end, kwh / hours, kwh, reading.soc_pct, reading.plugged_in,
                               online=self._online and reading.online)

