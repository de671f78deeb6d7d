"""The OpenADR 3.1 REST API over the VTN store: every handler, with its scope and privacy rule.

Privacy (Definition, "Object Privacy"): the clientID comes from the token. A BL client
reads everything; a VEN client reads its own ven, resources, reports and subscriptions,
and the programs it is enrolled in and the events it is a target of, with targets
hidden down to its own name. Only BL writes programs and events and grants targets.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import json
import uuid
from contextlib import contextmanager
from datetime import datetime
from typing import Sequence
from urllib.parse import unquote_plus, urlsplit

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from flexadr.clock import Clock
from schedules import model
from vtn import event_control, lifecycle
from vtn.audit import Actor
from vtn.openadr31 import auth, mapping
from vtn.openadr31.auth import ExternalAuthority, Principal, TokenIssuer
from vtn.openadr31.problems import Problem, bad_request, from_validation
from vtn.openadr31.schemas import (NOW, RESOURCE_REQUEST, VEN_REQUEST, BlResourceRequest,
                                   BlVenRequest, ClientCredentialRequest, EventRequest,
                                   ProgramRequest, ReportRequest, SubscriptionRequest, ValuesMap)
from vtn.openadr31.settings import Settings
from vtn.operator_input import InputError
from vtn.openadr31.telemetry import later, telemetry_points
from vtn.store import (CANCELLED, PENDING, Event, EventTarget, Oadr3Report,
                       Oadr3Subscription, Program, Resource, Store, Ven)

MAX_LIMIT = 50
OBJECT_TYPES = ("PROGRAM", "EVENT", "REPORT", "SUBSCRIPTION", "VEN", "RESOURCE")


class Api:
    def __init__(self, store: Store, clock: Clock, settings: Settings):
        self.store, self.clock, self.settings = store, clock, settings
        external = (ExternalAuthority(settings.jwks_url, settings.audience,
                                      settings.external_issuer) if settings.jwks_url else None)
        self.tokens = TokenIssuer(store, settings.token_secret, settings.token_ttl,
                                  settings.issuer, external)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/programs", self.list_programs), web.post("/programs", self.create_program),
            web.get("/programs/{id}", self.get_program), web.put("/programs/{id}", self.put_program),
            web.delete("/programs/{id}", self.put_program),
            web.get("/events", self.list_events), web.post("/events", self.create_event),
            web.get("/events/{id}", self.get_event), web.put("/events/{id}", self.update_event),
            web.delete("/events/{id}", self.delete_event),
            web.get("/reports", self.list_reports), web.post("/reports", self.create_report),
            web.get("/reports/{id}", self.get_report), web.put("/reports/{id}", self.update_report),
            web.delete("/reports/{id}", self.delete_report),
            web.get("/subscriptions", self.list_subscriptions),
            web.post("/subscriptions", self.create_subscription),
            web.get("/subscriptions/{id}", self.get_subscription),
            web.put("/subscriptions/{id}", self.update_subscription),
            web.delete("/subscriptions/{id}", self.delete_subscription),
            web.get("/vens", self.list_vens), web.post("/vens", self.create_ven),
            web.get("/vens/{id}", self.get_ven), web.put("/vens/{id}", self.update_ven),
            web.delete("/vens/{id}", self.delete_ven),
            web.get("/resources", self.list_resources), web.post("/resources", self.create_resource),
            web.get("/resources/{id}", self.get_resource),
            web.put("/resources/{id}", self.update_resource),
            web.delete("/resources/{id}", self.delete_resource),
            web.get("/auth/server", self.auth_server), web.post("/auth/token", self.token),
            web.get("/notifiers", self.notifiers),
        ]

    # --- auth ----------------------------------------------------------------
    async def caller(self, request: web.Request, scope: str) -> Principal:
        header, now = request.headers.get("Authorization"), self.clock.now()
        if self.tokens.external is not None:
            # Fetching the external server's keys (now and then) must not stall the loop.
            principal = await asyncio.to_thread(self.tokens.principal, header, now)
        else:
            principal = self.tokens.principal(header, now)
        principal.require(scope)
        return principal

    async def token(self, request: web.Request) -> web.Response:
        form = dict(await request.post()) if request.content_type == (
            "application/x-www-form-urlencoded") else {}
        basic = request.headers.get("Authorization", "")
        if basic.startswith("Basic "):     # client_secret_basic (RFC 6749 2.3.1)
            client_id, client_secret = basic_credentials(basic)
            form.setdefault("client_id", client_id)
            form.setdefault("client_secret", client_secret)
        if form.get("grant_type") not in (None, "client_credentials"):
            raise Problem(400, "grant_type: only client_credentials is supported",
                          [{"field": "grant_type", "message": "unsupported"}],
                          error="unsupported_grant_type")
        try:
            body = ClientCredentialRequest.model_validate(form)
        except ValidationError as err:
            problem = from_validation(err)
            problem.extra["error"] = "invalid_request"
            raise problem from None
        # scrypt is deliberately slow: keep it off the loop both edges share.
        grant = await asyncio.to_thread(self.tokens.grant, body.client_id, body.client_secret,
                                        body.scope, self.clock.now())
        return web.json_response(grant, headers={"Cache-Control": "no-store"})

    async def auth_server(self, request: web.Request) -> web.Response:
        base = self.settings.public_url or f"{request.scheme}://{request.host}"
        return web.json_response({"tokenURL": base.rstrip("/") + "/auth/token"})

    async def notifiers(self, request: web.Request) -> web.Response:
        await self.caller(request, auth.READ_TARGETS)
        return web.json_response({"WEBHOOK": True})

    # --- programs: program files, read-only here ----------------------------
    def _program_ids_of(self, ven_id: str) -> set[str]:
        ven = self.store.ven(ven_id)
        enrolled = {e.program_id for e in self.store.enrolments(ven_id=ven_id)}
        return enrolled | ({ven.program_id} if ven else set())

    def _visible_programs(self, p: Principal, targets: list[str] | None) -> list[Program]:
        programs = list(self.store.programs())
        if not p.is_bl:
            mine = self._program_ids_of(p.ven_id) if p.ven_id else set()
            if targets is not None and self._own_name(p) not in targets:
                return []
            return [row for row in programs if row.program_id in mine]
        for name in targets or ():      # filters are additive: every target must match
            ven = self.store.ven_by_name(name)
            wanted = self._program_ids_of(ven.ven_id) if ven else set()
            programs = [row for row in programs if row.program_id in wanted]
        return programs

    async def list_programs(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.READ_TARGETS)
        skip, limit = paging(request)
        rows = self._visible_programs(p, targets_query(request))[skip:skip + limit]
        return web.json_response([mapping.program_json(row) for row in rows])

    def _program(self, p: Principal, program_id: str) -> Program:
        for row in self._visible_programs(p, None):
            if row.program_id == program_id:
                return row
        raise Problem(404, f"no program {program_id}")

    async def get_program(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.READ_TARGETS)
        return web.json_response(mapping.program_json(self._program(p, request.match_info["id"])))

    async def create_program(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.WRITE_PROGRAMS)
        p.require_bl("writes programs")
        body = await parse(request, ProgramRequest)
        if self.store.program(body.programName) is not None:
            raise Problem(409, f"program {body.programName} exists")
        raise Problem(403, f"programs are program files here: add "
                      f"schedules/programs/{body.programName}.toml")

    async def put_program(self, request: web.Request) -> web.Response:
        """PUT and DELETE: the program file is the one source of a program's rules."""
        p = await self.caller(request, auth.WRITE_PROGRAMS)
        p.require_bl("writes programs")
        row = self._program(p, request.match_info["id"])
        if request.method == "PUT":
            await parse(request, ProgramRequest)
        raise Problem(403, f"program {row.program_id} is its program file "
                      f"(schedules/programs/{row.program_id}.toml): change it there")

    # --- events: the stored events 2.0b VENs receive -------------------------
    def _own_name(self, p: Principal) -> str | None:
        ven = self.store.ven(p.ven_id) if p.ven_id else None
        return ven.ven_name if ven else None

    def _events(self, p: Principal, program_id: str | None = None,
                targets: list[str] | None = None, active: bool | None = None,
                event_id: str | None = None, skip: int = 0, limit: int = MAX_LIMIT) -> list[Event]:
        query = select(Event).where(Event.status != CANCELLED)
        if not p.is_bl:
            if p.ven_id is None or (targets is not None and self._own_name(p) not in targets):
                return []
            query = query.join(EventTarget, EventTarget.event_id == Event.event_id).where(
                EventTarget.ven_id == p.ven_id, Event.status != PENDING)
        else:
            for name in targets or ():  # filters are additive: every target must match
                query = query.where(Event.event_id.in_(
                    select(EventTarget.event_id).join(Ven, Ven.ven_id == EventTarget.ven_id)
                    .where(Ven.ven_name == name)))
        if program_id is not None:
            query = query.where(Event.program_id == program_id)
        if active:
            query = query.where(Event.end_utc > self.clock.now())
        if event_id is not None:
            query = query.where(Event.event_id == event_id)
        with self.store.session() as s:
            return list(s.exec(query.order_by(Event.created_at, Event.event_id)
                               .offset(skip).limit(limit)).all())

    def _events_json(self, p: Principal, events: Sequence[Event]) -> list[dict]:
        if not p.is_bl:
            # Reading is delivery for a 3.1 VEN (a 2.0b VEN's is its poll).
            self.store.mark_delivered(p.ven_id, events)
            own = [self._own_name(p)]
            return [mapping.event_json(event, own) for event in events]
        names = self._target_names([event.event_id for event in events])
        return [mapping.event_json(event, names.get(event.event_id, [])) for event in events]

    def _target_names(self, event_ids: list[str]) -> dict[str, list[str]]:
        with self.store.session() as s:
            rows = s.exec(select(EventTarget.event_id, Ven.ven_name)
                          .join(Ven, Ven.ven_id == EventTarget.ven_id)
                          .where(EventTarget.event_id.in_(event_ids))
                          .order_by(Ven.ven_name)).all()
        names: dict[str, list[str]] = {}
        for event_id, name in rows:
            names.setdefault(event_id, []).append(name)
        return names

    async def list_events(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.READ_TARGETS)
        skip, limit = paging(request)
        events = self._events(p, object_id_query(request, "programID"), targets_query(request),
                              bool_query(request, "active"), skip=skip, limit=limit)
        return web.json_response(self._events_json(p, events))

    def _event(self, p: Principal, event_id: str) -> Event:
        events = self._events(p, event_id=event_id)
        if not events:
            raise Problem(404, f"no event {event_id}")
        return events[0]

    async def get_event(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.READ_TARGETS)
        event = self._event(p, request.match_info["id"])
        return web.json_response(self._events_json(p, [event])[0])

    async def create_event(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.WRITE_EVENTS)
        p.require_bl("writes events")
        body = await parse(request, EventRequest)
        program = self._program_file(body.programID)
        start, end = self._event_times(body)
        value = event_value(body, program)
        ven_ids = self._target_vens(body.targets, program)
        with refused_as_problem():
            event = event_control.create_event(
                self.store, self.clock, program, start, end, ven_ids, bl_actor(p),
                setpoint_kw=None if program.signal.value is not None else value)
        return web.json_response(self._events_json(p, [event])[0], status=201)

    async def update_event(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.WRITE_EVENTS)
        p.require_bl("writes events")
        event = self._event(p, request.match_info["id"])
        body = await parse(request, EventRequest)
        if body.programID != event.program_id:
            raise Problem(409, f"event {event.event_id} belongs to program {event.program_id}")
        if body.targets is not None and (set(body.targets) != set(
                self._target_names([event.event_id]).get(event.event_id, []))):
            raise Problem(409, "the targets of a published event cannot change: cancel it "
                          "(DELETE) and create another")
        start, end = self._event_times(body)
        program = self._program_file(event.program_id)
        value = event_value(body, program)
        # Only what the body changes: the dispatch rules re-check what a change touches.
        changes = {"start": start if start != event.start_utc else None,
                   "end": end if end != event.end_utc else None,
                   "setpoint_kw": value if program.signal.value is None
                   and value != event.signal_value else None}
        with refused_as_problem():
            try:
                event = event_control.change_event(self.store, self.clock, event.event_id,
                                                   bl_actor(p), **changes)
            except lifecycle.EventNotChangeable as err:
                raise Problem(409, str(err)) from None
        return web.json_response(self._events_json(p, [event])[0])

    async def delete_event(self, request: web.Request) -> web.Response:
        """A 3.1 delete is the 2.0b cancellation: targets get it; the event stays in the store."""
        p = await self.caller(request, auth.WRITE_EVENTS)
        p.require_bl("writes events")
        event = self._event(p, request.match_info["id"])
        shown = self._events_json(p, [event])[0]
        try:
            event_control.cancel(self.store, self.clock, event.event_id, bl_actor(p))
        except lifecycle.EventNotChangeable as err:    # a completed event
            raise Problem(400, str(err)) from None
        return web.json_response(shown)

    def _program_file(self, program_id: str) -> model.Program:
        if self.store.program(program_id) is None:
            raise bad_request("programID", f"no program {program_id}")
        try:
            return model.load(program_id)
        except (model.ProgramError, OSError) as err:
            raise Problem(409, f"program {program_id} has no valid program file: {err}") from None

    def _event_times(self, body: EventRequest) -> tuple[datetime, datetime]:
        if len(body.intervals) != 1:
            raise bad_request("intervals", "this VTN stores one interval per event "
                              "(one 2.0b signal value)")
        own = body.intervals[0].intervalPeriod
        start = (own.start if own and own.start else None) or (
            body.intervalPeriod.start if body.intervalPeriod else None)
        duration = (own.duration if own and own.duration else None) or (
            body.intervalPeriod.duration if body.intervalPeriod else None) or body.duration
        if start is None:
            raise bad_request("intervalPeriod.start", "an event needs a start")
        if duration is None or duration.total_seconds() <= 0:
            raise bad_request("intervalPeriod.duration", "an event needs a positive duration")
        if start == NOW:
            start = self.clock.now()
        return start, later(start, duration, "intervalPeriod.duration")

    def _target_vens(self, targets: list[str] | None, program: model.Program) -> list[str]:
        """venNames -> VEN ids (whether they may be targeted is a dispatch rule)."""
        if targets is None:
            return event_control.default_targets(self.store, program, self.clock)
        ven_ids = []
        for i, name in enumerate(targets):
            ven = self.store.ven_by_name(name)
            if ven is None:
                raise bad_request(f"targets.{i}", f"no VEN named {name} (targets are venNames)")
            ven_ids.append(ven.ven_id)
        return list(dict.fromkeys(ven_ids))     # a target named twice is one target

    # --- reports -------------------------------------------------------------
    def _owned(self, table, p: Principal, **filters) -> list:
        """Rows of a VEN-created object type (reports, subscriptions): a VEN's own only."""
        query = select(table)
        if not p.is_bl:
            query = query.where(table.client_id == p.client_id)
        for column, value in filters.items():
            if value is not None:
                query = query.where(getattr(table, column) == value)
        with self.store.session() as s:
            return list(s.exec(query.order_by(table.created_at)).all())

    def _save(self, row) -> None:
        with self.store.session() as s:
            s.add(row)
            s.commit()

    def _delete(self, table, key) -> None:
        with self.store.session() as s:
            s.delete(s.get(table, key))
            s.commit()

    def _reports(self, p: Principal, skip: int = 0, limit: int = MAX_LIMIT,
                 **filters) -> list[Oadr3Report]:
        return self._owned(Oadr3Report, p, **filters)[skip:skip + limit]

    async def list_reports(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.READ_VEN_OBJECTS)
        skip, limit = paging(request)
        rows = self._reports(p, skip, limit, program_id=object_id_query(request, "programID"),
                             event_id=object_id_query(request, "eventID"),
                             client_name=name_query(request, "clientName"))
        return web.json_response([report_json(row) for row in rows])

    def _report(self, p: Principal, report_id: str) -> Oadr3Report:
        rows = self._reports(p, report_id=report_id)
        if not rows:
            raise Problem(404, f"no report {report_id}")
        return rows[0]

    async def get_report(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.READ_VEN_OBJECTS)
        return web.json_response(report_json(self._report(p, request.match_info["id"])))

    async def _report_body(self, request: web.Request, p: Principal):
        if p.ven_id is None:
            raise Problem(403, f"client {p.client_id} speaks for no enrolled VEN")
        body, raw = await parse_raw(request, ReportRequest)
        if not self._events(p, event_id=body.eventID):
            raise bad_request("eventID", f"no event {body.eventID} for this VEN")
        return body, raw, telemetry_points(body)

    async def create_report(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.WRITE_REPORTS)
        body, raw, points = await self._report_body(request, p)
        now = self.clock.now()
        row = Oadr3Report(report_id=f"report-{uuid.uuid4().hex[:16]}", client_id=p.client_id,
                          ven_id=p.ven_id, client_name=body.clientName, event_id=body.eventID,
                          program_id=self.store.event(body.eventID).program_id,
                          body=json.dumps(raw), created_at=now, modified_at=now)
        self._save(row)
        self.store.record_points(p.ven_id, points, received_at=now)
        return web.json_response(report_json(row), status=201)

    async def update_report(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.WRITE_REPORTS)
        row = self._report(p, request.match_info["id"])
        body, raw, points = await self._report_body(request, p)
        if body.eventID != row.event_id:
            raise Problem(409, f"report {row.report_id} is about event {row.event_id}")
        row.client_name, row.body, row.modified_at = body.clientName, json.dumps(raw), \
            self.clock.now()
        self._save(row)
        self.store.record_points(p.ven_id, points, received_at=row.modified_at)
        return web.json_response(report_json(row))

    async def delete_report(self, request: web.Request) -> web.Response:
        """The report goes; its telemetry stays (it is settlement data)."""
        p = await self.caller(request, auth.WRITE_REPORTS)
        row = self._report(p, request.match_info["id"])
        self._delete(Oadr3Report, row.report_id)
        return web.json_response(report_json(row))

    # --- subscriptions -------------------------------------------------------
    def _subscriptions(self, p: Principal, skip: int = 0, limit: int = MAX_LIMIT,
                       objects: list[str] | None = None, **filters) -> list[Oadr3Subscription]:
        rows = self._owned(Oadr3Subscription, p, **filters)
        if objects is not None:
            rows = [row for row in rows if set(objects) & subscribed_objects(row)]
        return rows[skip:skip + limit]

    async def list_subscriptions(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.READ_VEN_OBJECTS)
        skip, limit = paging(request)
        objects = request.query.getall("objects", None)
        for i, name in enumerate(objects or ()):
            if name not in OBJECT_TYPES:
                raise bad_request(f"objects.{i}", f"one of {', '.join(OBJECT_TYPES)}")
        rows = self._subscriptions(p, skip, limit, objects,
                                   program_id=object_id_query(request, "programID"),
                                   client_name=name_query(request, "clientName"))
        return web.json_response([subscription_json(row) for row in rows])

    def _subscription(self, p: Principal, subscription_id: str) -> Oadr3Subscription:
        rows = self._subscriptions(p, subscription_id=subscription_id)
        if not rows:
            raise Problem(404, f"no subscription {subscription_id}")
        return rows[0]

    async def get_subscription(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.READ_VEN_OBJECTS)
        return web.json_response(subscription_json(self._subscription(p,
                                                                      request.match_info["id"])))

    async def _subscription_body(self, request: web.Request, p: Principal):
        body, raw = await parse_raw(request, SubscriptionRequest)
        for i, operation in enumerate(body.objectOperations):
            url = urlsplit(operation.callbackUrl)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise bad_request(f"objectOperations.{i}.callbackUrl",
                                  "an absolute http(s) URL with a host")
        if body.programID is not None:
            try:
                self._program(p, body.programID)
            except Problem:
                raise bad_request("programID", f"no program {body.programID}") from None
        return body, raw

    async def create_subscription(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.WRITE_SUBSCRIPTIONS)
        body, raw = await self._subscription_body(request, p)
        now = self.clock.now()
        row = Oadr3Subscription(subscription_id=f"sub-{uuid.uuid4().hex[:16]}",
                                client_id=p.client_id, client_name=body.clientName,
                                program_id=body.programID, body=json.dumps(raw), created_at=now,
                                modified_at=now)
        self._save(row)
        return web.json_response(subscription_json(row), status=201)

    async def update_subscription(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.WRITE_SUBSCRIPTIONS)
        row = self._subscription(p, request.match_info["id"])
        body, raw = await self._subscription_body(request, p)
        row.client_name, row.program_id, row.body = body.clientName, body.programID, json.dumps(raw)
        row.modified_at = self.clock.now()
        self._save(row)
        return web.json_response(subscription_json(row))

    async def delete_subscription(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.WRITE_SUBSCRIPTIONS)
        row = self._subscription(p, request.match_info["id"])
        self._delete(Oadr3Subscription, row.subscription_id)
        return web.json_response(subscription_json(row))

    # --- vens ----------------------------------------------------------------
    def _vens(self, p: Principal, skip: int = 0, limit: int = MAX_LIMIT,
              ven_name: str | None = None, targets: list[str] | None = None,
              ven_id: str | None = None) -> list[Ven]:
        query = select(Ven)
        if not p.is_bl:
            query = query.where(Ven.ven_id == p.ven_id)   # None matches nothing
        if ven_name is not None:
            query = query.where(Ven.ven_name == ven_name)
        for name in targets or ():      # a VEN's one target is its name; every one must match
            query = query.where(Ven.ven_name == name)
        if ven_id is not None:
            query = query.where(Ven.ven_id == ven_id)
        with self.store.session() as s:
            return list(s.exec(query.order_by(Ven.ven_id).offset(skip).limit(limit)).all())

    async def list_vens(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.READ_VEN_OBJECTS)
        skip, limit = paging(request)
        rows = self._vens(p, skip, limit, name_query(request, "venName"), targets_query(request))
        return web.json_response([mapping.ven_json(row) for row in rows])

    def _ven(self, p: Principal, ven_id: str) -> Ven:
        rows = self._vens(p, ven_id=ven_id)
        if not rows:
            raise Problem(404, f"no ven {ven_id}")
        return rows[0]

    async def get_ven(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.READ_VEN_OBJECTS)
        return web.json_response(mapping.ven_json(self._ven(p, request.match_info["id"])))

    async def _ven_body(self, request: web.Request, p: Principal):
        body = await parse(request, VEN_REQUEST)
        if isinstance(body, BlVenRequest):
            p.require_bl("grants targets (BL_VEN_REQUEST)")
            for i, target in enumerate(body.targets or ()):
                if target != body.venName:
                    raise bad_request(f"targets.{i}", "a VEN's one target here is its venName")
        elif p.is_bl:
            raise bad_request("objectType", "BL writes ven objects as BL_VEN_REQUEST (clientID)")
        return body

    async def create_ven(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.WRITE_VENS)
        body = await self._ven_body(request, p)
        if not p.is_bl:
            if p.ven_id is not None:    # (the YAML lists no 409 for POST /vens)
                raise bad_request("venName", f"this client's VEN exists: GET /vens/{p.ven_id}")
            raise Problem(403, f"client {p.client_id} is not enrolled: business logic creates "
                          "its ven object (BL_VEN_REQUEST with this clientID)")
        program_id = attribute(body.attributes, mapping.PROGRAM_ID, "attributes")
        device_kind = attribute(body.attributes, mapping.DEVICE_KIND, "attributes")
        if self.store.program(program_id) is None:
            raise bad_request("attributes", f"{mapping.PROGRAM_ID}: no program {program_id}")
        if self.store.ven_by_name(body.venName) is not None:
            raise bad_request("venName", f"a VEN named {body.venName} exists")
        now = self.clock.now()
        ven_id = body.venName if is_object_id(body.venName) and not self.store.ven(
            body.venName) else f"ven-{uuid.uuid4().hex[:12]}"
        # The fingerprint column identifies 2.0b certificates; a 3.1-only VEN has none, so it
        # gets a value no certificate fingerprint (hex pairs) can take.
        ven = Ven(ven_id=ven_id, ven_name=body.venName, fingerprint=f"oadr3:{body.clientID}",
                  program_id=program_id, device_kind=device_kind, client_id=body.clientID,
                  created_at=now, modified_at=now)
        try:
            self.store.enrol(ven)
        except IntegrityError:
            raise bad_request("clientID", f"client {body.clientID} already has a VEN") from None
        return web.json_response(mapping.ven_json(ven), status=201)

    async def update_ven(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.WRITE_VENS)
        ven = self._ven(p, request.match_info["id"])
        body = await self._ven_body(request, p)
        if body.venName != ven.ven_name:
            raise Problem(409, f"venName is the enrolled name {ven.ven_name}")
        for kind, current in ((mapping.PROGRAM_ID, ven.program_id),
                              (mapping.DEVICE_KIND, ven.device_kind)):
            given = attribute(body.attributes, kind, "attributes", required=False)
            if given not in (None, current):
                raise Problem(409, f"{kind} is {current} (enrolment), not {given}")
        with self.store.session() as s:
            row = s.get(Ven, ven.ven_id)
            if isinstance(body, BlVenRequest):
                row.client_id = body.clientID
            row.modified_at = self.clock.now()
            s.add(row)
            try:
                s.commit()
            except IntegrityError:
                raise Problem(409, f"clientID {row.client_id} already has a VEN") from None
        return web.json_response(mapping.ven_json(self.store.ven(ven.ven_id)))

    async def delete_ven(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.WRITE_VENS)
        ven = self._ven(p, request.match_info["id"])
        p.require_bl("ends an enrolment (deletes a ven)")
        shown = mapping.ven_json(ven)
        try:
            with self.store.session() as s:
                s.delete(s.get(Ven, ven.ven_id))
                s.commit()
        except IntegrityError:     # (the YAML lists no 409 for DELETE /vens/{venID})
            raise Problem(400, f"ven {ven.ven_id} has resources, events, reports or telemetry: "
                          "it stays (unenrol it instead)") from None
        return web.json_response(shown)

    # --- resources -----------------------------------------------------------
    def _resources(self, p: Principal, skip: int = 0, limit: int = MAX_LIMIT,
                   resource_name: str | None = None, ven_id: str | None = None,
                   targets: list[str] | None = None,
                   row_id: int | None = None) -> list[tuple[Resource, Ven]]:
        query = select(Resource, Ven).join(Ven, Ven.ven_id == Resource.ven_id)
        if not p.is_bl:
            query = query.where(Resource.ven_id == p.ven_id)
        if resource_name is not None:
            query = query.where(Resource.resource_id == resource_name)
        if ven_id is not None:
            query = query.where(Resource.ven_id == ven_id)
        for name in targets or ():
            query = query.where(Ven.ven_name == name)
        if row_id is not None:
            query = query.where(Resource.id == row_id)
        with self.store.session() as s:
            return list(s.exec(query.order_by(Resource.id).offset(skip).limit(limit)).all())

    async def list_resources(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.READ_VEN_OBJECTS)
        skip, limit = paging(request)
        rows = self._resources(p, skip, limit, name_query(request, "resourceName"),
                               object_id_query(request, "venID"), targets_query(request))
        return web.json_response([mapping.resource_json(r, v) for r, v in rows])

    def _resource(self, p: Principal, resource_id: str) -> tuple[Resource, Ven]:
        rows = self._resources(p, row_id=int(resource_id)) if resource_id.isdigit() and len(
            resource_id) < 18 else []
        if not rows:
            raise Problem(404, f"no resource {resource_id}")
        return rows[0]

    async def get_resource(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.READ_VEN_OBJECTS)
        return web.json_response(mapping.resource_json(*self._resource(p,
                                                                       request.match_info["id"])))

    async def _resource_body(self, request: web.Request, p: Principal):
        body = await parse(request, RESOURCE_REQUEST)
        if isinstance(body, BlResourceRequest):
            p.require_bl("grants targets (BL_RESOURCE_REQUEST)")
        ven = self._vens(p, ven_id=body.venID)
        if not ven:
            raise Problem(404, f"no ven {body.venID}")
        for i, target in enumerate(getattr(body, "targets", None) or ()):
            if target != ven[0].ven_name:
                raise bad_request(f"targets.{i}", "a resource's one target here is its VEN's name")
        return body, ven[0]

    async def create_resource(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.WRITE_VENS)
        body, ven = await self._resource_body(request, p)
        now = self.clock.now()
        resource = Resource(ven_id=ven.ven_id, resource_id=body.resourceName,
                            device_kind=attribute(body.attributes, mapping.DEVICE_KIND,
                                                  "attributes", required=False) or ven.device_kind,
                            created_at=now, modified_at=now)
        with self.store.session() as s:
            s.add(resource)
            try:
                s.commit()
            except IntegrityError:
                raise Problem(409, f"ven {ven.ven_id} has a resource {body.resourceName}") from None
        return web.json_response(mapping.resource_json(resource, ven), status=201)

    async def update_resource(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.WRITE_VENS)
        resource, ven = self._resource(p, request.match_info["id"])
        body, _ = await self._resource_body(request, p)
        if body.venID != resource.ven_id:
            raise Problem(409, f"resource {resource.id} belongs to ven {resource.ven_id}")
        with self.store.session() as s:
            row = s.get(Resource, resource.id)
            row.resource_id = body.resourceName
            row.device_kind = attribute(body.attributes, mapping.DEVICE_KIND, "attributes",
                                        required=False) or row.device_kind
            row.modified_at = self.clock.now()
            s.add(row)
            try:
                s.commit()
            except IntegrityError:
                raise Problem(409, f"ven {ven.ven_id} has a resource {body.resourceName}") from None
        return web.json_response(mapping.resource_json(row, ven))

    async def delete_resource(self, request: web.Request) -> web.Response:
        p = await self.caller(request, auth.WRITE_VENS)
        resource, ven = self._resource(p, request.match_info["id"])
        self._delete(Resource, resource.id)
        return web.json_response(mapping.resource_json(resource, ven))


