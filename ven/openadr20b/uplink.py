"""Sends the outbox to the VTN, oldest first, and deletes only what was acknowledged."""
from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from ven.openadr20b.client import FlexClient
from ven.store import LocalStore, OutboxInterval

log = logging.getLogger(__name__)

USAGE = "TELEMETRY_USAGE"
STATUS = "TELEMETRY_STATUS"
SETTLE_POLLS = 3      # polls a VTN gets to request each offered report (one per poll)
INVALID_DATA = 454    # oadrUpdatedReport: some values quarantined, the rest stored


def _usage(row: OutboxInterval) -> dict:
    return {"kw": row.kw, "kwh": row.kwh, "soc": row.soc_pct}


def _status(row: OutboxInterval) -> dict:
    """oadrPayloadResourceStatus, and plugged_in, which it has no field for (a status point
    carries no itemBase, so its rID names it: the VTN's documented status names)."""
    plugged = None if row.plugged_in is None else float(row.plugged_in)
    return {"status": resource_status(row.online, row.manual_override), "plugged_in": plugged}


def resource_status(online: bool, manual_override: bool) -> dict:
    """A TELEMETRY_STATUS value as oadrPayloadResourceStatus (rendered by UPDATE_REPORT)."""
    return {"online": online, "manual_override": manual_override}


class Uplink:
    def __init__(self, client: FlexClient, store: LocalStore, batch: int = 96,
                 min_backoff: timedelta = timedelta(seconds=1),
                 max_backoff: timedelta = timedelta(seconds=60)):
        self.client = client
        self.store = store
        self.batch = batch
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.wake = asyncio.Event()

    async def flush_once(self) -> int | None:
        """Send one batch; the number acknowledged, or None when the VTN did not acknowledge."""
        rows = self.store.oldest_intervals(self.batch)
        if not rows:
            return 0
        if USAGE not in self.client.requested:
            return None      # not registered yet, or the VTN has not asked: keep everything
        if self.client.waiting_for_requests(self._settle_s()):
            # a row acknowledged now would never carry its status flags
            return None
        for name, values in ((USAGE, _usage), (STATUS, _status)):
            if name not in self.client.requested:
                continue     # a VTN that does not want status reports gets none
            batch = [(row.interval_start, row.interval_end - row.interval_start, values(row))
                     for row in rows]
            sent = await self.client.send_intervals(name, batch)
            if sent.code == INVALID_DATA:
                # The VTN kept all of it (stored, or quarantined with the reason): a
                # re-send cannot change its answer, so these rows are done.
                log.warning("VEN %s: the VTN quarantined some of %s: %s", self.client.ven_name,
                            name, sent.detail)
            elif not sent.ok:
                log.warning("VEN %s: %s not sent (%s); %d intervals wait in the outbox",
                            self.client.ven_name, name, sent.detail, self.store.backlog())
                return None
        self.store.acknowledge([row.id for row in rows])
        return len(rows)

    def _settle_s(self) -> float:
        """How long a VTN may take to request every offered report: a few polls."""
        poll = self.client.poll_frequency or timedelta(seconds=10)
        return SETTLE_POLLS * poll.total_seconds()

    async def run(self) -> None:
        backoff = self.min_backoff
        while True:
            self.wake.clear()    # before reading the outbox, so nothing added meanwhile is missed
            sent = await self.flush_once()
            if sent is None:
                await self._wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                continue
            backoff = self.min_backoff
            if sent == 0:
                await self._wait(None)

    async def _wait(self, timeout: timedelta | None) -> None:
        # asyncio.timeout, not wait_for: wait_for can swallow a cancellation (bpo-42130).
        try:
            async with asyncio.timeout(timeout.total_seconds() if timeout else None):
                await self.wake.wait()
        except TimeoutError:
            pass
