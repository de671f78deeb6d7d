"""Admin REST API (JSON over aiohttp), served next to the OpenADR endpoints.

Every route under /api, and /metrics, needs the admin token
(`Authorization: Bearer TOKEN`); without a configured token they all answer 401.
The only public route is /optout/{token}: the notice's one-time token is its credential.
"""
from __future__ import annotations

import hmac
import json
from datetime import date, datetime, timedelta
from typing import Any, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from certs.pki import fingerprint as cert_fingerprint
from schedules import model
from vtn import lifecycle, metrics
from vtn.enrolment_rules import EnrolmentRequest, check
from vtn.export import event_telemetry_csv, telemetry_csv
from vtn.notify import record_opt_out
from vtn.programs import ensure_program
from vtn.store import EVENT_STATUSES, Enrolment, Participant, Resource, Ven

ONLINE_POLLS = 3     # a VEN is online if seen within this many poll intervals


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda d: json.dumps(d, default=_default))


def _default(value):
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _time(value: Any, field: str) -> datetime:
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError as err:
        raise ApiError(400, f"{field}: not an ISO 8601 time: {value!r}") from err
    if when.tzinfo is None:
        raise ApiError(400, f"{field}: needs a UTC offset, e.g. 2026-07-01T16:00:00-04:00")
    return when


async def _body(request: web.Request) -> dict:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, f"the body is not JSON: {err}") from err
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _require(body: dict, *names: str) -> list:
    missing = [n for n in names if body.get(n) in (None, "")]
    if missing:
        raise ApiError(400, f"missing field(s): {', '.join(missing)}")
    return [body[n] for n in names]


