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
boundary. The register at the boundary is estimated from the readings on
either side of it: the device's meter decides how much energy flowed between
them, their powers where the boundary falls inside that stretch. With one
switch of power between the two readings (an event's edge, a full battery, a
car unplugged) the meter's delta says when it happened, so the estimate is
exact; a reading taken before the boundary is wound forward at its power.
Consecutive intervals share that estimate, so their sum is the meter's delta
exactly; what a late reading can still move across its boundary is energy of
a device whose power changed more than once between the two readings. A tick
more than a whole sample period behind is given up (nothing is invented for
it), and the run goes on from the latest tick.
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
        self._opening_kwh: float | None = None   # the net register there (None: silent)
        self._online = True                      # every sample since then answered
        self._previous: Reading | None = None    # the latest reading: the next one's "before"

    def observe(self, tick: datetime, reading: Reading | None) -> IntervalReading | None:
        """Feed the sample taken for `tick` (None: the device did not answer), whenever
        it was read; maybe close an interval."""
        before, self._previous = self._previous, reading
        if reading is None:
            self._online = False
        if floor_to(tick, self.interval) != tick or tick == self._boundary:
            return None
        at_boundary = None if reading is None else self._net_kwh_at(tick, reading, before)
        continuing = self._boundary is not None and tick - self._boundary == self.interval
        closed = self._close(tick, reading, at_boundary) if continuing else None
        # A longer gap means the agent itself was not sampling: nothing is invented for it.
        self._boundary, self._opening_kwh, self._online = tick, at_boundary, reading is not None
        return closed

    def _hours(self, span: timedelta) -> float:
        return span.total_seconds() * self.time_scale / 3600

    def _net_kwh_at(self, boundary: datetime, reading: Reading, before: Reading | None) -> float:
        """Net energy register at the boundary, from the reading for it and the one before.

        A reading taken before the boundary is wound forward at its power. One taken
        after it, with the one before taken before it, brackets the boundary: if the
        power changed between the two, and changed once, the meter's delta says when
        (Ea + Pa * s + Pb * (span - s) = Eb), and the register at the boundary follows
        the power on its side of that switch. Exact for a switch on the boundary (an
        event's edge) and for one late (an adapter that writes its controls at the edge)
        or early (a battery that ran down to its floor), as long as it was the only one.
        """
        net = reading.kwh_imported - reading.kwh_exported
        if before is None or not before.at < boundary < reading.at or before.kw == reading.kw:
            return net - reading.kw * self._hours(reading.at - boundary)
        before_net = before.kwh_imported - before.kwh_exported
        span_h, boundary_h = self._hours(reading.at - before.at), self._hours(boundary - before.at)
        switch_h = (net - before_net - reading.kw * span_h) / (before.kw - reading.kw)
        if boundary_h <= min(max(switch_h, 0.0), span_h):
            return before_net + before.kw * boundary_h
        return net - reading.kw * (span_h - boundary_h)

    def _close(self, end: datetime, reading: Reading | None,
               at_end: float | None) -> IntervalReading:
        start = self._boundary
        if reading is None or self._opening_kwh is None:
            # The device was silent at one end: it is reported offline, with no energy figures.
            return IntervalReading(start, end, None, None, None, None, online=False)
        kwh = at_end - self._opening_kwh
        hours = self._hours(end - start)
        return IntervalReading(start, end, kwh / hours, kwh, reading.soc_pct, reading.plugged_in,
                               online=self._online and reading.online)

