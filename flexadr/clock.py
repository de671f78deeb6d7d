"""The one clock. Logic takes a Clock; only the edges construct SystemClock."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class ManualClock:
    """A clock that only moves when told to: replays and tests."""

    def __init__(self, start: datetime):
        if start.tzinfo is None:
            raise ValueError("ManualClock needs a timezone-aware start")
        self._now = start.astimezone(timezone.utc)

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        self._now += delta
        return self._now

    def set(self, when: datetime) -> None:
        self._now = when.astimezone(timezone.utc)


def ceil_to(when: datetime, step: timedelta) -> datetime:
    """Round `when` up to the next multiple of `step` since the Unix epoch."""
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    steps = -(-(when - epoch) // step)
    return epoch + steps * step


def floor_to(when: datetime, step: timedelta) -> datetime:
    """Round `when` down to a multiple of `step` since the Unix epoch."""
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return epoch + ((when - epoch) // step) * step
