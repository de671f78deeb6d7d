"""An event's intervals: the signal's value for each consecutive interval (pure).

Most events hold one value for their whole active period; a utility may also send a
profile (5.0 / 2.0 / 4.0 kW by the hour). The schedule is stored as JSON on the
event row and always covers the active period exactly, so the 2.0b rule "interval
durations sum to the active period" holds by construction.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Sequence


class ScheduleError(ValueError):
    pass


@dataclass(frozen=True)
class Step:
    duration: timedelta
    value: float


def checked(steps: Sequence[Step], duration: timedelta) -> list[Step]:
    """The steps if they are finite, positive and cover exactly `duration`."""
    if not steps:
        raise ScheduleError("a schedule needs at least one interval")
    for i, step in enumerate(steps):
        if not step.duration > timedelta(0):
            raise ScheduleError(f"interval {i}: duration {step.duration} is not positive")
        if not math.isfinite(step.value):
            raise ScheduleError(f"interval {i}: value {step.value} is not a finite number")
    total = sum((step.duration for step in steps), timedelta(0))
    if total != duration:
        raise ScheduleError(f"the intervals last {total}, the event {duration}")
    return list(steps)


def fit(steps: Sequence[Step], duration: timedelta) -> list[Step]:
    """The schedule of an event whose active period became `duration`: intervals past the
    new end are dropped or cut there; a longer event extends the last interval."""
    fitted, elapsed = [], timedelta(0)
    for step in steps:
        if elapsed + step.duration >= duration:
            fitted.append(Step(duration - elapsed, step.value))
            return fitted
        fitted.append(step)
        elapsed += step.duration
    last = fitted.pop()
    fitted.append(Step(last.duration + duration - elapsed, last.value))
    return fitted


def dumps(steps: Sequence[Step]) -> str:
    return json.dumps([[step.duration.total_seconds(), step.value] for step in steps])


def loads(text: str | None, value: float, duration: timedelta) -> list[Step]:
    """A stored schedule; an event without one holds `value` throughout."""
    if text is None:
        return [Step(duration, value)]
    return [Step(timedelta(seconds=seconds), step_value) for seconds, step_value in json.loads(text)]
