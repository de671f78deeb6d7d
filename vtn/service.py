"""The VTN: openleadr's OpenADR 2.0b server with its state in the VTN store.

openleadr keeps registrations, events and reports in process memory and
leaves EiOpt as a stub; every handler here reads and writes the store instead,
so a restart (or a second VTN process on the same database) loses nothing:

- EiRegisterParty: query / create / re-register / cancel, by certificate fingerprint;
- EiEvent: events from the store, oadrCreatedEvent opt answers per event;
- EiOpt: oadrCreateOpt / oadrCancelOpt (event opt-outs, availability schedules);
- EiReport: register (TELEMETRY_USAGE / TELEMETRY_STATUS requested at the program's
  interval, HISTORY_USAGE once for backfill), created, update (idempotent upsert);
- OadrPoll: the VEN's queue of messages, in order, from the database.
"""
from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from aiohttp import web
from openleadr import OpenADRServer, errors
from openleadr.service import VTNService, handler, service

from flexadr import oadr_xml
from flexadr.clock import Clock, SystemClock
from flexadr.signing import MessageSigner
from vtn import metrics
from vtn.lifecycle import advance
from vtn.oadr_events import to_oadr, to_report_request
from vtn.security import MessagePath, ReplayGuard
from vtn.store import COMPLETED, OptSchedule, ReportRegistration, ReportRequest, Store

log = logging.getLogger(__name__)

# What a VEN's report description measures -> the TelemetryPoint column it fills.
MEASUREMENT_COLUMNS = {"RealPower": "kw", "RealEnergy": "kwh", "stateOfCharge": "soc_pct"}
# TELEMETRY_STATUS points by r_id (the telemetry contract with our VEN agent).
STATUS_COLUMNS = {"soc": "soc_pct", "plugged_in": "plugged_in", "online": "online",
                  "manual_override": "manual_override"}
