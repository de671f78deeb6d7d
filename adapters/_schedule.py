"""Timed device actions for adapters whose protocol has no schedule of its own."""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Awaitable, Callable

from adapters.base import AdapterError, Command

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


async def hold_until_edges(command: Command, commands: list[Command], tasks: list[asyncio.Task],
                           clock_now: Callable[[], datetime],
                           sync: Callable[[], Awaitable[None]]) -> list[asyncio.Task]:
    """Keep `command` and re-sync the device at its start and end (now, if already started).

    Returns the live timer tasks: finished ones are dropped, since a long-lived VEN
    applies many commands.
    """
    now = clock_now()
    if command.end <= now:
        return tasks
    commands.append(command)
    tasks = [t for t in tasks if not t.done()]
    tasks += [asyncio.ensure_future(run_at(clock_now, edge, sync))
              for edge in (command.start, command.end) if edge > now]
    if command.start <= now:
        await sync()
    return tasks
