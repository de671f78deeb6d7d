"""The operator console: server-rendered pages under /ui on the VTN's admin listener.

Pages are Jinja2 templates (autoescaped) with vendored htmx and uPlot (static/vendor,
no CDN). Login makes a console session (vtn/auth.py); its cookie is HttpOnly,
SameSite=Strict (and Secure on HTTPS). Pages only read; every change a page offers goes
to the admin API itself (/api/..., console.js), authenticated by the session cookie plus
the session's CSRF token in the X-CSRF-Token header, so the API's checks, program
rules and overrides apply to the console exactly as to any other client. The Now page
follows the fleet live over server-sent events (/ui/now/stream).
"""
from __future__ import annotations

import asyncio
import json
import logging
import secrets
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, select_autoescape

from schedules import sources
from vtn import audit, auth
from vtn.console import views
from vtn.settlement.html_report import to_html
from vtn.settlement.output import to_csv
from vtn.store import OPERATOR, ROLES

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
COOKIE = "flexadr_session"
LOGIN_COOKIE = "flexadr_login_csrf"     # double-submit token of the login form
CSRF_HEADER = "X-CSRF-Token"
STREAM_CHECK_S = 0.25       # how often a live stream looks for new telemetry / event changes
STREAM_REFRESH_S = 10.0     # ... and recomputes anyway (online / offline moves with time)
AUDIT_ROWS = 500
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
SESSION = web.RequestKey("console_session", tuple)     # (Principal, CSRF token)


def cookie_session(store, request: web.Request, now: datetime):
    """(Principal, CSRF token) of the request's console session cookie, or None."""
    session_id = request.cookies.get(COOKIE)
    return auth.session_principal(store, session_id, now) if session_id else None


def csrf_ok(request: web.Request, csrf: str, given: str | None = None) -> bool:
    given = given if given is not None else request.headers.get(CSRF_HEADER, "")
    return bool(given) and auth.same_secret(given, csrf)


