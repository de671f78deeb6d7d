"""Which VTN worker runs the singleton loops (lifecycle ticker, notices, planner).

With several workers on one PostgreSQL database, exactly one holds a session
advisory lock on a connection of its own; it leads while that connection lives.
A worker that is killed loses its connection, PostgreSQL ends the session and
frees the lock, and another worker (each tries every `retry`) takes it over:
the gap is at most `retry` plus the time PostgreSQL needs to see the socket
close (immediate for a killed process on the same host).

A leader whose connection breaks stops leading at its next check; until then
two workers may tick at once, which the store tolerates (every transition is
guarded by its old state, every notice is unique).

On SQLite there is one process: it leads.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from datetime import timedelta
from typing import Awaitable, Callable

log = logging.getLogger(__name__)
# One key for all flexadr VTNs on a database (the lock is per database).
LOCK_KEY = 0x666C6578      # "flex"
APPLICATION_NAME = "flexadr-leader"
CHECK_TIMEOUT_S = 10.0


def application_name(pid: int | None = None) -> str:
    """The leader connection's name in pg_stat_activity: says which worker leads."""
    return f"{APPLICATION_NAME}-{pid or os.getpid()}"


class Leadership:
    """`leading` says whether this process runs the singleton loops now."""

    def __init__(self, database_url: str, retry: timedelta = timedelta(seconds=2),
                 on_gain: Callable[[], Awaitable[None]] | None = None):
        self.url = database_url
        self.retry = retry.total_seconds()
        self.on_gain = on_gain
        self.postgresql = database_url.startswith(("postgresql", "postgres"))
        self.leading = not self.postgresql
        self._connection = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        """On SQLite this process leads from the start: its loops' first rounds are its own."""
        if self.postgresql:
            self._task = asyncio.create_task(self._run(), name="leadership")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._drop()

    async def _run(self) -> None:
        while True:
            try:
                if self.leading:
                    await self._still_held()
                else:
                    await self._try()
            except Exception as err:   # noqa: BLE001 - the database away: not leading, retry
                if self.leading:
                    log.error("leadership lost (pid %d): %r", os.getpid(), err)
                self.leading = False
                await self._drop()
            await asyncio.sleep(self.retry)

    async def _try(self) -> None:
        import psycopg
        if self._connection is None:
            self._connection = await psycopg.AsyncConnection.connect(
                _libpq_url(self.url), autocommit=True, application_name=application_name(),
                connect_timeout=max(1, int(self.retry)))
        cursor = await self._connection.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
        (got,) = await cursor.fetchone()
        if got:
            self.leading = True
            log.info("leading the singleton loops (pid %d)", os.getpid())
            await self._gained()

    async def _gained(self) -> None:
        """Run the loops' first round now, not at their next period."""
        if self.on_gain is None:
            return
        try:
            await self.on_gain()
        except Exception:   # noqa: BLE001 - a failing round must not give up the lock
            log.exception("first round as leader failed")

    async def _still_held(self) -> None:
        # The lock lives as long as the session: a round trip proves the session lives.
        # Generous: a busy event loop must not give the lock away for nothing.
        async with asyncio.timeout(max(CHECK_TIMEOUT_S, self.retry * 2)):
            await self._connection.execute("SELECT 1")

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                await connection.close()


def leader_pid(database_url: str) -> int | None:
    """The OS pid of the worker that leads now (from its connection's application_name)."""
    import psycopg
    with psycopg.connect(_libpq_url(database_url), autocommit=True) as connection:
        row = connection.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 AND l.objid = %s"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (LOCK_KEY,)).fetchone()
    if row is None or not row[0].startswith(APPLICATION_NAME + "-"):
        return None
    return int(row[0].rsplit("-", 1)[1])


def _libpq_url(url: str) -> str:
    """psycopg wants plain postgresql://, not SQLAlchemy's postgresql+psycopg://."""
    scheme, rest = url.split("://", 1)
    return "postgresql://" + rest if scheme.startswith("postgres") else url
