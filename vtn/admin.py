"""Admin REST API (JSON over aiohttp) on the admin listener (VtnConfig.admin_host:admin_port,
127.0.0.1 by default, HTTPS with admin_cert / admin_key); never on the OpenADR port.

Every route under /api, and /metrics, needs a user's API token (`Authorization: Bearer
TOKEN`, `vtn users token`) whose role allows it (vtn/auth.py: viewers read, operators act,
admins load programs), else 401 or 403; the legacy shared admin_token still counts as an
admin's, with a deprecation warning. An
address that fails the token FAILED_AUTH_LIMIT times within FAILED_AUTH_WINDOW gets 429
until the window has passed. Public routes: /health (database reachable?) and
/optout/{token}, where the notice's one-time token is the credential: GET shows a
confirmation page (and changes nothing), POST records the opt-out.

Input goes through the models of vtn.operator_input: a bad field is a 400 naming the field,
and nothing is stored. An event the dispatch rules refuse is a 422 listing each violation
by its rule (vtn.dispatch_rules). Every change writes its audit row (vtn.audit) in the
call's transaction; the actor is the token's identity. Times are answered in UTC, as
ISO 8601 with `Z`.
"""
from __future__ import annotations

import html
import json
import logging
from collections import deque
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable

from aiohttp import web
from pydantic import TypeAdapter, ValidationError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from schedules import model
from vtn import admin_openapi, audit, auth, event_control, lifecycle, metrics, ven_control
from vtn import enrolment as enrolment_path
from vtn.console import app as console_app
from vtn.export import event_telemetry_csv, telemetry_csv
from vtn.notify import opt_out_target, record_opt_out
from vtn.operator_input import (EnrolmentRequest, EventChange, EventRequest, InputError,
                                ParticipantRequest, Time, VenAction, parse)
from vtn.programs import ensure_program
from vtn.store import EVENT_STATUSES, Participant

log = logging.getLogger(__name__)

ONLINE_POLLS = 3     # a VEN is online if seen within this many poll intervals
FAILED_AUTH_LIMIT = 10
FAILED_AUTH_WINDOW = timedelta(minutes=1)
TRACKED_ADDRESSES = 10_000   # bound the memory a scan from many addresses can take
_TIME = TypeAdapter(Time)
ACTOR = web.RequestKey("actor", audit.Actor)    # who makes the call: set by _guard


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=_default))


def _default(value):
    if isinstance(value, datetime):
        when = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _query_time(request: web.Request, name: str) -> datetime | None:
    if name not in request.query:
        return None
    try:
        return _TIME.validate_python(request.query[name])
    except ValidationError as err:
        raise InputError.one(name, err.errors()[0]["msg"].removeprefix("Value error, ")) from None


async def _body(request: web.Request) -> dict:
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, f"the body is not JSON: {err}") from err
    if not isinstance(body, dict):
        raise InputError.one("body", "must be a JSON object")
    return body


class FailedAuth:
    """Failed token attempts per remote address, on the VTN's clock."""

    def __init__(self, clock, limit: int = FAILED_AUTH_LIMIT,
                 window: timedelta = FAILED_AUTH_WINDOW):
        self.clock, self.limit, self.window = clock, limit, window
        self.failures: dict[str, deque[datetime]] = {}

    def blocked_for(self, remote: str) -> timedelta | None:
        """How long `remote` is still refused (None: it may try)."""
        times = self.failures.get(remote)
        if times is None:
            return None
        self._prune(times)
        if not times:
            del self.failures[remote]
            return None
        if len(times) < self.limit:
            return None
        return times[0] + self.window - self.clock.now()

    def failed(self, remote: str) -> None:
        times = self.failures.get(remote)
        if times is None:
            if len(self.failures) >= TRACKED_ADDRESSES:
                self.failures.pop(next(iter(self.failures)))   # the longest-tracked address
            times = self.failures[remote] = deque()
        self._prune(times)
        times.append(self.clock.now())

    def _prune(self, times: deque[datetime]) -> None:
        while times and times[0] <= self.clock.now() - self.window:
            times.popleft()


