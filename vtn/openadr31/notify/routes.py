"""GET /notifiers and the MQTT topic endpoints (GET /notifiers/mqtt/topics/...).

Business logic may read every topic listing. A VEN gets its own `vens/{venID}/...`
topics (another VEN's is a 404, as GET /vens/{venID} is) and the listings of the
programs it is enrolled in; the all-objects listings that the YAML marks read_bl are a
403 for it, and a program's events topic (business logic's, every target's events) a 404.
Which topics carry notifications today: events/*, programs/{id}/events/* (business
logic) and vens/{venID}/events/* (that VEN); programs are program files and change by
no API call, so their topics stay quiet. The broker's ACL enforces the same split.
"""
from __future__ import annotations

from aiohttp import web

from vtn.openadr31 import auth
from vtn.openadr31.notify.mqtt import advertised
from vtn.openadr31.notify.topics import Topics
from vtn.openadr31.problems import Problem

BASE = "/notifiers/mqtt/topics"
BL_ONLY = ("events", "reports", "subscriptions", "vens", "resources")


class NotifierRoutes:
    def __init__(self, api):
        self.api = api
        mqtt = api.settings.mqtt
        self.mqtt = mqtt
        self.topics = Topics(mqtt.topic_prefix) if mqtt else None

    def routes(self) -> list[web.RouteDef]:
        routes = [web.get("/notifiers", self.notifiers),
                  web.get(f"{BASE}/programs", self.programs),
                  web.get(BASE + "/programs/{id}", self.program),
                  web.get(BASE + "/programs/{id}/events", self.program_events)]
        routes += [web.get(f"{BASE}/{kind}", self._bl_only(kind)) for kind in BL_ONLY]
        routes += [web.get(BASE + "/vens/{id}", self.ven)]
        routes += [web.get(BASE + "/vens/{id}/" + kind, self._of_ven(kind))
                   for kind in ("events", "programs", "resources")]
        return routes

    async def notifiers(self, request: web.Request) -> web.Response:
        await self.api.caller(request, auth.READ_TARGETS)
        body = {"WEBHOOK": True}
        if self.mqtt is not None:
            body["MQTT"] = advertised(self.mqtt)
        return web.json_response(body)

    async def _topics(self, request: web.Request, scope: str) -> auth.Principal:
        p = await self.api.caller(request, scope)
        if self.topics is None:
            raise Problem(404, "this VTN has no MQTT notifier: use webhooks (POST /subscriptions)")
        return p

    async def programs(self, request: web.Request) -> web.Response:
        await self._topics(request, auth.READ_TARGETS)
        return web.json_response(self.topics.listing("programs"))

    async def program(self, request: web.Request) -> web.Response:
        p = await self._topics(request, auth.READ_TARGETS)
        row = self.api._program(p, request.match_info["id"])
        return web.json_response(self.topics.listing(f"programs/{row.program_id}", create=False))

    async def program_events(self, request: web.Request) -> web.Response:
        p = await self._topics(request, auth.READ_TARGETS)
        row = self.api._program(p, request.match_info["id"])
        if not p.is_bl:     # (the YAML lists no 403 here)
            raise Problem(404, "a program's events topic is business logic's: a VEN reads "
                          "GET /notifiers/mqtt/topics/vens/{venID}/events")
        return web.json_response(self.topics.listing(f"programs/{row.program_id}/events"))

    def _bl_only(self, kind: str):
        async def handler(request: web.Request) -> web.Response:
            p = await self._topics(request, auth.READ_TARGETS)
            p.require_bl(f"reads the topics of all {kind}")
            return web.json_response(self.topics.listing(kind))
        return handler

    async def ven(self, request: web.Request) -> web.Response:
        p = await self._topics(request, auth.READ_VEN_OBJECTS)
        row = self.api._ven(p, request.match_info["id"])
        return web.json_response(self.topics.listing(f"vens/{row.ven_id}", create=False))

    def _of_ven(self, kind: str):
        async def handler(request: web.Request) -> web.Response:
            p = await self._topics(request, auth.READ_VEN_OBJECTS)
            row = self.api._ven(p, request.match_info["id"])
            return web.json_response(self.topics.listing(f"vens/{row.ven_id}/{kind}"))
        return handler