class AdminApi:
    def __init__(self, vtn, token: str | None):
        self.vtn = vtn
        self.token = token
        # (method, path, handler, summary, request body fields)
        self.routes: list[tuple[str, str, Callable, str, dict | None]] = [
            ("GET", "/api/openapi.json", self.openapi, "This document", None),
            ("GET", "/api/programs", self.list_programs, "Programs and their enrolment rules", None),
            ("PUT", "/api/programs/{program_id}", self.put_program,
             "Load a program from its program file", None),
            ("POST", "/api/participants", self.post_participant, "Create or update a participant",
             {"participant_id": "string", "name": "string", "household_id": "string",
              "email": "string", "webhook_url": "string", "channel": "email|webhook|none"}),
            ("GET", "/api/enrolments", self.list_enrolments, "Active enrolments", None),
            ("POST", "/api/enrolments", self.post_enrolment,
             "Enrol a device (VEN) in a program, checking the program's rules",
             {"participant_id": "string", "program_id": "string", "ven_name": "string",
              "certificate_pem": "string", "fingerprint": "string", "device_kind": "string",
              "charger_kw": "number", "inverter_kw": "number"}),
            ("GET", "/api/vens", self.list_vens, "VENs: registration, online, last seen", None),
            ("GET", "/api/events", self.list_events, "Events (?status=)", None),
            ("POST", "/api/events", self.post_event,
             "Create an event: published at once, or only planned (plan: true)",
             {"program_id": "string", "start": "date-time", "end": "date-time",
              "minutes": "integer", "setpoint_kw": "number", "ven_ids": "array",
              "test_event": "boolean", "plan": "boolean"}),
            ("POST", "/api/events/{event_id}/publish", self.publish_event,
             "Publish a planned event", None),
            ("GET", "/api/events/{event_id}", self.get_event,
             "An event with its targets and transitions", None),
            ("PATCH", "/api/events/{event_id}", self.patch_event, "Modify an event",
             {"start": "date-time", "end": "date-time", "setpoint_kw": "number"}),
            ("POST", "/api/events/{event_id}/cancel", self.cancel_event, "Cancel an event", None),
            ("GET", "/api/optouts", self.list_optouts, "Opt-outs (?event_id=)", None),
            ("GET", "/api/telemetry.csv", self.telemetry_export,
             "Telemetry as CSV (?event_id= or ?ven_id=&start=&end=)", None),
            ("GET", "/api/connectivity", self.connectivity,
             "Offline streaks and who must be unenrolled", None),
            ("GET", "/metrics", self.metrics, "Prometheus metrics", None),
        ]

    def install(self, app: web.Application) -> None:
        for method, path, handler, _, _ in self.routes:
            app.router.add_route(method, path, self._guard(handler))
        app.router.add_get("/optout/{token}", self.opt_out)

    def _guard(self, handler):
        async def guarded(request: web.Request):
            given = request.headers.get("Authorization", "")
            if not self.token or not hmac.compare_digest(given.encode(),
                                                         f"Bearer {self.token}".encode()):
                return _json({"error": "admin token required"}, 401)
            try:
                return await handler(request)
            except ApiError as err:
                return _json({"error": err.message, **err.extra}, err.status)
        return guarded

    @property
    def store(self):
        return self.vtn.store

    @property
    def clock(self):
        return self.vtn.clock

    # --- documents ---------------------------------------------------------
    async def openapi(self, request):
        paths: dict[str, dict] = {}
        for method, path, _, summary, fields in self.routes:
            operation: dict = {"summary": summary, "security": [{"bearer": []}],
                               "responses": {"200": {"description": "OK"},
                                             "400": {"description": "bad input"},
                                             "401": {"description": "no or wrong admin token"}}}
            if fields:
                operation["requestBody"] = {"content": {"application/json": {"schema": {
                    "type": "object", "properties": {
                        name: {"type": kind if kind in ("string", "number", "integer",
                                                        "boolean", "array") else "string",
                               "description": kind} for name, kind in fields.items()}}}}}
            params = [part[1:-1] for part in path.split("/") if part.startswith("{")]
            if params:
                operation["parameters"] = [{"name": p, "in": "path", "required": True,
                                            "schema": {"type": "string"}} for p in params]
            paths.setdefault(path, {})[method.lower()] = operation
        return _json({"openapi": "3.0.3",
                      "info": {"title": "flexadr VTN admin API", "version": "1"},
                      "components": {"securitySchemes": {"bearer": {"type": "http",
                                                                    "scheme": "bearer"}}},
                      "paths": paths})

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
        try:
            row = ensure_program(self.store, program_id)
        except (FileNotFoundError, model.ProgramError) as err:
            raise ApiError(404, f"no program file for {program_id}: {err}") from err
        return _json(row.model_dump())

    async def post_participant(self, request):
        body = await _body(request)
        participant_id, name, household = _require(body, "participant_id", "name", "household_id")
        channel = body.get("channel", "email")
        if channel not in ("email", "webhook", "none"):
            raise ApiError(400, f"channel must be email, webhook or none, not {channel!r}")
        if channel == "email" and not body.get("email"):
            raise ApiError(400, "channel email needs an email address")
        if channel == "webhook" and not str(body.get("webhook_url", "")).startswith("http"):
            raise ApiError(400, "channel webhook needs an http(s) webhook_url")
        participant = self.store.add_participant(Participant(
            participant_id=participant_id, name=name, household_id=household,
            email=body.get("email"), webhook_url=body.get("webhook_url"), channel=channel))
        return _json(participant.model_dump(), 201)

    async def list_enrolments(self, request):
        return _json([e.model_dump() for e in self.store.enrolments()])

    async def post_enrolment(self, request):
        body = await _body(request)
        participant_id, program_id, ven_name, kind = _require(
            body, "participant_id", "program_id", "ven_name", "device_kind")
        participant = self.store.participant(participant_id)
        if participant is None:
            raise ApiError(404, f"no participant {participant_id}")
        try:
            program = ensure_program(self.store, program_id)
        except (FileNotFoundError, model.ProgramError) as err:
            raise ApiError(404, f"no program {program_id}") from err
        ven = self.store.ven_by_name(ven_name)
        fingerprint = body.get("fingerprint")
        if body.get("certificate_pem"):
            try:
                fingerprint = cert_fingerprint(body["certificate_pem"])
            except Exception as err:  # noqa: BLE001 - any parse failure is the caller's input
                raise ApiError(400, f"certificate_pem: not a PEM certificate: {err}") from err
        if ven is None and not fingerprint:
            raise ApiError(400, "a new VEN needs certificate_pem or fingerprint")
        if ven is not None and fingerprint and fingerprint != ven.fingerprint:
            raise ApiError(409, f"VEN {ven_name} is enrolled with another certificate")
        if ven is None and self.store.ven_by_fingerprint(fingerprint) is not None:
            raise ApiError(409, "this certificate is already enrolled for another VEN")
        charger_kw, inverter_kw = body.get("charger_kw"), body.get("inverter_kw")
        for name, value in (("charger_kw", charger_kw), ("inverter_kw", inverter_kw)):
            if value is not None and not isinstance(value, (int, float)):
                raise ApiError(400, f"{name} must be a number of kW")
        ven_id = ven.ven_id if ven else ven_name
        device_enrolments = self.store.enrolments(ven_id=ven_id) if ven else []
        refusals = check(program, EnrolmentRequest(
            participant_id=participant_id, household_id=participant.household_id,
            program_id=program_id, ven_id=ven_id, device_kind=kind, charger_kw=charger_kw,
            inverter_kw=inverter_kw),
            [e for e, _ in self.store.household_enrolments(participant.household_id)],
            device_enrolments,
            {e.program_id: self.store.program(e.program_id) for e in device_enrolments
             if self.store.program(e.program_id) is not None})
        if refusals:
            raise ApiError(409, "enrolment refused: " + "; ".join(r.reason for r in refusals),
                           rules=[r.rule for r in refusals],
                           reasons=[r.reason for r in refusals])
        if ven is None:
            self.store.enrol(Ven(ven_id=ven_id, ven_name=ven_name, fingerprint=fingerprint,
                                 program_id=program_id, device_kind=kind,
                                 participant_id=participant_id),
                             [Resource(ven_id=ven_id, resource_id="device", device_kind=kind,
                                       charger_kw=charger_kw, inverter_kw=inverter_kw)])
        enrolment = self.store.add_enrolment(Enrolment(
            participant_id=participant_id, program_id=program_id, ven_id=ven_id,
            device_kind=kind, enrolled_on=self.clock.now().date()))
        return _json(enrolment.model_dump(), 201)

    # --- VENs ----------------------------------------------------------------
    async def list_vens(self, request):
        now = self.clock.now()
        online_after = now - ONLINE_POLLS * self.vtn.config.poll_interval
        return _json([{**v.model_dump(exclude={"fingerprint"}), "fingerprint": v.fingerprint,
                       "online": bool(v.last_seen_at and v.last_seen_at >= online_after)}
                      for v in self.store.vens()])

    # --- events --------------------------------------------------------------
    async def list_events(self, request):
        status = request.query.get("status")
        if status is not None and status not in EVENT_STATUSES:
            raise ApiError(400, f"status must be one of {', '.join(EVENT_STATUSES)}")
        return _json([e.model_dump() for e in self.store.events(status=status)])

    async def post_event(self, request):
        body = await _body(request)
        program_id, start = _require(body, "program_id", "start")
        start = _time(start, "start")
        if body.get("end"):
            end = _time(body["end"], "end")
        elif isinstance(body.get("minutes"), int) and body["minutes"] > 0:
            end = start + timedelta(minutes=body["minutes"])
        else:
            raise ApiError(400, "give end or a positive whole number of minutes")
        try:
            program = model.load(program_id)
        except (FileNotFoundError, model.ProgramError) as err:
            raise ApiError(404, f"no program {program_id}") from err
        ven_ids = body.get("ven_ids") or [v.ven_id for v in self.store.vens(program.id)]
        unknown = [v for v in ven_ids if self.store.ven(v) is None]
        if unknown:
            raise ApiError(400, f"unknown VEN(s): {', '.join(unknown)}")
        try:
            event = lifecycle.publish(self.store, program, start, end, ven_ids, self.clock,
                                      setpoint_kw=body.get("setpoint_kw"),
                                      test_event=bool(body.get("test_event")),
                                      planned=bool(body.get("plan")))
        except lifecycle.EventOutsideRules as err:
            raise ApiError(400, str(err)) from err
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
        event_id = request.match_info["event_id"]
        body = await _body(request)
        changes = {}
        if "start" in body:
            changes["start_utc"] = _time(body["start"], "start")
        if "end" in body:
            changes["end_utc"] = _time(body["end"], "end")
        if "setpoint_kw" in body:
            if not isinstance(body["setpoint_kw"], (int, float)):
                raise ApiError(400, "setpoint_kw must be a number")
            changes["signal_value"] = float(body["setpoint_kw"])
        if not changes:
            raise ApiError(400, "nothing to change: give start, end or setpoint_kw")
        try:
            event = lifecycle.modify(self.store, event_id, self.clock, **changes)
        except lifecycle.EventNotChangeable as err:
            raise ApiError(404 if "no event" in str(err) else 409, str(err)) from err
        except lifecycle.EventOutsideRules as err:
            raise ApiError(400, str(err)) from err
        return _json(event.model_dump())

    async def publish_event(self, request):
        event_id = request.match_info["event_id"]
        try:
            event = lifecycle.publish_planned(self.store, event_id, self.clock)
        except lifecycle.EventNotChangeable as err:
            raise ApiError(404 if "no event" in str(err) else 409, str(err)) from err
        except lifecycle.EventOutsideRules as err:
            raise ApiError(409, str(err)) from err
        return _json(event.model_dump())

    async def cancel_event(self, request):
        event_id = request.match_info["event_id"]
        try:
            event = lifecycle.cancel(self.store, event_id, self.clock)
        except lifecycle.EventNotChangeable as err:
            raise ApiError(404 if "no event" in str(err) else 409, str(err)) from err
        return _json(event.model_dump())

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
            ven_id = request.query.get("ven_id")
            if not ven_id or self.store.ven(ven_id) is None:
                raise ApiError(400, "give event_id, or the ven_id of an enrolled VEN")
            start = _time(request.query["start"], "start") if "start" in request.query else None
            end = _time(request.query["end"], "end") if "end" in request.query else None
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

    # --- public: the notice's opt-out link -------------------------------------
    async def opt_out(self, request):
        recorded, message = record_opt_out(self.store, request.match_info["token"], self.clock)
        return web.Response(text=message, status=200 if recorded else 404)
