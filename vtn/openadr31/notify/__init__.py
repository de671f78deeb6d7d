"""Notifications of the 3.1 edge: webhooks (every subscription) and the MQTT notifier.

All notifier state is in the database (vtn/openadr31/notify/outbox.py): a change the store
records (ObjectChange, in the change's own transaction) becomes delivery rows; this loop
claims due rows for a lease, sends them and records the outcome, retrying failures with
exponential backoff up to a bounded number of attempts. A row stays until it is delivered,
so a VTN restart loses nothing, and several VTN processes on one PostgreSQL database send
each row once (rows are claimed with FOR UPDATE SKIP LOCKED and a lease).
"""
from __future__ import annotations

import asyncio
import logging

from flexadr.clock import Clock
from vtn.openadr31.notify import outbox
from vtn.openadr31.notify.mqtt import MqttPublisher
from vtn.openadr31.notify.topics import Topics
from vtn.openadr31.notify.webhook import WebhookSender
from vtn.openadr31.settings import Settings
from vtn.store import Store

log = logging.getLogger(__name__)
PURGE_EVERY = 600        # rounds


class Notifier:
    def __init__(self, store: Store, clock: Clock, settings: Settings):
        self.store, self.clock, self.settings = store, clock, settings.notify
        self.topics = Topics(settings.mqtt.topic_prefix) if settings.mqtt else None
        self.webhooks = WebhookSender(self.settings.timeout.total_seconds(),
                                      self.settings.allow_private_callbacks)
        self.mqtt = (MqttPublisher(settings.mqtt, self.settings.timeout.total_seconds())
                     if settings.mqtt else None)
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.webhooks.start()
        self.task = asyncio.create_task(self._run(), name="oadr31-notifier")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        await self.webhooks.close()
        if self.mqtt is not None:
            await self.mqtt.close()

    async def _run(self) -> None:
        rounds = 0
        while True:
            try:
                busy = await self.round()
                if rounds % PURGE_EVERY == 0:
                    await asyncio.to_thread(outbox.purge, self.store, self.clock.now(),
                                            self.settings.keep)
            except Exception:       # the database away for a moment: log, go on
                log.exception("notifier round failed")
                busy = False
            rounds += 1
            if not busy:
                await asyncio.sleep(self.settings.interval.total_seconds())

    async def round(self) -> bool:
        """Fan out new changes, send what is due; True if there was anything to do."""
        fanned = await asyncio.to_thread(outbox.fan_out, self.store, self.topics,
                                         self.clock.now())
        sent = await asyncio.gather(self._send(outbox.WEBHOOK, self.webhooks),
                                    *([self._send(outbox.MQTT, self.mqtt)] if self.mqtt else []))
        return bool(fanned or any(sent))

    async def _send(self, channel: str, sender) -> int:
        claimed = await asyncio.to_thread(outbox.claim, self.store, channel, self.clock.now(),
                                          self.settings.lease)
        if not claimed:
            return 0
        outcomes = await sender.send_all(claimed)
        for outcome in outcomes:
            if outcome.error is not None:
                log.info("notification %s (%s) not delivered: %s", outcome.delivery_id,
                         channel, outcome.error)
        await asyncio.to_thread(outbox.finish, self.store, claimed, outcomes, self.clock.now(),
                                self.settings)
        return len(claimed)