# --- request parsing ----------------------------------------------------------
def basic_credentials(header: str) -> tuple[str, str]:
    """RFC 6749 2.3.1: both parts form-encoded, then HTTP Basic."""
    try:
        decoded = base64.b64decode(header[len("Basic "):].strip(), validate=True).decode()
        client_id, client_secret = decoded.split(":", 1)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Problem(401, "malformed Basic credentials", error="invalid_client") from None
    return unquote_plus(client_id), unquote_plus(client_secret)


async def parse_raw(request: web.Request, schema: type[BaseModel]):
    """The validated body, and the members of it the schema knows (stored as sent)."""
    data = await _json(request)
    try:
        body = schema.model_validate(data)
    except ValidationError as err:
        raise from_validation(err) from None
    return body, {name: data[name] for name in schema.model_fields if name in data}


async def parse(request: web.Request, schema: type[BaseModel] | TypeAdapter):
    data = await _json(request)
    try:
        if isinstance(schema, TypeAdapter):
            return schema.validate_python(data)
        return schema.model_validate(data)
    except ValidationError as err:
        raise from_validation(err) from None


async def _json(request: web.Request):
    if request.content_type != "application/json":
        raise bad_request("body", "send application/json")
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise bad_request("body", "not valid JSON") from None
    if not isinstance(data, dict):
        raise bad_request("body", "a JSON object")
    return data