BOOLEAN_COLUMNS = {"plugged_in", "online", "manual_override"}
SI_SCALE = {"p": 1e-12, "n": 1e-9, "micro": 1e-6, "m": 1e-3, "c": 1e-2, "d": 1e-1, "none": 1.0,
            "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, None: 1.0}
TELEMETRY_REPORTS = ("TELEMETRY_USAGE", "TELEMETRY_STATUS")
HISTORY_REPORTS = ("HISTORY_USAGE",)


@dataclass(frozen=True)
class VtnConfig:
    vtn_id: str
    host: str
    port: int
    cert: Path
    key: Path
    ca_file: Path
    poll_interval: timedelta = timedelta(seconds=10)
    telemetry_interval: timedelta = timedelta(minutes=15)
    history_backfill: timedelta = timedelta(days=1)
    admin_token: str | None = None
    public_url: str | None = None     # base of the opt-out links in notices
    admin_port: int | None = None     # also serve admin API / opt-out links here, without mTLS
    tick_interval: timedelta = timedelta(seconds=5)
    # ReplayProtect timestamps accepted from now - replay_past to now + replay_future
    replay_past: timedelta = timedelta(seconds=30)
    replay_future: timedelta = timedelta(seconds=5)


@service("EiOpt")
class OptService(VTNService):
    """EiOpt on the VTN side (openleadr ships an unrouted stub)."""

    def __init__(self, vtn_id: str, vtn: "Vtn"):
        super().__init__(vtn_id)
        self.vtn = vtn

    @handler("oadrCreateOpt")
    async def create_opt(self, payload: dict):
        return self.vtn.on_create_opt(payload)

    @handler("oadrCancelOpt")
    async def cancel_opt(self, payload: dict):
        return self.vtn.on_cancel_opt(payload)


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class Vtn:
    def __init__(self, config: VtnConfig, store: Store, clock: Clock, notifier=None):
        from vtn.notify import NoticeService
        self.config = config
        self.store = store
        self.clock = clock
        self.notices = (NoticeService(store, notifier, clock, config.public_url)
                        if notifier is not None else None)
        self._ticker: asyncio.Task | None = None
        self._ticked = False
        self._last_seen_written: dict[str, datetime] = {}
        self._admin_runner = None
        self.server = OpenADRServer(
            vtn_id=config.vtn_id,
            cert=str(config.cert), key=str(config.key),
            http_cert=str(config.cert), http_key=str(config.key), http_ca_file=str(config.ca_file),
            http_host=config.host, http_port=config.port,
            requested_poll_freq=config.poll_interval,
            ven_lookup=self.ven_lookup,
            show_fingerprint=False,
        )
        for name in ("on_create_party_registration", "on_cancel_party_registration",
                     "on_poll", "on_request_event", "on_created_event"):
            self.server.add_handler(name, getattr(self, name))
        self._route_opt_service()
        self._route_report_service()
        self._count_queries()
        signer = self._own_service_state()
        # Signed timestamps are wall-clock time whatever clock the VTN's logic runs on.
        replay = ReplayGuard(store, SystemClock(), config.replay_past, config.replay_future)
        self.server.app._client_max_size = oadr_xml.MAX_BYTES
        self.server.app.middlewares.append(metrics.middleware)
        self.server.app.middlewares.append(
            MessagePath(config.vtn_id, signer, self.ven_lookup, replay, store.transaction).middleware)
        from vtn.admin import AdminApi
        self.admin = AdminApi(self, config.admin_token)
        self.admin.install(self.server.app)

    def _own_service_state(self) -> MessageSigner:
        """openleadr keeps ven_lookup and the message signer on the VTNService class: the
        last server built wins. Pin both on this server's service instances, so each VTN
        answers from its own store and signs with its own key. The signer parses the key
        once (openleadr re-parses it for every message: ~90 ms with RSA-2048)."""
        signer = MessageSigner.from_files(self.config.cert, self.config.key)
        for service_ in self.server.services.values():
            service_.ven_lookup = self.ven_lookup
            service_._create_message = signer
        return signer

    def _route_opt_service(self) -> None:
        opt_service = OptService(self.config.vtn_id, self)
        self.server.services["opt_service"] = opt_service
        self.server.app.router.add_post(f"{self.server.http_path_prefix}/EiOpt", opt_service.handler)

    def _route_report_service(self) -> None:
        handlers = self.server.services["report_service"].handlers
        handlers["oadrRegisterReport"] = self.register_report
        handlers["oadrUpdateReport"] = self.update_report
        handlers["oadrCreatedReport"] = self.created_report
        handlers["oadrCanceledReport"] = self.canceled_report

    def _count_queries(self) -> None:
        service_ = self.server.services["registration_service"]
        original = service_.handlers["oadrQueryRegistration"]

        async def query_registration(payload: dict):
            metrics.MESSAGES_IN.labels("oadrQueryRegistration").inc()
            return await original(payload)
        service_.handlers["oadrQueryRegistration"] = query_registration

    async def start(self, run_ticker: bool = True) -> None:
        await self.server.run()
        log.info("VTN %s listening on https://%s:%s", self.config.vtn_id, self.config.host,
                 self.config.port)
        if self.config.admin_port:
            app = web.Application()
            self.admin.install(app)
            self._admin_runner = web.AppRunner(app)
            await self._admin_runner.setup()
            await web.TCPSite(self._admin_runner, self.config.host, self.config.admin_port).start()
        if run_ticker:
            self._ticker = asyncio.create_task(self._tick_forever())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
        await self.server.stop()

    async def tick(self) -> None:
        """Apply due event transitions and send due notices (idempotent)."""
        completed = False
        for event_id, status in advance(self.store, self.clock):
            log.info("event %s is now %s", event_id, status)
            completed = completed or status == COMPLETED
        if self.notices is not None:
            await self.notices.dispatch_due(check_connectivity=completed or not self._ticked)
        self._ticked = True

    async def _tick_forever(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:   # noqa: BLE001 - keep the VTN serving; the next tick retries
                log.exception("lifecycle tick failed")
            await asyncio.sleep(self.config.tick_interval.total_seconds())

    def _seen(self, ven_id: str | None) -> None:
        """Record contact; at most once per poll interval (max 5 s) per VEN and process."""
        if not ven_id:
            return
        now = self.clock.now()
        last = self._last_seen_written.get(ven_id)
        if last is not None and now - last < min(self.config.poll_interval, timedelta(seconds=5)):
            return
        self._last_seen_written[ven_id] = now
        self.store.seen(ven_id, now)

    # --- EiRegisterParty ---------------------------------------------------
    def ven_lookup(self, ven_id: str) -> dict | None:
        ven = self.store.ven(ven_id)
        if ven is None:
            return None
        return {"ven_id": ven.ven_id, "ven_name": ven.ven_name,
                "fingerprint": ven.fingerprint, "registration_id": ven.registration_id}

    def on_create_party_registration(self, payload: dict) -> tuple[str, str]:
        metrics.MESSAGES_IN.labels("oadrCreatePartyRegistration").inc()
        fingerprint = payload.get("fingerprint")
        ven = self.store.ven_by_fingerprint(fingerprint) if fingerprint else None
        if ven is None:
            raise errors.NotRegisteredOrAuthorizedError(
                f"certificate {fingerprint} is not enrolled with this VTN")
        if ven.ven_name != payload.get("ven_name"):
            raise errors.NotRegisteredOrAuthorizedError(
                f"certificate {fingerprint} is enrolled as {ven.ven_name!r}, "
                f"not {payload.get('ven_name')!r}")
        if payload.get("ven_id") and payload["ven_id"] != ven.ven_id:
            raise errors.InvalidIdError(f"venID {payload['ven_id']} does not belong to this "
                                        f"certificate")
        # A re-registration that names the current registration keeps it.
        asked = payload.get("registration_id")
        registration_id = (asked if asked and asked == ven.registration_id
                           else str(uuid.uuid4()))
        self.store.set_registration(ven.ven_id, registration_id, self.clock.now())
        self._seen(ven.ven_id)
        log.info("registered VEN %s (%s)", ven.ven_id, ven.device_kind)
        return ven.ven_id, registration_id

    def on_cancel_party_registration(self, payload: dict) -> tuple[str, dict]:
        metrics.MESSAGES_IN.labels("oadrCancelPartyRegistration").inc()
        ven = self.store.ven(payload["ven_id"])
        if payload.get("registration_id") != ven.registration_id:
            raise errors.InvalidIdError(f"registrationID {payload.get('registration_id')} is not "
                                        f"the registration of VEN {ven.ven_id}")
        now = self.clock.now()
        self.store.set_registration(ven.ven_id, None, now)
        for request in self.store.report_requests(ven.ven_id, active_only=True):
            self.store.cancel_report_request(request.report_request_id, now)
        self._seen(ven.ven_id)
        return "oadrCanceledPartyRegistration", {"registration_id": payload.get("registration_id"),
                                                 "ven_id": payload["ven_id"]}

    def request_reregistration(self, ven_id: str) -> None:
        """Queue oadrRequestReregistration: the VEN gets it at its next poll."""
        self.store.enqueue(ven_id, "oadrRequestReregistration", {}, self.clock.now())

    # --- EiEvent / OadrPoll ------------------------------------------------
    def _current_events(self, ven_id: str) -> list:
        now = self.clock.now()
        events = self.store.events_for(ven_id, not_ended_before=now)
        self.store.mark_delivered(ven_id, events)
        return [to_oadr(event, ven_id, now) for event in events]

    def on_poll(self, ven_id: str):
        metrics.MESSAGES_IN.labels("oadrPoll").inc()
        now = self.clock.now()
        self._seen(ven_id)
        while (message := self.store.next_message(ven_id, now)) is not None:
            answer = self._answer(ven_id, message, now)
            if answer is not None:
                metrics.MESSAGES_OUT.labels(answer[0]).inc()
                return answer
        return None

    def _answer(self, ven_id: str, message, now: datetime):
        """The message a queued entry stands for; None if it no longer applies."""
        payload = json.loads(message.payload or "{}")
        kind = message.message_type
        if kind == "oadrDistributeEvent":
            return "oadrDistributeEvent", {"events": self._current_events(ven_id)}
        if kind == "oadrCreateReport":
            request = self.store.report_request(payload["report_request_id"])
            if request is None or request.cancelled_at is not None:
                return None     # superseded (e.g. by a re-registration)
            return "oadrCreateReport", {"report_requests": [self._report_request(request)]}
        if kind == "oadrCancelReport":
            # oadrCanceledReport only lists what stays pending: the request ends when sent.
            self.store.cancel_report_request(payload["report_request_id"], now)
            return "oadrCancelReport", {"report_request_id": payload["report_request_id"],
                                        "report_to_follow": False}
        if kind == "oadrRequestReregistration":
            return "oadrRequestReregistration", {"ven_id": ven_id}
        log.error("unknown queued message %s for %s", kind, ven_id)
        return None

    def on_request_event(self, ven_id: str):
        metrics.MESSAGES_IN.labels("oadrRequestEvent").inc()
        self._seen(ven_id)
        return self._current_events(ven_id) or None

    def on_created_event(self, ven_id: str, event_id: str, opt_type: str) -> None:
        metrics.MESSAGES_IN.labels("oadrCreatedEvent").inc()
        if not self.store.record_opt(ven_id, event_id, opt_type, self.clock.now()):
            raise errors.InvalidIdError(f"event {event_id} was not sent to VEN {ven_id}")
        log.info("VEN %s answered %s to event %s", ven_id, opt_type, event_id)

    # --- EiOpt -------------------------------------------------------------
    def on_create_opt(self, payload: dict) -> tuple[str, dict]:
        metrics.MESSAGES_IN.labels("oadrCreateOpt").inc()
        ven_id, opt_id = payload["ven_id"], payload["opt_id"]
        now = self.clock.now()
        self._seen(ven_id)
        event_id = payload.get("event_id")
        if event_id is not None and self.store.target(event_id, ven_id) is None:
            raise errors.InvalidIdError(f"event {event_id} was not sent to VEN {ven_id}")
        availability = []
        vavailability = payload.get("vavailability") or {}
        components = (vavailability.get("components") or {})
        for component in _as_list(components.get("available") if isinstance(components, dict)
                                  else components):
            properties = component.get("properties", component)
            availability.append((properties["dtstart"],
                                 properties["dtstart"] + properties["duration"]))
        if event_id is None and not availability:
            raise errors.InvalidDataError("an opt needs a qualifiedEventID or a vavailability")
        resources = [t["resource_id"] for t in _as_list(payload.get("targets"))
                     if isinstance(t, dict) and t.get("resource_id")]
        opt = OptSchedule(ven_id=ven_id, opt_id=opt_id, opt_type=payload["opt_type"],
                          opt_reason=payload["opt_reason"], event_id=event_id,
                          modification_number=payload.get("modification_number"),
                          market_context=payload.get("market_context"),
                          resource_ids=",".join(resources), created_at=now)
        if self.store.add_opt(opt, availability) and event_id is not None:
            self.store.record_opt(ven_id, event_id, payload["opt_type"], now, source="eiOpt")
        log.info("VEN %s sent opt %s (%s, event %s)", ven_id, opt_id, payload["opt_type"], event_id)
        metrics.MESSAGES_OUT.labels("oadrCreatedOpt").inc()
        return "oadrCreatedOpt", {"opt_id": opt_id}

    def on_cancel_opt(self, payload: dict) -> tuple[str, dict]:
        metrics.MESSAGES_IN.labels("oadrCancelOpt").inc()
        ven_id, opt_id = payload["ven_id"], payload["opt_id"]
        self._seen(ven_id)
        now = self.clock.now()
        existing = [o for o in self.store.opts(ven_id) if o.opt_id == opt_id]
        if not existing:
            raise errors.InvalidIdError(f"VEN {ven_id} has no opt {opt_id}")
        opt = self.store.cancel_opt(ven_id, opt_id, now)
        if opt.event_id is not None:
            target = self.store.target(opt.event_id, ven_id)
            if target is not None and target.opt_source == "eiOpt" and target.opt_type == opt.opt_type:
                self.store.record_opt(ven_id, opt.event_id, None, now, source="eiOptCancelled")
        metrics.MESSAGES_OUT.labels("oadrCanceledOpt").inc()
        return "oadrCanceledOpt", {"opt_id": opt_id}

    # --- EiReport ----------------------------------------------------------
    def _granularity(self, ven_id: str) -> timedelta:
        ven = self.store.ven(ven_id)
        program = self.store.program(ven.program_id) if ven else None
        if program is not None:
            return timedelta(seconds=program.telemetry_interval_s)
        return self.config.telemetry_interval

    def _report_request(self, request: ReportRequest):
        reading_types = {}   # the VEN's own reading types are not needed back: Direct Read
        return to_report_request(request, reading_types)

    async def register_report(self, payload: dict):
        metrics.MESSAGES_IN.labels("oadrRegisterReport").inc()
        ven_id = payload["ven_id"]
        now = self.clock.now()
        self._seen(ven_id)
        granularity = self._granularity(ven_id)
        requests, history = [], []
        # Requests for report specifiers offered again replace the old ones.
        offered = {report["report_specifier_id"] for report in payload.get("reports") or []}
        for old in self.store.report_requests(ven_id, active_only=True):
            if old.report_specifier_id in offered:
                self.store.cancel_report_request(old.report_request_id, now)
        for report in payload.get("reports") or []:
            name = report["report_name"].removeprefix("METADATA_")
            rows = []
            for description in _as_list(report.get("report_descriptions")):
                measurement = description.get("measurement") or {}
                sampling = description.get("sampling_rate") or {}
                source = description.get("report_data_source") or {}
                rows.append(ReportRegistration(
                    ven_id=ven_id, report_specifier_id=report["report_specifier_id"],
                    report_name=name, r_id=description["r_id"],
                    resource_id=source.get("resource_id") if isinstance(source, dict) else None,
                    measurement=measurement.get("description") if measurement else "Status",
                    unit=measurement.get("unit") if measurement else None,
                    scale=measurement.get("scale") if measurement else None,
                    min_period_s=_seconds(sampling.get("min_period")),
                    max_period_s=_seconds(sampling.get("max_period")),
                    registered_at=now))
            self.store.register_report(rows)
            if not rows or name not in TELEMETRY_REPORTS + HISTORY_REPORTS:
                continue
            if name in HISTORY_REPORTS:
                request = ReportRequest(
                    report_request_id=f"hist-{uuid.uuid4().hex[:16]}", ven_id=ven_id,
                    report_specifier_id=report["report_specifier_id"], report_name=name,
                    r_ids=",".join(r.r_id for r in rows), granularity_s=0,
                    report_back_duration_s=self.config.history_backfill.total_seconds(),
                    one_shot=True, created_at=now)
                history.append(request)
                continue
            interval = granularity
            for row in rows:
                if row.min_period_s is not None:
                    interval = max(interval, timedelta(seconds=row.min_period_s))
                if row.max_period_s is not None:
                    interval = min(interval, timedelta(seconds=row.max_period_s))
            request = ReportRequest(
                report_request_id=f"tele-{uuid.uuid4().hex[:16]}", ven_id=ven_id,
                report_specifier_id=report["report_specifier_id"], report_name=name,
                r_ids=",".join(r.r_id for r in rows), granularity_s=interval.total_seconds(),
                report_back_duration_s=interval.total_seconds(), created_at=now)
            requests.append(request)
        # One request per message: openleadr's client (0.5.36) pools the r_ids of all the
        # requests of one message. The first goes back in oadrRegisteredReport, the others
        # (then the one-shot backfill) as oadrCreateReport at the following polls.
        for i, request in enumerate(requests + history):
            self.store.add_report_request(request, queue_at=now if i > 0 else None)
        metrics.MESSAGES_OUT.labels("oadrRegisteredReport").inc()
        return "oadrRegisteredReport", {
            "report_requests": [self._report_request(r) for r in requests[:1]]}

    async def created_report(self, payload: dict):
        metrics.MESSAGES_IN.labels("oadrCreatedReport").inc()
        ven_id = payload["ven_id"]
        self._seen(ven_id)
        ids = [p["report_request_id"] for p in _as_list(payload.get("pending_reports"))]
        self.store.acknowledge_report_requests(ven_id, ids, self.clock.now())
        return "oadrResponse", {}

    async def canceled_report(self, payload: dict):
        metrics.MESSAGES_IN.labels("oadrCanceledReport").inc()
        self._seen(payload["ven_id"])
        return "oadrResponse", {}

    def cancel_report(self, report_request_id: str) -> None:
        """Ask the VEN (at its next poll) to stop sending a report."""
        request = self.store.report_request(report_request_id)
        self.store.enqueue(request.ven_id, "oadrCancelReport",
                           {"report_request_id": report_request_id}, self.clock.now())

    async def update_report(self, payload: dict):
        metrics.MESSAGES_IN.labels("oadrUpdateReport").inc()
        ven_id = payload["ven_id"]
        now = self.clock.now()
        self._seen(ven_id)
        stored = 0
        for report in payload.get("reports") or []:
            request = self.store.report_request(report.get("report_request_id"))
            if request is None or request.ven_id != ven_id:
                raise errors.InvalidIdError(
                    f"reportRequestID {report.get('report_request_id')} was not requested "
                    f"from VEN {ven_id}")
            points = self._points(ven_id, request, _as_list(report.get("intervals")))
            stored += self.store.record_points(ven_id, points, received_at=now)
            if points:
                latest = max(end for _, end, _ in points)
                metrics.TELEMETRY_LAG.observe(max((now - latest).total_seconds(), 0.0))
        metrics.TELEMETRY_POINTS.inc(stored)
        metrics.MESSAGES_OUT.labels("oadrUpdatedReport").inc()
        return "oadrUpdatedReport", {}

    def _points(self, ven_id: str, request: ReportRequest,
                intervals: list[dict]) -> list[tuple[datetime, datetime, dict]]:
        registrations = {r.r_id: r for r in self.store.report_registrations(ven_id)
                         if r.report_specifier_id == request.report_specifier_id}
        default = (timedelta(seconds=request.granularity_s) if request.granularity_s
                   else self._granularity(ven_id))
        by_start: dict[datetime, tuple[datetime, dict]] = {}
        for interval in intervals:
            start = interval["dtstart"]
            duration = interval.get("duration") or default
            if duration <= timedelta(0):
                raise errors.InvalidDataError(f"interval at {start}: duration {duration} "
                                              f"is not positive")
            value_payload = interval.get("report_payload") or {}
            r_id = value_payload.get("r_id")
            column, value = self._column(request.report_name, registrations.get(r_id), r_id,
                                         value_payload.get("value"))
            end, values = by_start.setdefault(start, (start + duration, {}))
            if column is not None:
                values[column] = value
        return [(start, end, values) for start, (end, values) in sorted(by_start.items())]

    @staticmethod
    def _column(report_name: str, registration: ReportRegistration | None, r_id: str | None,
                value) -> tuple[str | None, object]:
        if value is None:
            return None, None
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise errors.InvalidDataError(f"r_id {r_id}: value {value!r} is not a number")
        column = None
        if registration is not None and registration.measurement in MEASUREMENT_COLUMNS:
            column = MEASUREMENT_COLUMNS[registration.measurement]
        elif r_id in STATUS_COLUMNS:
            column = STATUS_COLUMNS[r_id]
        elif r_id in ("kw", "kwh"):
            column = r_id
        if column is None:
            return None, None
        if column in BOOLEAN_COLUMNS:
            return column, number >= 0.5
        if column in ("kw", "kwh") and registration is not None:
            # W / Wh with an SI scale -> kW / kWh
            number = number * SI_SCALE.get(registration.scale, 1.0) / 1000.0
        return column, number


def _seconds(value) -> float | None:
    return value.total_seconds() if isinstance(value, timedelta) else None