class Console:
    def __init__(self, vtn):
        self.vtn = vtn
        self.streams: set[asyncio.Event] = set()
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"),
                               autoescape=select_autoescape(default=True, default_for_string=True))
        self.env.filters["utc"] = _utc
        self.env.filters["kw"] = _kw
        self.env.filters["fromjson"] = json.loads

    @property
    def store(self):
        return self.vtn.store

    def install(self, app: web.Application) -> None:
        app.router.add_get("/ui", self.home)
        app.router.add_get("/ui/", self.home)
        app.router.add_get("/ui/login", self.login_page)
        app.router.add_post("/ui/login", self.login)
        app.router.add_post("/ui/logout", self.logout)
        pages = [("/ui/now", self.now), ("/ui/now/stream", self.now_stream),
                 ("/ui/events", self.events), ("/ui/events/{event_id}", self.event),
                 ("/ui/vens", self.vens), ("/ui/programs", self.programs),
                 ("/ui/tomorrow", self.tomorrow),
                 ("/ui/results", self.results), ("/ui/results.csv", self.results_csv),
                 ("/ui/results/report.html", self.results_report), ("/ui/audit", self.audit)]
        for path, handler in pages:
            app.router.add_get(path, self._page(handler))
        app.router.add_static("/ui/static", HERE / "static")
        app.on_shutdown.append(self._end_streams)
        app.middlewares.append(_security_headers)

    # --- sessions -------------------------------------------------------------
    def _page(self, handler):
        async def page(request: web.Request):
            found = cookie_session(self.store, request, self.vtn.clock.now())
            if found is None:
                raise web.HTTPSeeOther("/ui/login")
            request[SESSION] = found
            return await handler(request)
        return page

    def render(self, request, template: str, status: int = 200, **values) -> web.Response:
        principal, csrf = request.get(SESSION, (None, ""))
        text = self.env.get_template(template).render(
            principal=principal, csrf=csrf, path=request.path,
            can_operate=principal is not None and principal.allows(OPERATOR), **values)
        return web.Response(text=text, status=status, content_type="text/html")

    async def home(self, request):
        raise web.HTTPSeeOther("/ui/now")

    async def login_page(self, request, status: int = 200, message: str = ""):
        token = secrets.token_urlsafe(24)
        response = self.render(request, "login.html", status=status, login_csrf=token,
                               message=message)
        response.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="Strict",
                            secure=request.secure, path="/ui/login")
        return response

    async def login(self, request):
        form = await request.post()
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not csrf_ok(request, expected, str(form.get("csrf", ""))):
            return await self.login_page(request, 403, "the form expired: try again")
        remote = request.remote or "?"
        if self.vtn.admin.failed_auth.blocked_for(remote) is not None:
            return await self.login_page(request, 429, "too many failed logins: wait a minute")
        username = str(form.get("username", ""))
        session_id = auth.login(self.store, username, str(form.get("password", "")),
                                self.vtn.clock.now())
        if session_id is None:
            self.vtn.admin.failed_auth.failed(remote)
            log.warning("console login refused for %r from %s", username, remote)
            return await self.login_page(request, 401, "wrong username or password")
        response = web.HTTPSeeOther("/ui/now")
        response.set_cookie(COOKIE, session_id, httponly=True, samesite="Strict",
                            secure=request.secure, path="/", max_age=int(
                                auth.SESSION_TTL.total_seconds()))
        response.del_cookie(LOGIN_COOKIE, path="/ui/login")
        raise response

    async def logout(self, request):
        found = cookie_session(self.store, request, self.vtn.clock.now())
        form = await request.post()
        if found is not None and csrf_ok(request, found[1], str(form.get("csrf", ""))):
            auth.logout(self.store, request.cookies[COOKIE])
        response = web.HTTPSeeOther("/ui/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    # --- pages ----------------------------------------------------------------
    def _poll(self):
        return self.vtn.config.poll_interval

    async def now(self, request):
        fleet = views.now_events(self.store, self.vtn.clock.now(), self._poll())
        return self.render(request, "now.html", fleet=fleet,
                           initial=json.dumps([f.as_json() for f in fleet]))

    async def now_stream(self, request):
        """Server-sent events: the Now page's figures (or one event's, ?event_id=) whenever
        telemetry arrives or an event or an answer changes."""
        event_id = request.query.get("event_id")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        stop = asyncio.Event()
        self.streams.add(stop)
        marker, sent, waited = None, None, 0.0
        try:
            while not stop.is_set():
                current = views.change_marker(self.store)
                if current != marker or waited >= STREAM_REFRESH_S:
                    marker, waited = current, 0.0
                    data = json.dumps([f.as_json() for f in self._live(event_id)])
                    if data != sent:
                        await response.write(f"data: {data}\n\n".encode())
                        sent = data
                try:
                    await asyncio.wait_for(stop.wait(), STREAM_CHECK_S)
                except asyncio.TimeoutError:
                    waited += STREAM_CHECK_S
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.streams.discard(stop)
        return response

    def _live(self, event_id: str | None) -> list[views.FleetEvent]:
        now = self.vtn.clock.now()
        if event_id is None:
            return views.now_events(self.store, now, self._poll())
        event = self.store.event(event_id)
        return [views.fleet_event(self.store, event, now, self._poll())] if event else []

    async def _end_streams(self, app) -> None:
        for stop in list(self.streams):
            stop.set()

    async def events(self, request):
        events = sorted(self.store.events(), key=lambda e: e.start_utc, reverse=True)
        return self.render(request, "events.html", events=events,
                           programs=[p.program_id for p in self.store.programs()])

    async def event(self, request):
        detail = views.event_detail(self.store, request.match_info["event_id"],
                                    self.vtn.clock.now(), self._poll())
        if detail is None:
            return self.render(request, "missing.html", status=404,
                               what=f"event {request.match_info['event_id']}")
        return self.render(request, "event.html", d=detail,
                           initial=json.dumps([detail.fleet.as_json()]),
                           stream=f"/ui/now/stream?event_id={quote(detail.event.event_id)}")

    async def vens(self, request):
        query = request.query.get("q", "")
        rows = views.ven_rows(self.store, self.vtn.clock.now(), self._poll(), query)
        template = "vens_rows.html" if request.headers.get("HX-Request") else "vens.html"
        return self.render(request, template, rows=rows, q=query)

    async def programs(self, request):
        try:       # alert feeds are files the planner reads: off the event loop
            programs, problem = await asyncio.to_thread(
                views.program_summaries, self.store, self.vtn.clock.now(),
                self.vtn.planner_settings), None
        except sources.DataFileError as err:
            programs, problem = views.program_summaries(self.store, self.vtn.clock.now()), str(err)
        return self.render(request, "programs.html", programs=programs, problem=problem,
                           planner=self.vtn.planner_settings is not None)

    async def tomorrow(self, request):
        try:       # the planner's data files are read off the event loop, as its own runs
            plans, problem = await asyncio.to_thread(
                views.tomorrow, self.store, self.vtn.planner_settings, self.vtn.clock), None
        except sources.DataFileError as err:
            plans, problem = [], str(err)
        return self.render(request, "tomorrow.html", plans=plans, problem=problem,
                           planner=self.vtn.planner_settings is not None,
                           charts=json.dumps({p.program_id: p.forecast for p in plans}))

    def _season_args(self, request) -> tuple[str, int]:
        program = request.query.get("program") or views.settlement_programs()[0]
        if program not in views.settlement_programs():
            raise web.HTTPBadRequest(text=f"no settlement for program {program}")
        try:
            season = int(request.query.get("season") or self.vtn.clock.now().year)
        except ValueError:
            raise web.HTTPBadRequest(text="season: a year, e.g. 2026") from None
        return program, season

    async def results(self, request):
        program, season = self._season_args(request)
        try:
            result = views.season_settlement(self.store, program, season)
            rows, problem = views.season_rows(self.store, result), None
        except ValueError as err:
            result, rows, problem = None, [], str(err)
        return self.render(request, "results.html", result=result, rows=rows, problem=problem,
                           program=program, season=season,
                           programs=views.settlement_programs())

    async def results_csv(self, request):
        program, season = self._season_args(request)
        try:
            result = views.season_settlement(self.store, program, season)
        except ValueError as err:
            raise web.HTTPNotFound(text=str(err)) from None
        return web.Response(text=to_csv(result), content_type="text/csv", headers={
            "Content-Disposition": f'attachment; filename="{program}-{season}.csv"'})

    async def results_report(self, request):
        program, season = self._season_args(request)
        try:
            result = views.season_settlement(self.store, program, season, fleet=True)
        except ValueError as err:
            raise web.HTTPNotFound(text=str(err)) from None
        return web.Response(text=to_html(result), content_type="text/html")

    async def audit(self, request):
        filters = {name: request.query.get(name) or None
                   for name in ("actor", "action", "subject_type", "subject_id")}
        with self.store.session() as s:
            rows = [audit.as_dict(e) for e in audit.query(s, **filters)]
        for row in rows:
            row["changes"] = views.audit_changes(row)
        rows = rows[::-1][:AUDIT_ROWS]      # newest first
        template = "audit_rows.html" if request.headers.get("HX-Request") else "audit.html"
        return self.render(request, template, rows=rows, filters=filters, roles=ROLES)


@web.middleware
async def _security_headers(request, handler):
    response = await handler(request)
    if request.path.startswith("/ui"):
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
    return response


def _utc(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _kw(value: float | None) -> str:
    return "—" if value is None else f"{value:,.1f} kW"
