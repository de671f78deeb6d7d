"""The agent's 3.1 link: token, its VEN and resource, a subscription to its own webhook,
events read (paged) at start and every `reread` (so it works without notifications and
after a restart), and the outbox posted as reports.

- An event is handed to the core when it is new or its modificationDateTime changed; an
  event the VTN no longer shows (3.1 DELETE is the 2.0b cancellation) is handed in
  cancelled.
- A webhook notification (bearer token checked) hands its event in at once.
- A 3.1 report answers an event (eventID is required), so each outbox interval goes
  with the event in force then, else the latest one this VEN was sent; before its first
  event a VEN's telemetry waits in the outbox. Rows are deleted once the VTN answered 201.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
from dataclasses import replace
from datetime import timedelta
from typing import TYPE_CHECKING, Sequence

from aiohttp import web

from flexadr.oadr3_time import iso, iso_duration
from ven import events
from ven.events import CANCELLED, RESOURCE_ID, Event
from ven.openadr31.client import Client31, Refused, VtnUnreachable
from ven.openadr31.events import EventError, from_31
from ven.openadr31.settings import NOTIFY_PATH
from ven.policy import Opt
from ven.store import LocalStore, OutboxInterval

if TYPE_CHECKING:
    from ven.agent import AgentConfig, Core

log = logging.getLogger(__name__)

RETRY = timedelta(seconds=1)            # first wait after a failure; doubles up to `reread`
BATCH = 96                              # outbox intervals per round
DESCRIPTORS = [{"objectType": "REPORT_PAYLOAD_DESCRIPTOR", "payloadType": kind, "units": unit}
               for kind, unit in (("USAGE", "KWH"), ("DEMAND", "KW"))]


def _payloads(row: OutboxInterval) -> list[dict]:
    """USAGE (kWh into the device), DEMAND (kW into it), STORAGE_CHARGE_LEVEL (a 0..1
    fraction) and OPERATING_STATE, as vtn/openadr31/telemetry.py reads them."""
    payloads = [{"type": kind, "values": [value]} for kind, value in (
        ("USAGE", row.kwh), ("DEMAND", row.kw),
        ("STORAGE_CHARGE_LEVEL", None if row.soc_pct is None else row.soc_pct / 100))
        if value is not None]
    payloads.append({"type": "OPERATING_STATE", "values": ["NORMAL" if row.online else "ERROR"]})
    return payloads


class Link31:
    def __init__(self, config: "AgentConfig", store: LocalStore, core: "Core"):
        self.config, self.store, self.core = config, store, core
        self.settings = config.oadr31
        self.client = Client31(config.vtn_url, self.settings, config.ca_file, config.cert,
                               config.key)
        self._ven_id: str | None = None
        self._seen: dict[str, str] = {}          # event id -> modificationDateTime handed in
        self._known: dict[str, Event] = {}       # events the VTN shows this VEN now
        self._read_now = asyncio.Event()
        self._outbox = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._webhook: web.AppRunner | None = None
        self.webhook_url: str | None = None
        # The webhook's bearer token: stable across restarts, known only to this client.
        self.webhook_token = hmac.new(self.settings.client_secret.encode(),
                                      b"flexadr webhook", hashlib.sha256).hexdigest()
        self.reads = 0                           # complete reads of the events (for tests)

    @property
    def ven_id(self) -> str | None:
        return self._ven_id

    @property
    def registered(self) -> bool:
        return self._ven_id is not None

    async def start(self) -> None:
        if self.settings.webhook_host is not None:
            await self._serve_webhook()
        self._tasks = [asyncio.create_task(self._read_loop(), name=f"{self.config.ven_name}-31read"),
                       asyncio.create_task(self._uplink(), name=f"{self.config.ven_name}-31uplink")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._webhook is not None:
            await self._webhook.cleanup()
        await self.client.close()

    def outbox_changed(self) -> None:
        self._outbox.set()

    async def tell_opt(self, event_id: str, modification_number: int, opt: Opt,
                       override: bool) -> None:
        """3.1 has no opt: the VTN learns what the device did from its reports."""
        log.debug("VEN %s %s event %s (3.1 has no opt to send)", self.config.ven_name, opt,
                  event_id)

    # --- registration ----------------------------------------------------------------
    async def _register(self) -> None:
        name = self.config.ven_name
        vens = await self.client.read_all("/vens", venName=name)
        if not vens:
            answer = await self.client.call("POST", "/vens", json={
                "objectType": "VEN_VEN_REQUEST", "venName": name})
            if answer.status != 201:
                raise Refused(answer, f"POST /vens {name}")
            vens = [answer.body]
        ven_id = vens[0]["id"]
        resources = await self.client.read_all("/resources", venID=ven_id,
                                               resourceName=RESOURCE_ID)
        if not resources:
            answer = await self.client.call("POST", "/resources", json={
                "objectType": "VEN_RESOURCE_REQUEST", "resourceName": RESOURCE_ID,
                "venID": ven_id})
            if answer.status != 201:
                raise Refused(answer, f"POST /resources {RESOURCE_ID}")
        programs = await self.client.read_all("/programs")
        if self.webhook_url is not None:
            try:
                await self._subscribe()
            except Refused as err:
                # e.g. a callback address the VTN will not call: the re-read still brings
                # every event, only later.
                log.warning("VEN %s: no webhook subscription (%s); re-reading every %s",
                            name, err, self.settings.reread)
        self._ven_id = ven_id
        log.info("VEN %s registered over 3.1 as %s (programs: %s)", name, ven_id,
                 ", ".join(p["programName"] for p in programs) or "none")

    async def _subscribe(self) -> None:
        """One subscription to this agent's webhook for events; the same one after a restart."""
        operation = {"objects": ["EVENT"], "operations": ["CREATE", "UPDATE", "DELETE"],
                     "callbackUrl": self.webhook_url, "bearerToken": self.webhook_token}
        body = {"clientName": self.config.ven_name, "objectOperations": [operation]}
        mine = [s for s in await self.client.read_all("/subscriptions",
                                                      clientName=self.config.ven_name)
                if any(o.get("callbackUrl") == self.webhook_url
                       for o in s.get("objectOperations", ()))]
        if mine and mine[0]["objectOperations"] == [operation]:
            return
        method, path = ("PUT", f"/subscriptions/{mine[0]['id']}") if mine \
            else ("POST", "/subscriptions")
        answer = await self.client.call(method, path, json=body)
        if answer.status not in (200, 201):
            raise Refused(answer, f"{method} {path}")

    # --- events ----------------------------------------------------------------------
    async def _read_loop(self) -> None:
        retry = RETRY
        while True:
            try:
                if not self.registered:
                    await self._register()
                await self._read_events()
                retry = RETRY
                wait = self.settings.reread
            except Exception as err:    # one bad read must not stop the next ones
                if isinstance(err, (VtnUnreachable, Refused)):
                    log.warning("VEN %s: 3.1 VTN: %s; again in %s", self.config.ven_name, err,
                                retry)
                else:
                    log.exception("VEN %s: reading events failed", self.config.ven_name)
                wait, retry = retry, min(retry * 2, self.settings.reread)
            self._read_now.clear()
            try:
                async with asyncio.timeout(wait.total_seconds()):
                    await self._read_now.wait()
            except TimeoutError:
                pass

    async def _read_events(self) -> None:
        bodies = await self.client.read_all("/events")
        shown = set()
        for body in bodies:
            shown.add(body.get("id"))
            await self._handle(body)
        for stored in self.store.events_not_ended(self.core_now()):
            if stored.event_id not in shown and not stored.cancelled:
                await self._cancel(stored.event_id)
        self.reads += 1
        self._outbox.set()            # reports may have waited for an event to answer

    def core_now(self):
        return self.core.clock.now()

    async def _handle(self, body: dict) -> None:
        event_id, version = body.get("id"), body.get("modificationDateTime")
        if self._seen.get(event_id) == version:
            return
        self._seen[event_id] = version    # before the await: a webhook and a read race here
        try:
            event = from_31(body, self.core_now(), self.config.ven_name, self._ven_id)
        except EventError as err:
            log.error("VEN %s: cannot read event: %s", self.config.ven_name, err)
            return
        self._known[event.event_id] = event
        await self.core.on_event(event)

    async def _cancel(self, event_id: str) -> None:
        self._known.pop(event_id, None)
        self._seen.pop(event_id, None)
        stored = self.store.event(event_id)
        if stored is not None and not stored.cancelled:
            await self.core.on_event(replace(events.from_json(stored.event_json),
                                             status=CANCELLED))

    # --- webhook ---------------------------------------------------------------------
    async def _serve_webhook(self) -> None:
        app = web.Application()
        app.router.add_post(NOTIFY_PATH, self._notified)
        self._webhook = web.AppRunner(app, access_log=None)
        await self._webhook.setup()
        site = web.TCPSite(self._webhook, self.settings.webhook_host, self.settings.webhook_port)
        await site.start()
        port = self._webhook.addresses[0][1]
        self.webhook_url = self.settings.webhook_url or \
            f"http://{self.settings.webhook_host}:{port}{NOTIFY_PATH}"
        log.info("VEN %s: 3.1 webhook at %s", self.config.ven_name, self.webhook_url)

    async def _notified(self, request: web.Request) -> web.Response:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.webhook_token}".encode()):
            return web.json_response({"title": "Unauthorized", "status": 401,
                                      "detail": "no or a wrong bearer token"}, status=401)
        try:
            notification = await request.json()
            kind, operation = notification["objectType"], notification["operation"]
            body = notification["object"]
        except (ValueError, KeyError, TypeError):
            return web.json_response({"title": "Bad Request", "status": 400,
                                      "detail": "not a notification object"}, status=400)
        if kind == "EVENT" and isinstance(body, dict):
            if operation == "DELETE":
                await self._cancel(body.get("id"))
            else:
                await self._handle(body)
        return web.json_response({})

    # --- reports ---------------------------------------------------------------------
    async def _uplink(self) -> None:
        retry = RETRY
        while True:
            self._outbox.clear()    # before reading the outbox, so nothing added meanwhile is missed
            try:
                sent = await self._send_once() if self.registered else 0
                retry = RETRY
            except Exception as err:    # the VTN away or refusing, or worse: keep the rows
                if isinstance(err, (VtnUnreachable, Refused)):
                    log.warning("VEN %s: reports not sent (%s); %d intervals wait in the "
                                "outbox", self.config.ven_name, err, self.store.backlog())
                else:
                    log.exception("VEN %s: sending reports failed", self.config.ven_name)
                await asyncio.sleep(retry.total_seconds())
                retry = min(retry * 2, self.settings.reread)
                continue
            if not sent:
                await self._outbox.wait()

    async def _send_once(self) -> int:
        """Post one batch (a report per event it answers); the number of rows done."""
        rows = self.store.oldest_intervals(BATCH)
        groups: dict[str, list[OutboxInterval]] = {}
        for row in rows:
            event_id = self._answered_event(row)
            if event_id is None:
                break                 # oldest first: later rows wait too
            groups.setdefault(event_id, []).append(row)
        done = 0
        for event_id, group in groups.items():
            answer = await self.client.call("POST", "/reports", json=self._report(event_id, group))
            if answer.status == 400 and _names_field(answer.body, "eventID"):
                # The event went (deleted) since the last read: read again, then retry.
                self._known.pop(event_id, None)
                self._read_now.set()
                raise Refused(answer, "POST /reports")
            if answer.status == 400:
                # Our own values refused: a re-send cannot change the answer, so they are done.
                log.error("VEN %s: the VTN refused a report: %s", self.config.ven_name,
                          answer.body)
            elif answer.status != 201:
                raise Refused(answer, "POST /reports")
            self.store.acknowledge([row.id for row in group])
            done += len(group)
        return done

    def _answered_event(self, row: OutboxInterval) -> str | None:
        """The event in force at the interval, else the latest one begun before it, else the first."""
        if not self._known:
            return None
        by_start = sorted(self._known.values(), key=lambda e: e.start)
        for event in by_start:
            if event.start <= row.interval_start < event.end:
                return event.event_id
        begun = [e for e in by_start if e.start <= row.interval_start]
        return (begun[-1] if begun else by_start[0]).event_id

    def _report(self, event_id: str, rows: Sequence[OutboxInterval]) -> dict:
        return {"eventID": event_id, "clientName": self.config.ven_name,
                "reportName": f"{self.config.ven_name} telemetry",
                "payloadDescriptors": DESCRIPTORS,
                "resources": [{"resourceName": RESOURCE_ID, "intervals": [
                    {"id": n, "intervalPeriod": {"start": iso(row.interval_start),
                                                 "duration": iso_duration(
                                                     row.interval_end - row.interval_start)},
                     "payloads": _payloads(row)} for n, row in enumerate(rows)]}]}


def _names_field(body, field: str) -> bool:
    return isinstance(body, dict) and any(e.get("field") == field for e in body.get("errors", ()))