def paging(request: web.Request) -> tuple[int, int]:
    return (int_query(request, "skip", 0, 2 ** 31 - 1, 0),
            int_query(request, "limit", 0, MAX_LIMIT, MAX_LIMIT))


def int_query(request: web.Request, name: str, low: int, high: int, default: int) -> int:
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = int(text)
    except ValueError:
        raise bad_request(name, "an integer") from None
    if not low <= value <= high:
        raise bad_request(name, f"from {low} to {high}")
    return value


def bool_query(request: web.Request, name: str) -> bool | None:
    text = request.query.get(name)
    if text is None:
        return None
    if text.lower() not in ("true", "false"):
        raise bad_request(name, "true or false")
    return text.lower() == "true"


def name_query(request: web.Request, name: str) -> str | None:
    text = request.query.get(name)
    if text is not None and not 1 <= len(text) <= 128:
        raise bad_request(name, "1 to 128 characters")
    return text


def object_id_query(request: web.Request, name: str) -> str | None:
    text = name_query(request, name)
    if text is not None and not is_object_id(text):
        raise bad_request(name, "letters, digits, _ and - only")
    return text


def targets_query(request: web.Request) -> list[str] | None:
    targets = request.query.getall("targets", None)
    for i, target in enumerate(targets or ()):
        if not 1 <= len(target) <= 128:
            raise bad_request(f"targets.{i}", "1 to 128 characters")
    return targets