class AdminApi:
    def __init__(self, vtn, token: str | None):
        self.vtn = vtn
        self.token = token           # the legacy shared admin token (config admin_token)
        self._legacy_warned = False
        self.failed_auth = FailedAuth(vtn.clock)
        # (method, path, handler, summary, the request body's model; vtn/admin_openapi.py
        # documents each answer)
        self.routes: list[tuple[str, str, Callable, str, type | None]] = [
            ("GET", "/api/openapi.json", self.openapi, "This document", None),
            ("GET", "/api/programs", self.list_programs, "Programs and their enrolment rules", None),
            ("PUT", "/api/programs/{program_id}", self.put_program,
             "Load a program from its program file", None),
            ("POST", "/api/participants", self.post_participant, "Create or update a participant",
             ParticipantRequest),
            ("GET", "/api/enrolments", self.list_enrolments, "Active enrolments", None),
            ("POST", "/api/enrolments", self.post_enrolment,
             "Enrol a device (VEN) in a program, checking the program's rules",
             EnrolmentRequest),
            ("GET", "/api/vens", self.list_vens, "VENs: registration, online, last seen", None),
            ("POST", "/api/vens/{ven_id}/disable", self.disable_ven,
             "Refuse every request of the VEN (463) and end its registration", VenAction),
            ("POST", "/api/vens/{ven_id}/enable", self.enable_ven,
             "Serve a disabled VEN again (it registers afresh)", None),
            ("POST", "/api/vens/{ven_id}/revoke", self.revoke_ven,
             "Disable the VEN for good", VenAction),
            ("POST", "/api/vens/{ven_id}/cancel-registration", self.cancel_registration,
             "Queue oadrCancelPartyRegistration for the VEN's next poll", None),
            ("POST", "/api/vens/{ven_id}/reregister", self.reregister,
             "Queue oadrRequestReregistration for the VEN's next poll", None),
            ("GET", "/api/events", self.list_events, "Events (?status=)", None),
            ("POST", "/api/events", self.post_event,
             "Create an event: published at once, or only planned (plan: true); the "
             "dispatch rules hold (422 naming each rule) unless override_reason is given "
             "for the program rules, which is stored, audited and flagged in settlement",
             EventRequest),
            ("POST", "/api/events/{event_id}/publish", self.publish_event,
             "Publish a planned event", None),
            ("GET", "/api/events/{event_id}", self.get_event,
             "An event with its targets and transitions", None),
            ("PATCH", "/api/events/{event_id}", self.patch_event, "Modify an event",
             EventChange),
            ("POST", "/api/events/{event_id}/cancel", self.cancel_event, "Cancel an event", None),
            ("GET", "/api/optouts", self.list_optouts, "Opt-outs (?event_id=)", None),
            ("GET", "/api/telemetry.csv", self.telemetry_export,
             "Telemetry as CSV (?event_id= or ?ven_id=&start=&end=)", None),
            ("GET", "/api/audit", self.list_audit,
             "Audit rows, oldest first (?actor=&action=&subject_type=&subject_id=&since=&until="
             "&limit=)", None),
            ("GET", "/api/connectivity", self.connectivity,
             "Offline streaks and who must be unenrolled", None),
            ("GET", "/metrics", self.metrics, "Prometheus metrics", None),
        ]

    def install(self, app: web.Application) -> None:
        for method, path, handler, _, _ in self.routes:
            app.router.add_route(method, path, self._guard(handler))
        console_app.Console(self.vtn).install(app)
        app.router.add_get("/health", self.health)
        app.router.add_get("/optout/{token}", self.opt_out_page)
        app.router.add_post("/optout/{token}", self.opt_out)

    def _guard(self, handler):
        async def guarded(request: web.Request):
            remote = request.remote or "?"
            wait = self.failed_auth.blocked_for(remote)
            if wait is not None:
                return web.json_response(
                    {"error": "too many failed admin tokens from this address"}, status=429,
                    headers={"Retry-After": str(max(1, int(wait.total_seconds()) + 1))})
            principal = self._principal(request)
            if principal is None:
                self.failed_auth.failed(remote)
                log.warning("admin request from %s without a valid token", remote)
                return _json({"error": "admin token required"}, 401)
            needed = auth.required_role(request.method, request.match_info.route.resource.canonical)
            if not principal.allows(needed):
                return _json({"error": f"this needs the {needed} role; {principal.username} "
                                       f"is {principal.role}"}, 403)
            request[ACTOR] = audit.Actor(principal.username, principal.role)
            try:
                # One transaction per admin call: all of it is stored, or none of it.
                with self.store.transaction():
                    return await handler(request)
            except InputError as err:
                return _json({"error": str(err), "field": err.field,
                              "problems": [{"field": f, "problem": p} for f, p in err.problems]},
                             400)
            except event_control.RulesRefused as err:
                return _json(err.as_dict(), 422)
            except ApiError as err:
                return _json({"error": err.message, **err.extra}, err.status)
        return guarded

    def _principal(self, request: web.Request) -> auth.Principal | None:
        """A bearer token's user, else a console session's (whose changes need its CSRF
        token in X-CSRF-Token: the console's pages call this API)."""
        header = request.headers.get("Authorization", "")
        if header:
            return self._bearer(header)
        found = console_app.cookie_session(self.store, request, self.clock.now())
        if found is None or (request.method not in ("GET", "HEAD")
                             and not console_app.csrf_ok(request, found[1])):
            return None
        return found[0]

    def _bearer(self, header: str) -> auth.Principal | None:
        """A user's API token, or the legacy shared admin token (an admin, deprecated)."""
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        if not token:
            return None
        if self.token and auth.same_secret(token, self.token):
            if not self._legacy_warned:
                self._legacy_warned = True
                log.warning("the shared admin_token is deprecated: make users with "
                            "`vtn users add` and give each a token (`vtn users token`)")
            return auth.Principal(audit.ADMIN_TOKEN.name, auth.ADMIN, "legacy-token")
        return auth.token_principal(self.store, token)

    @property
    def store(self):
        return self.vtn.store

    @property
    def clock(self):
        return self.vtn.clock

    def _audit(self, request, action: str, subject_type: str, subject_id: str,
               before: dict | None, after: dict | None) -> None:
        """The call's audit row, in the call's transaction (see _guard)."""
        with self.store.session() as session:
            audit.record(session, actor=request[ACTOR].name, action=action,
                         subject_type=subject_type, subject_id=subject_id, before=before,
                         after=after, clock=self.clock)

    # --- documents ---------------------------------------------------------
    async def openapi(self, request):
        return _json(admin_openapi.document(self.routes))

    async def metrics(self, request):
        now = self.clock.now()
        online_after = now - ONLINE_POLLS * self.vtn.config.poll_interval
        vens = self.store.vens()
        metrics.VENS_ONLINE.set(sum(1 for v in vens if v.last_seen_at and
                                    v.last_seen_at >= online_after))
        metrics.VENS_REGISTERED.set(sum(1 for v in vens if v.registration_id))
        counts = {status: 0 for status in EVENT_STATUSES}
        for event in self.store.events():
            counts[event.status] = counts.get(event.status, 0) + 1
        for status, count in counts.items():
            metrics.EVENTS.labels(status).set(count)
        return web.Response(body=generate_latest(metrics.REGISTRY),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    # --- programs, participants, enrolments ----------------------------------
    async def list_programs(self, request):
        return _json([p.model_dump() for p in self.store.programs()])

    async def put_program(self, request):
        program_id = request.match_info["program_id"]
        before = self.store.program(program_id)
        try:
            row = ensure_program(self.store, program_id)
        except (FileNotFoundError, model.ProgramError) as err:
            raise ApiError(404, f"no program file for {program_id}: {err}") from err
        if before is None:
            self._audit(request, "program.load", "program", program_id, None,
                        audit.snapshot(row))
        return _json(row.model_dump())

    async def post_participant(self, request):
        body = parse(ParticipantRequest, await _body(request),
                     {"allow_private": self.vtn.config.webhook_allow_private})
        before = audit.snapshot(self.store.participant(body.participant_id))
        participant = self.store.add_participant(Participant(**body.model_dump()))
        self._audit(request, "participant.update" if before else "participant.create",
                    "participant", participant.participant_id, before,
                    audit.snapshot(participant))
        return _json(participant.model_dump(), 201)

    async def list_enrolments(self, request):
        return _json([e.model_dump() for e in self.store.enrolments()])

    async def post_enrolment(self, request):
        body = parse(EnrolmentRequest, await _body(request))
        try:
            enrolment = enrolment_path.enrol(self.store, self.clock, body, request[ACTOR])
        except enrolment_path.NotFound as err:
            raise ApiError(404, str(err)) from err
        except enrolment_path.Conflict as err:
            extra = {"rules": [r.rule for r in err.refusals],
                     "reasons": [r.reason for r in err.refusals]} if err.refusals else {}
            raise ApiError(409, str(err), **extra) from err
        return _json(enrolment.model_dump(), 201)

    # --- VENs ----------------------------------------------------------------
    async def list_vens(self, request):
        now = self.clock.now()
        online_after = now - ONLINE_POLLS * self.vtn.config.poll_interval
        return _json([{**v.model_dump(exclude={"fingerprint"}), "fingerprint": v.fingerprint,
                       "online": bool(v.last_seen_at and v.last_seen_at >= online_after)}
                      for v in self.store.vens()])

    async def _ven_action(self, request, action, *args):
        try:
            ven = action(self.store, request.match_info["ven_id"], self.clock, request[ACTOR],
                         *args)
        except ven_control.UnknownVen as err:
            raise ApiError(404, str(err)) from err
        except ven_control.NotAllowed as err:
            raise ApiError(409, str(err)) from err
        return _json(self.store.ven(ven.ven_id).model_dump())

    async def disable_ven(self, request):
        body = parse(VenAction, await _body(request))
        return await self._ven_action(request, ven_control.disable, body.reason)

    async def enable_ven(self, request):
        return await self._ven_action(request, ven_control.enable)

    async def revoke_ven(self, request):
        body = parse(VenAction, await _body(request))
        return await self._ven_action(request, ven_control.revoke, body.reason)

    async def cancel_registration(self, request):
        return await self._ven_action(request, ven_control.cancel_registration)

    async def reregister(self, request):
        return await self._ven_action(request, ven_control.request_reregistration)

    # --- events --------------------------------------------------------------
    async def list_events(self, request):
        status = request.query.get("status")
        if status is not None and status not in EVENT_STATUSES:
            raise ApiError(400, f"status must be one of {', '.join(EVENT_STATUSES)}")
        return _json([e.model_dump() for e in self.store.events(status=status)])

    async def post_event(self, request):
        body = parse(EventRequest, await _body(request))
        program = event_control.load_program(body.program_id)
        event = event_control.create(self.store, self.clock, body, program, request[ACTOR])
        return _json(event.model_dump(), 201)

    async def get_event(self, request):
        event_id = request.match_info["event_id"]
        event = self.store.event(event_id)
        if event is None:
            raise ApiError(404, f"no event {event_id}")
        return _json({**event.model_dump(),
                      "targets": [t.model_dump() for t in self.store.targets(event_id)],
                      "transitions": [t.model_dump() for t in self.store.transitions(event_id)]})

    async def patch_event(self, request):
        body = parse(EventChange, await _body(request))
        try:
            event = event_control.change(self.store, self.clock, request.match_info["event_id"],
                                         body, request[ACTOR])
        except lifecycle.EventNotChangeable as err:
            raise ApiError(404 if "no event" in str(err) else 409, str(err)) from err
        return _json(event.model_dump())

    async def publish_event(self, request):
        event_id = request.match_info["event_id"]
        try:
            event = event_control.publish(self.store, self.clock, event_id, request[ACTOR])
        except lifecycle.EventNotChangeable as err:
            raise ApiError(404 if "no event" in str(err) else 409, str(err)) from err
        except lifecycle.EventOutsideRules as err:
            raise ApiError(409, str(err)) from err
        return _json(event.model_dump())

    async def cancel_event(self, request):
        event_id = request.match_info["event_id"]
        try:
            event = event_control.cancel(self.store, self.clock, event_id, request[ACTOR])
        except lifecycle.EventNotChangeable as err:
            raise ApiError(404 if "no event" in str(err) else 409, str(err)) from err
        return _json(event.model_dump())

    async def list_audit(self, request):
        filters = {name: request.query[name] for name in
                   ("actor", "action", "subject_type", "subject_id") if name in request.query}
        limit = request.query.get("limit", str(audit.DEFAULT_LIMIT))
        if not limit.isdigit() or not 1 <= int(limit) <= audit.DEFAULT_LIMIT:
            raise InputError.one("limit", f"an integer 1-{audit.DEFAULT_LIMIT}")
        with self.store.session() as session:
            rows = audit.query(session, **filters, since=_query_time(request, "since"),
                               until=_query_time(request, "until"), limit=int(limit))
            return _json([audit.as_dict(row) for row in rows])

    # --- opt-outs, telemetry, connectivity -----------------------------------
    async def list_optouts(self, request):
        event_id = request.query.get("event_id")
        events = [self.store.event(event_id)] if event_id else self.store.events()
        if events == [None]:
            raise ApiError(404, f"no event {event_id}")
        rows = [{"event_id": t.event_id, "ven_id": t.ven_id, "opt_type": t.opt_type,
                 "source": t.opt_source, "at": t.opt_at}
                for e in events for t in self.store.targets(e.event_id) if t.opt_type == "optOut"]
        schedules = [{**o.model_dump(),
                      "availability": [a.model_dump() for a in self.store.availability(o.id)]}
                     for o in self.store.opts(event_id=event_id)]
        return _json({"event_opt_outs": rows, "opt_schedules": schedules,
                      "season_counts": self._season_opt_out_counts()})

    def _season_opt_out_counts(self) -> dict:
        """Opt-outs per VEN this calendar year, against the program's limit (e.g. 12)."""
        year = self.clock.now().year
        counts: dict[str, dict] = {}
        for event in self.store.events():
            if event.start_utc.year != year or event.status == "pending":
                continue
            program = self.store.program(event.program_id)
            limit = program.max_opt_outs_per_season if program else None
            for target in self.store.targets(event.event_id):
                if target.opt_type != "optOut":
                    continue
                row = counts.setdefault(target.ven_id, {"count": 0, "limit": limit})
                row["count"] += 1
        for row in counts.values():
            row["over_limit"] = row["limit"] is not None and row["count"] > row["limit"]
        return counts

    async def telemetry_export(self, request):
        event_id = request.query.get("event_id")
        if event_id:
            try:
                text = event_telemetry_csv(self.store, event_id)
            except KeyError as err:
                raise ApiError(404, f"no event {event_id}") from err
        else:
            start, end = _query_time(request, "start"), _query_time(request, "end")
            ven_id = request.query.get("ven_id")
            if not ven_id or self.store.ven(ven_id) is None:
                raise InputError.one("ven_id", "give event_id, or the ven_id of an enrolled VEN")
            text = telemetry_csv(self.store, [ven_id], start, end)
        return web.Response(text=text, content_type="text/csv")

    async def connectivity(self, request):
        notices = self.vtn.notices
        if notices is None:
            from vtn.notify import NoticeService
            notices = NoticeService(self.store, None, self.clock)
        streaks = {v.ven_id: [e.event_id for e in notices.offline_streak(v.ven_id)]
                   for v in self.store.vens()}
        return _json({"offline_streaks": {k: v for k, v in streaks.items() if v},
                      "to_unenrol": notices.to_unenrol()})

    # --- public: health and the notice's opt-out link ------------------------------
    async def health(self, request):
        """200 {"status": "ok"} when the database answers; 503 when it does not."""
        try:
            with self.store.session() as session:
                session.connection().execute(text("SELECT 1"))
        except SQLAlchemyError as err:
            log.error("health: the database does not answer: %s", err)
            return _json({"status": "unavailable", "database": "unreachable",
                          "vtn_id": self.vtn.config.vtn_id, "time": self.clock.now()}, 503)
        return _json({"status": "ok", "database": "ok", "vtn_id": self.vtn.config.vtn_id,
                      "time": self.clock.now()})

    async def opt_out_page(self, request):
        """The link in the notice: a confirmation page; following it changes nothing."""
        event, reason = opt_out_target(self.store, request.match_info["token"], self.clock)
        if event is None:
            return _page(reason, status=404)
        start = event.start_utc.strftime("%Y-%m-%d %H:%M UTC")
        return _page(f"Opt out of event {event.event_id} ({start})?",
                     form=request.path)

    async def opt_out(self, request):
        recorded, message = record_opt_out(self.store, request.match_info["token"], self.clock)
        return _page(message, status=200 if recorded else 404)


def _page(message: str, status: int = 200, form: str | None = None) -> web.Response:
    button = (f'<form method="post" action="{html.escape(form)}">'
              '<button type="submit">Opt out</button></form>') if form else ""
    return web.Response(text=f"<!doctype html><meta charset=utf-8><title>Opt-out</title>"
                             f"<p>{html.escape(message)}</p>{button}",
                        status=status, content_type="text/html")
