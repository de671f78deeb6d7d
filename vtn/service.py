"""The VTN: openleadr's OpenADR 2.0b server with its state in the VTN store.

openleadr keeps registrations, events and reports in process memory and
leaves EiOpt as a stub; every handler here reads and writes the store instead,
so a restart (or a second VTN process on the same database) loses nothing:

- EiRegisterParty: query / create / re-register / cancel, by certificate fingerprint;
- EiEvent: events from the store, oadrCreatedEvent opt answers per event;
- EiOpt: oadrCreateOpt / oadrCancelOpt (event opt-outs, availability schedules);
- EiReport: register (TELEMETRY_USAGE / TELEMETRY_STATUS requested at the program's
  interval, HISTORY_USAGE once for backfill), created, update (stored by the meaning
  the VEN declared, checked, with revisions and quarantine: vtn/telemetry.py);
- OadrPoll: the VEN's queue of messages, in order, from the database.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import ssl
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from typing import Callable

from aiohttp import web
from openleadr import OpenADRServer, errors
from openleadr.service import VTNService, handler, service

from flexadr import oadr_xml, tls
from flexadr.clock import Clock, SystemClock
from flexadr.signing import MessageSigner
from flexadr.tls import CertKey, TlsProfile
from flexadr.xmpp import XmppSettings
from vtn import audit, metrics, push, telemetry, ven_control, xmpp
from vtn.leadership import Leadership
from vtn.lifecycle import advance
from vtn.oadr_events import in_profile_order, to_oadr, to_report_request
from vtn.poll_rate import PollRate
from vtn.security import MessagePath, PartlyRefused, ReplayGuard
from vtn.store import (COMPLETED, OptSchedule, ReportRegistration, ReportRequest, Store,
                       TelemetryQuarantine, TelemetryRaw)

log = logging.getLogger(__name__)

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
    admin_port: int | None = None     # admin API, /health and opt-out links (no admin without it)
    tick_interval: timedelta = timedelta(seconds=5)
    tls_profile: TlsProfile = "default"
    # A second server certificate of the other key type (RSA beside ECC): the profile
    # wants both, and the suite the client offers picks one.
    alt_cert: Path | None = None
    alt_key: Path | None = None
    admin_host: str = "127.0.0.1"     # the admin listener's own address, apart from `host`
    admin_cert: Path | None = None    # with admin_key: the admin listener speaks HTTPS
    admin_key: Path | None = None
    crl_file: Path | None = None      # revoked client certificates, refused at the handshake
    webhook_allow_private: bool = False   # allow webhooks to loopback / private addresses
    # ReplayProtect timestamps accepted from now - replay_past to now + replay_future
    replay_past: timedelta = timedelta(seconds=30)
    replay_future: timedelta = timedelta(seconds=5)
    push_settings: push.PushSettings = push.PushSettings()   # delivery to push VENs (vtn/push.py)
    xmpp: XmppSettings | None = None     # the XMPP transport (vtn/xmpp.py); None: not served
    # How long a VEN's idle connection stays open; None: twice the poll interval plus 10 s,
    # so a VEN polling on time reuses its connection instead of a TLS handshake per poll.
    idle_connection: timedelta | None = None

    def idle_connection_s(self) -> float:
        if self.idle_connection is not None:
            return self.idle_connection.total_seconds()
        return 2 * self.poll_interval.total_seconds() + 10

    def tls_identities(self) -> list[CertKey]:
        identities = [CertKey(self.cert, self.key)]
        if self.alt_cert is not None and self.alt_key is not None:
            identities.append(CertKey(self.alt_cert, self.alt_key))
        return identities


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


def served_transports(config: "VtnConfig") -> tuple[str, ...]:
    """What this VTN serves: simple HTTP (pull or push), and XMPP when configured. A VEN
    asking for anything else would be told it is registered and then never hear from us."""
    return ("simpleHttp", "xmpp") if config.xmpp is not None else ("simpleHttp",)


def _check_exchange(payload: dict, served: tuple[str, ...], ven_id: str) -> str | None:
    """The push address of a registration (None: a pull VEN); refuse what is not served.
    A registration asks for the transport that carries it: an XMPP VEN is known by the
    JID it registers from (vtn/xmpp.py)."""
    transport = payload.get("transport_name")
    if transport not in served:
        log.warning("refused registration of %s: transport %s is not served",
                    payload.get("ven_name"), transport)
        raise errors.NotAllowedError(f"transport {transport!r} is not served by this VTN; "
                                     f"use {' or '.join(served)}")
    carrier = payload.get("carried_by")
    carried = carrier.transport if carrier is not None else "simpleHttp"
    if transport != carried:
        raise errors.NotRegisteredOrAuthorizedError(
            f"a registration for transport {transport} is sent over it, not over {carried}")
    if transport == "xmpp":
        try:
            return xmpp.push_address(carrier.address, payload.get("transport_address"), ven_id)
        except xmpp.NotTheSender as err:
            raise errors.NotRegisteredOrAuthorizedError(_safe(str(err)))
        except ValueError as err:
            raise errors.InvalidDataError(_safe(f"oadrTransportAddress: {err}"))
    if payload.get("http_pull_model") is not False:
        return None
    try:
        return push.check_address(payload.get("transport_address"))
    except ValueError as err:
        log.warning("refused push registration of %s: %s", payload.get("ven_name"), err)
        raise errors.InvalidDataError(_safe(f"oadrTransportAddress: {err}"))


def _polls(payload: dict) -> bool:
    return payload.get("transport_name") != "xmpp" and payload.get("http_pull_model") is not False


def _nothing() -> None:
    """Nothing to record when a message is handed out."""


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


class Vtn:
    def __init__(self, config: VtnConfig, store: Store, clock: Clock, notifier=None,
                 leadership: Leadership | None = None):
        from vtn.notify import NoticeService
        self.config = config
        self.leadership = leadership     # None: this process alone runs the lifecycle
        self.store = store
        self.clock = clock
        self.notices = (NoticeService(store, notifier, clock, config.public_url)
                        if notifier is not None else None)
        self._ticker: asyncio.Task | None = None
        self._ticked = False
        self._last_seen_written: dict[str, datetime] = {}
        self.poll_rate = PollRate(config.poll_interval)
        self._too_fast_logged: set[str] = set()
        self._raw_logged: set[tuple[str, str | None]] = set()   # log raw values once per VEN and rID
        self._admin_runner = None
        self.planner_settings = None      # the [planner] of `vtn serve`: the console's Tomorrow page
        self._crl_mtime: float | None = None
        self.server = OpenADRServer(
            vtn_id=config.vtn_id,
            cert=str(config.cert), key=str(config.key),
            http_cert=str(config.cert), http_key=str(config.key), http_ca_file=str(config.ca_file),
            http_host=config.host, http_port=config.port,
            requested_poll_freq=config.poll_interval,
            ven_lookup=self.ven_lookup,
            show_fingerprint=False,
        )
        self.server.ssl_context = tls.server_context(config.tls_profile, config.tls_identities(),
                                                     config.ca_file)
        self._load_crl()
        for name in ("on_create_party_registration", "on_cancel_party_registration",
                     "on_poll", "on_created_event"):
            self.server.add_handler(name, getattr(self, name))
        self.server.services["registration_service"].handlers[
            "oadrCanceledPartyRegistration"] = self.canceled_party_registration
        self._route_opt_service()
        self._route_report_service()
        self.server.services["event_service"].handlers["oadrRequestEvent"] = self.request_event
        self._count_queries()
        self._answer_push_registrations()
        self.signer = signer = self._own_service_state()
        # Signed timestamps are wall-clock time whatever clock the VTN's logic runs on.
        self.replay = replay = ReplayGuard(store, SystemClock(), config.replay_past,
                                           config.replay_future)
        self.message_path = MessagePath(config.vtn_id, signer, self.ven_lookup, replay,
                                        store.transaction, self.server.services)
        transports = {"https": push.HttpsPush(CertKey(config.cert, config.key), config.ca_file,
                                              config.tls_profile, config.push_settings)}
        self.xmpp = None
        if config.xmpp is not None:
            self.xmpp = transports["xmpp"] = xmpp.XmppEdge(
                self, config.xmpp, config.push_settings.timeout.total_seconds())
        self.push = push.PushDelivery(self, push.BySchemes(transports), config.push_settings,
                                      SystemClock())
        self.server.app._client_max_size = oadr_xml.MAX_BYTES
        self.server.app.middlewares.append(metrics.middleware)
        self.server.app.middlewares.append(self.message_path.middleware)
        from vtn.admin import AdminApi
        self.admin = AdminApi(self, config.admin_token)    # on its own listener (start)

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
            answer_type, answer = await original(payload)
            answer["profiles"] = [{"profile_name": "2.0b", "transports": [
                {"transport_name": name} for name in served_transports(self.config)]}]
            return answer_type, answer
        service_.handlers["oadrQueryRegistration"] = query_registration

    def _answer_push_registrations(self) -> None:
        """A push or XMPP VEN is told no poll frequency: it does not poll."""
        service_ = self.server.services["registration_service"]
        original = service_.handlers["oadrCreatePartyRegistration"]

        async def create_party_registration(payload: dict):
            answer_type, answer = await original(payload)
            if not _polls(payload):
                answer.pop("requested_oadr_poll_freq", None)
            return answer_type, answer
        service_.handlers["oadrCreatePartyRegistration"] = create_party_registration

    async def start(self, run_ticker: bool = True, reuse_port: bool = False) -> None:
        """reuse_port: several worker processes listen on the port (vtn serve --workers)."""
        self.server.app_runner = web.AppRunner(self.server.app,
                                               keepalive_timeout=self.config.idle_connection_s())
        await self.server.app_runner.setup()
        await web.TCPSite(self.server.app_runner, self.config.host, self.config.port,
                          ssl_context=self.server.ssl_context, reuse_port=reuse_port).start()
        if self.xmpp is not None:
            self.xmpp.start()
        self.push.start()
        log.info("VTN %s listening on https://%s:%s", self.config.vtn_id, self.config.host,
                 self.config.port)
        if self.config.admin_port:
            app = web.Application()
            self.admin.install(app)
            self._admin_runner = web.AppRunner(app)
            await self._admin_runner.setup()
            await web.TCPSite(self._admin_runner, self.config.admin_host, self.config.admin_port,
                              ssl_context=self._admin_tls(), reuse_port=reuse_port).start()
        if run_ticker:
            self._ticker = asyncio.create_task(self._tick_forever())

    def _admin_tls(self) -> ssl.SSLContext | None:
        if self.config.admin_cert is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self.config.admin_cert), str(self.config.admin_key))
        return context

    def _load_crl(self) -> None:
        """Put the CRL file into the TLS server's trust store, again whenever it changes.

        OpenSSL keeps every CRL loaded and checks against the newest of an issuer
        (by lastUpdate), so a re-load takes effect for the next handshake."""
        path = self.config.crl_file
        if path is None or self.server.ssl_context is None:
            return
        mtime = path.stat().st_mtime
        if mtime == self._crl_mtime:
            return
        self.server.ssl_context.load_verify_locations(cafile=str(path))
        self.server.ssl_context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        self._crl_mtime = mtime
        log.info("certificate revocation list %s loaded", path)

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            await asyncio.gather(self._ticker, return_exceptions=True)
        await self.push.stop()
        if self._admin_runner is not None:
            await self._admin_runner.cleanup()
        await self.server.stop()

    async def tick(self) -> None:
        """Apply due event transitions and send due notices (idempotent)."""
        completed = False
        try:
            self._load_crl()
        except OSError as err:    # keep the CRL already loaded; say so
            log.error("cannot re-read the CRL %s: %s", self.config.crl_file, err)
        if self.leadership is not None and not self.leadership.leading:
            return      # another worker runs the lifecycle and the notices
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
        """Record contact, in the request's transaction; at most once per poll interval per
        VEN and process: "online" means seen within 3 intervals (vtn.admin.ONLINE_POLLS),
        and a VEN polling on time is written every other poll at worst."""
        if not ven_id:
            return
        now = self.clock.now()
        last = self._last_seen_written.get(ven_id)
        if last is not None and now - last < self.config.poll_interval:
            return
        self._last_seen_written[ven_id] = now
        self.store.seen(ven_id, now)

    # --- EiRegisterParty ---------------------------------------------------
    def ven_lookup(self, ven_id: str) -> dict | None:
        """openleadr asks this for every message that names a venID: a disabled, revoked or
        unenrolled VEN is refused (463) before any handler runs."""
        ven, enrolments = self.store.ven_with_enrolments(ven_id)
        if ven is None:
            return None
        self._refuse_if_disabled(ven, enrolments)
        return {"ven_id": ven.ven_id, "ven_name": ven.ven_name,
                "fingerprint": ven.fingerprint, "registration_id": ven.registration_id}

    def _refuse_if_disabled(self, ven, enrolments=None) -> None:
        if enrolments is None:
            enrolments = self.store.enrolments(ven_id=ven.ven_id, active_only=False)
        why = ven_control.refusal(ven, enrolments, self.clock.now().date())
        if why is not None:
            log.warning("refused a request of VEN %s: it is %s", ven.ven_id, why)
            raise errors.NotRegisteredOrAuthorizedError(f"VEN {ven.ven_id} is {why}")

    def on_create_party_registration(self, payload: dict) -> tuple[str, str]:
        metrics.MESSAGES_IN.labels("oadrCreatePartyRegistration").inc()
        fingerprint = payload.get("fingerprint")
        ven, enrolments = (self.store.ven_with_enrolments_by_fingerprint(fingerprint)
                           if fingerprint else (None, []))
        if ven is None:
            raise errors.NotRegisteredOrAuthorizedError(
                f"certificate {fingerprint} is not enrolled with this VTN")
        if ven.ven_name != payload.get("ven_name"):
            raise errors.NotRegisteredOrAuthorizedError(
                f"certificate {fingerprint} is enrolled as {ven.ven_name!r}, "
                f"not {payload.get('ven_name')!r}")
        self._refuse_if_disabled(ven, enrolments)
        if payload.get("ven_id") and payload["ven_id"] != ven.ven_id:
            raise errors.InvalidIdError(f"venID {payload['ven_id']} does not belong to this "
                                        f"certificate")
        push_address = _check_exchange(payload, served_transports(self.config), ven.ven_id)
        # A re-registration that names the current registration keeps it.
        asked = payload.get("registration_id")
        registration_id = (asked if asked and asked == ven.registration_id
                           else str(uuid.uuid4()))
        self.store.set_registration(ven.ven_id, registration_id, self.clock.now())
        push.register(self.store, ven.ven_id, push_address, self.clock.now())
        self._seen(ven.ven_id)
        log.info("registered VEN %s (%s, %s)", ven.ven_id, ven.device_kind,
                 f"push to {push_address}" if push_address else "pull")
        return ven.ven_id, registration_id

    def on_cancel_party_registration(self, payload: dict) -> tuple[str, dict]:
        metrics.MESSAGES_IN.labels("oadrCancelPartyRegistration").inc()
        ven = self.store.ven(payload["ven_id"])
        if payload.get("registration_id") != ven.registration_id:
            raise errors.InvalidIdError(f"registrationID {payload.get('registration_id')} is not "
                                        f"the registration of VEN {ven.ven_id}")
        self._end_registration(ven.ven_id)
        self._seen(ven.ven_id)
        return "oadrCanceledPartyRegistration", {"registration_id": payload.get("registration_id"),
                                                 "ven_id": payload["ven_id"]}

    def request_reregistration(self, ven_id: str) -> None:
        """Queue oadrRequestReregistration: the VEN gets it at its next poll."""
        ven_control.request_reregistration(self.store, ven_id, self.clock, audit.SYSTEM)

    def cancel_registration(self, ven_id: str) -> None:
        """Queue oadrCancelPartyRegistration: the VEN gets it at its next poll."""
        ven_control.cancel_registration(self.store, ven_id, self.clock, audit.SYSTEM)

    async def canceled_party_registration(self, payload: dict):
        """The VEN confirms a cancellation the VTN sent: the registration ends here."""
        metrics.MESSAGES_IN.labels("oadrCanceledPartyRegistration").inc()
        ven = self.store.ven(payload["ven_id"])
        code = int((payload.get("response") or {}).get("response_code") or 0)
        if code == 200 and payload.get("registration_id") == ven.registration_id:
            self._end_registration(ven.ven_id)
            log.info("VEN %s confirmed the cancellation of its registration", ven.ven_id)
        else:
            log.warning("VEN %s did not cancel registration %s (code %s)", ven.ven_id,
                        payload.get("registration_id"), code)
        return "oadrResponse", {}

    def _end_registration(self, ven_id: str) -> None:
        now = self.clock.now()
        self.store.set_registration(ven_id, None, now)
        for request in self.store.report_requests(ven_id, active_only=True):
            self.store.cancel_report_request(request.report_request_id, now)

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
        if not self.poll_rate.allow(ven_id, now):
            metrics.POLLS_TOO_FAST.inc()
            if ven_id not in self._too_fast_logged:
                self._too_fast_logged.add(ven_id)
                log.warning("VEN %s is %s: answered 459 (logged once per VEN)", ven_id,
                            self.poll_rate.refusal())
            raise errors.ComplianceError(self.poll_rate.refusal())
        while (message := self.store.next_message(ven_id, now)) is not None:
            answer = self._answer(ven_id, message, now)
            if answer is not None:
                metrics.MESSAGES_OUT.labels(answer[0]).inc()
                return answer
        return None

    def _answer(self, ven_id: str, message, now: datetime):
        """The message a queued entry stands for, handed out; None if it no longer applies."""
        answer, handed_out = self.compose(ven_id, message, now)
        handed_out()
        return answer

    def compose(self, ven_id: str, message, now: datetime) -> tuple[tuple[str, dict] | None,
                                                                   Callable[[], None]]:
        """The message a queued entry stands for (None if it no longer applies), and what
        to record once the VEN has it: the poll hands it out at once, push (vtn/push.py)
        when the VEN has answered."""
        payload = json.loads(message.payload or "{}")
        kind = message.message_type
        if kind == "oadrDistributeEvent":
            if not self.store.undelivered(ven_id):
                return None, _nothing   # every version already went out, e.g. in an oadrRequestEvent answer
            events = self.store.events_for(ven_id, not_ended_before=now)
            return (("oadrDistributeEvent", {"events": [to_oadr(e, ven_id, now) for e in events]}),
                    partial(self.store.mark_delivered, ven_id, events))
        if kind == "oadrCreateReport":
            request = self.store.report_request(payload["report_request_id"])
            if request is None or request.cancelled_at is not None:
                return None, _nothing   # superseded (e.g. by a re-registration)
            return ("oadrCreateReport", {"report_requests": [self._report_request(request)]}), _nothing
        if kind == "oadrCancelReport":
            # oadrCanceledReport only lists what stays pending: the request ends when sent.
            return (("oadrCancelReport", {"report_request_id": payload["report_request_id"],
                                          "report_to_follow": False}),
                    partial(self.store.cancel_report_request, payload["report_request_id"], now))
        if kind == ven_control.REQUEST_REREGISTRATION:
            return ("oadrRequestReregistration", {"ven_id": ven_id}), _nothing
        if kind == ven_control.CANCEL_REGISTRATION:
            if payload["registration_id"] != self.store.ven(ven_id).registration_id:
                return None, _nothing   # the VEN registered anew (or was cancelled) since
            return ("oadrCancelPartyRegistration", {"ven_id": ven_id,
                                                    "registration_id": payload["registration_id"]}), _nothing
        log.error("unknown queued message %s for %s", kind, ven_id)
        return None, _nothing

    async def request_event(self, payload: dict):
        """oadrRequestEvent, answered like the poll: openleadr's own handler re-derives each
        status from the wall clock and resets createdDateTime, so the same event version
        would read differently by the path it took."""
        metrics.MESSAGES_IN.labels("oadrRequestEvent").inc()
        ven_id = payload["ven_id"]
        self._seen(ven_id)
        events = self._current_events(ven_id)
        if not events:
            return "oadrResponse", {}
        return "oadrDistributeEvent", {"events": in_profile_order(events)}

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
        interval_s = self.store.telemetry_interval_s(ven_id)
        if interval_s is not None:
            return timedelta(seconds=interval_s)
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
        for old in self.store.active_report_specifiers(ven_id):
            if old.report_specifier_id in offered:
                self.store.cancel_report_request(old.report_request_id, now)
        for report in payload.get("reports") or []:
            name = report["report_name"].removeprefix("METADATA_")
            rows = []
            for description in _as_list(report.get("report_descriptions")):
                rows.append(_registration_row(ven_id, report["report_specifier_id"], name,
                                              description, now))
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
        """Store what each value means; keep what cannot be read raw and what cannot be
        believed in quarantine. 200: every value stored by meaning or raw. 454 (invalid
        data): some were quarantined (the first reasons in the description) and the rest
        of the report was stored, so a re-send cannot help and the VEN should move on."""
        metrics.MESSAGES_IN.labels("oadrUpdateReport").inc()
        ven_id = payload["ven_id"]
        now = self.clock.now()
        self._seen(ven_id)
        reports = []
        for report in payload.get("reports") or []:     # every ID checked before anything is stored
            request = self.store.report_request(report.get("report_request_id"))
            if request is None or request.ven_id != ven_id:
                raise errors.InvalidIdError(
                    f"reportRequestID {report.get('report_request_id')} was not requested "
                    f"from VEN {ven_id}")
            reports.append((request, _as_list(report.get("intervals"))))
        rejected = [reason for request, intervals in reports
                    for reason in self._store_report(ven_id, request, intervals, now)]
        if rejected:
            # PartlyRefused: the message path answers 454 and still commits what was stored
            # (the accepted values and the quarantined ones).
            more = f"; and {len(rejected) - 3} more" if len(rejected) > 3 else ""
            raise PartlyRefused(_safe(f"{len(rejected)} value(s) quarantined: "
                                                + "; ".join(rejected[:3]) + more))
        metrics.MESSAGES_OUT.labels("oadrUpdatedReport").inc()
        return "oadrUpdatedReport", {}

    def _store_report(self, ven_id: str, request: ReportRequest, intervals: list[dict],
                      now: datetime) -> list[str]:
        """Store one report of a VEN; the reasons of its quarantined values."""
        registrations = {r.r_id: _registration(r) for r in self.store.report_registrations(ven_id)
                         if r.report_specifier_id == request.report_specifier_id}
        granularity = (timedelta(seconds=request.granularity_s) if request.granularity_s
                       else self._granularity(ven_id))
        found = telemetry.interpret(request.report_name, intervals, registrations, granularity,
                                    self._limits(ven_id, granularity, now))
        raw, quarantined = _kept_rows(ven_id, request, found, now)
        points = [(start, point.end, point.values) for start, point in sorted(found.points.items())]
        new, revised = self.store.record_points(ven_id, points, now, request.report_request_id,
                                                raw, quarantined)
        self._account(ven_id, request, found, new, revised)
        if points:
            metrics.TELEMETRY_LAG.observe(max((now - points[-1][1]).total_seconds(), 0.0))
        return [v.reason for v in found.rejected]

    def _account(self, ven_id: str, request: ReportRequest, found: telemetry.Interpreted,
                 new: int, revised: int) -> None:
        """Metrics and log lines of one stored report (a raw rID is logged once per VEN)."""
        metrics.TELEMETRY_POINTS.inc(new)
        metrics.TELEMETRY_REVISIONS.inc(revised)
        metrics.TELEMETRY_UNINTERPRETED.inc(len(found.raw))
        for value in found.raw:
            if (ven_id, value.r_id) not in self._raw_logged:
                self._raw_logged.add((ven_id, value.r_id))
                log.warning("VEN %s rID %s: kept raw (%s)", ven_id, value.r_id, value.reason)
        for value in found.rejected:
            metrics.TELEMETRY_REJECTED.labels(value.check).inc()
        if found.rejected:
            log.warning("VEN %s: %d value(s) of %s quarantined, e.g. rID %s: %s", ven_id,
                        len(found.rejected), request.report_request_id, found.rejected[0].r_id,
                        found.rejected[0].reason)
        if revised:
            log.warning("VEN %s re-sent %d value(s) that differ: kept as revisions", ven_id, revised)

    def _limits(self, ven_id: str, granularity: timedelta, now: datetime) -> telemetry.Limits:
        """The device's enrolled ratings (its resources, else its program's) and enrolment date."""
        ven = self.store.ven(ven_id)
        # a V2G charger may have both ratings: the larger bounds its power either way
        capacity = sum(max(r.charger_kw or 0.0, r.inverter_kw or 0.0)
                       for r in self.store.resources(ven_id)) or None
        if capacity is None and ven is not None:
            program = self.store.program(ven.program_id)
            if program is not None:
                capacity = program.max_charger_kw or program.max_inverter_kw
        enrolled = [e.enrolled_on for e in self.store.enrolments(ven_id=ven_id, active_only=False)]
        # A date, in some local time zone: its earliest possible instant is a day before UTC's.
        enrolled_at = (datetime.combine(min(enrolled), datetime.min.time(), timezone.utc)
                       - timedelta(days=1)) if enrolled else None
        return telemetry.limits(capacity, enrolled_at, now, granularity)


def _kept_rows(ven_id: str, request: ReportRequest, found: telemetry.Interpreted,
               now: datetime) -> tuple[list[TelemetryRaw], list[TelemetryQuarantine]]:
    """The raw and the quarantined values of one report as store rows, payloads as JSON."""
    raw = [TelemetryRaw(ven_id=ven_id, report_request_id=request.report_request_id,
                        report_name=request.report_name, r_id=v.r_id, interval_start=v.start,
                        interval_end=v.end, payload=_json(v.payload),
                        registration=_json(asdict(v.registration) if v.registration else None),
                        reason=v.reason, received_at=now) for v in found.raw]
    quarantined = [TelemetryQuarantine(ven_id=ven_id, report_request_id=request.report_request_id,
                                       report_name=request.report_name, r_id=v.r_id,
                                       interval_start=v.start, interval_end=v.end,
                                       payload=_json(v.payload), reason=v.reason, received_at=now)
                   for v in found.rejected]
    return raw, quarantined


def _registration_row(ven_id: str, specifier_id: str, report_name: str, description: dict,
                      now: datetime) -> ReportRegistration:
    """One oadrReportDescription (as openleadr parses it) as a store row: all its metadata."""
    measurement = description.get("measurement") or {}
    sampling = description.get("sampling_rate") or {}
    source = description.get("report_data_source") or {}
    return ReportRegistration(
        ven_id=ven_id, report_specifier_id=specifier_id, report_name=report_name,
        r_id=description["r_id"],
        resource_id=source.get("resource_id") if isinstance(source, dict) else None,
        item_name=measurement.get("name"), measurement=measurement.get("description"),
        unit=measurement.get("unit"), scale=measurement.get("scale"),
        report_type=description.get("report_type"), reading_type=description.get("reading_type"),
        min_period_s=_seconds(sampling.get("min_period")),
        max_period_s=_seconds(sampling.get("max_period")), registered_at=now)


def _registration(row: ReportRegistration) -> telemetry.Registration:
    return telemetry.Registration(
        report_name=row.report_name, r_id=row.r_id, item_name=row.item_name,
        description=row.measurement, unit=row.unit, scale=row.scale, report_type=row.report_type,
        reading_type=row.reading_type, resource_id=row.resource_id)


def _json(value) -> str:
    """Raw telemetry as JSON: datetimes as ISO text, durations in seconds, NaN and Inf as text."""
    def default(item):
        if isinstance(item, datetime):
            return item.isoformat()
        if isinstance(item, timedelta):
            return item.total_seconds()
        return repr(item)
    return json.dumps(_finite(value), default=default, sort_keys=True)


def _finite(value):
    """NaN / Inf are not JSON: keep them as the text a reader can still see."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def _safe(text: str) -> str:
    """A response description is rendered into XML unescaped (openleadr's templates):
    keep it to characters that cannot open markup."""
    return "".join(c if c not in "<>&" else "?" for c in text)[:500]


def _seconds(value) -> float | None:
    return value.total_seconds() if isinstance(value, timedelta) else None