def is_object_id(text: str) -> bool:
    return 1 <= len(text) <= 128 and all(c.isascii() and (c.isalnum() or c in "_-") for c in text)


def attribute(attributes: list[ValuesMap] | None, kind: str, field: str,
              required: bool = True) -> str | None:
    for i, values_map in enumerate(attributes or ()):
        if values_map.type == kind:
            if len(values_map.values) != 1 or not isinstance(values_map.values[0], str):
                raise bad_request(f"{field}.{i}.values", f"{kind} takes one string")
            return values_map.values[0]
    if required:
        raise bad_request(field, f"needs a {kind} attribute (one string)")
    return None


def bl_actor(p: Principal) -> Actor:
    """A 3.1 business-logic client, as the audit trail names it (it may not override)."""
    return Actor(f"oadr3:{p.client_id}", p.role)


@contextmanager
def refused_as_problem():
    """Dispatch-rule refusals as RFC 7807 problems: 409 naming each rule (a BL client has
    no override); an event that cannot be built at all is a 400."""
    try:
        yield
    except event_control.RulesRefused as err:
        raise Problem(409, f"refused by the dispatch rules: {err}",
                      [{"field": v.field, "message": v.message, "rule": v.rule}
                       for v in err.violations],
                      violations=[v.as_dict() for v in err.violations]) from None
    except InputError as err:
        raise Problem(400, str(err), [{"field": f, "message": m} for f, m in err.problems]) \
            from None


