"""Timed device actions for adapters whose protocol has no schedule of its own."""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Awaitable, Callable

from adapters.base import AdapterError

log = logging.getLogger(__name__)


async def run_at(clock_now: Callable[[], datetime], when: datetime,
                 action: Callable[[], Awaitable[None]]) -> None:
    """Sleep until `when` by the injected clock, then run `action`; errors are logged.

    A background task has nobody to raise to: the device's own schedule (profile
    duration, revert timer) is what makes it safe, this only tidies up.
    """
    delay_s = (when - clock_now()).total_seconds()
    if delay_s > 0:
        await asyncio.sleep(delay_s)
    try:
        await action()
    except AdapterError as exc:
        log.warning("scheduled device action failed: %r", exc)