def event_value(body: EventRequest, program: model.Program) -> float:
    """The event's one value as the program's 2.0b signal carries it."""
    signal = mapping.payload_for(program.signal.name, program.signal.type)
    if signal is None:
        raise Problem(409, f"program {program.id}'s signal {program.signal.name} "
                      f"{program.signal.type} has no 3.1 payload type here")
    payloads = body.intervals[0].payloads
    for p, payload in enumerate(payloads):
        if payload.type in mapping.NO_COUNTERPART:
            raise bad_request(f"intervals.0.payloads.{p}.type",
                              f"{payload.type} has no 2.0b counterpart in this VTN")
        if payload.type != signal.payload_type:
            raise bad_request(f"intervals.0.payloads.{p}.type",
                              f"program {program.id} takes {signal.payload_type}")
    if len(payloads) != 1:
        raise bad_request("intervals.0.payloads", f"one {signal.payload_type} payload")
    values = payloads[0].values
    if len(values) != 1 or isinstance(values[0], bool) or not isinstance(values[0], (int, float)):
        raise bad_request("intervals.0.payloads.0.values", "one number")
    value = values[0] / signal.scale
    if program.signal.value is not None and value != program.signal.value:
        raise bad_request("intervals.0.payloads.0.values",
                          f"program {program.id} always sends "
                          f"{program.signal.value * signal.scale:g}")
    return value


def report_json(row: Oadr3Report) -> dict:
    return mapping.stored_json(row, row.report_id, "REPORT", json.loads(row.body))


def subscription_json(row: Oadr3Subscription) -> dict:
    return mapping.stored_json(row, row.subscription_id, "SUBSCRIPTION", json.loads(row.body))


def subscribed_objects(row: Oadr3Subscription) -> set[str]:
    return {name for operation in json.loads(row.body).get("objectOperations", ())
            for name in operation.get("objects", ())}
