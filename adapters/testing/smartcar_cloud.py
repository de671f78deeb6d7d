"""A local aiohttp stand-in for a Smartcar-style vehicle cloud, replaying recorded responses.

The real cloud cannot be reached from tests, so this server answers with the
response bodies in `recordings/smartcar_v2.json` (shaped after the provider's
published API v2.0 reference), filled in from one simulated car. It enforces
what the adapter must get right: bearer tokens that expire, refresh tokens
that rotate (an old one is rejected), and commands that change the car.

Fault switches: `unreachable` (409 VEHICLE_STATE UNREACHABLE), `slow_s`
(delays every answer), `rate_limited` (429), `revoke_refresh()`.
"""
from __future__ import annotations

import asyncio
import base64
import itertools
import json
from datetime import datetime, timedelta
from importlib import resources
from typing import Any

from aiohttp import web

from adapters.testing.ev_physics import BatteryPhysics
from flexadr.clock import Clock, SystemClock


def load_recordings() -> dict[str, Any]:
    text = resources.files("adapters.testing").joinpath("recordings/smartcar_v2.json").read_text()
    return json.loads(text)


def _fill(template: Any, values: dict[str, Any]) -> Any:
    """Replace "{name}" strings by typed values (a bool stays a bool)."""
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, values) for v in template]
    if isinstance(template, str) and template.startswith("{") and template.endswith("}"):
        return values.get(template[1:-1], template)
    return template


class SmartcarCloudSim:
    def __init__(self, battery: BatteryPhysics, clock: Clock | None = None, *, vehicle_id: str = "veh-1",
                 client_id: str = "client", client_secret: str = "secret", refresh_token: str = "refresh-0",
                 access_ttl_s: int = 7200, tick_s: float = 0.05):
        self.battery = battery
        self.clock = clock or SystemClock()
        self.vehicle_id = vehicle_id
        self.client_id, self.client_secret = client_id, client_secret
        self.access_ttl_s = access_ttl_s
        self.tick_s = tick_s
        self.recordings = load_recordings()
        self.plugged_in = battery.plugged_in
        self.charging_allowed = True  # START/STOP flips this
        self.limit_fraction = 0.9
        self.unreachable = False
        self.rate_limited = False
        self.slow_s = 0.0
        self.commands: list[dict[str, Any]] = []  # what the adapter asked the car to do
        self.refreshes = 0
        self._refresh_token = refresh_token
        self._access: dict[str, datetime] = {}
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._physics_task: asyncio.Task | None = None
        self.url = ""

    # --- DevicePeer -------------------------------------------------------------
    def power_kw(self) -> float:
        return self.battery.kw

    def soc_pct(self) -> float:
        return self.battery.soc_pct

    # --- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/oauth/token", self._token)
        base = "/v2.0/vehicles/{vehicle_id}"
        app.router.add_get(base + "/charge", self._charge_status)
        app.router.add_post(base + "/charge", self._charge_command)
        app.router.add_get(base + "/battery", self._battery)
        app.router.add_get(base + "/battery/capacity", self._capacity)
        app.router.add_get(base + "/charge/limit", self._get_limit)
        app.router.add_post(base + "/charge/limit", self._set_limit)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self._physics_task = asyncio.ensure_future(self._physics())

    async def stop(self) -> None:
        if self._physics_task is not None:
            self._physics_task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def revoke_refresh(self) -> None:
        self._refresh_token = "revoked-" + self._refresh_token

    def expire_access_tokens(self) -> None:
        self._access = {t: self.clock.now() - timedelta(seconds=1) for t in self._access}

    # --- the car ----------------------------------------------------------------
    def _limit_pct(self) -> float:
        return self.limit_fraction * 100

    def advance(self, now: datetime) -> None:
        """Run the car's physics to `now` under the charge state in force."""
        self.battery.charge_target_pct = self._limit_pct()
        charging = self.plugged_in and self.charging_allowed
        self.battery.step(now, None if charging else 0.0)

    def set_plugged_in(self, plugged_in: bool) -> None:
        """The owner plugs the car in or drives off."""
        self.advance(self.clock.now())
        self.plugged_in = plugged_in
        self.battery.plugged_in = plugged_in
        self.advance(self.clock.now())

    async def _physics(self) -> None:
        while True:
            self.advance(self.clock.now())
            await asyncio.sleep(self.tick_s)

    def _state(self) -> str:
        if self.battery.soc_pct >= self._limit_pct():
            return "FULLY_CHARGED"
        if self.battery.kw > 0:
            return "CHARGING"
        return "NOT_CHARGING"

    # --- HTTP ----------------------------------------------------------------------
    def _respond(self, name: str, **values: Any) -> web.Response:
        record = self.recordings[name]
        values = {"now": self.clock.now().isoformat(), "request_id": f"req-{next(self._ids)}", **values}
        headers = {k: str(v) for k, v in _fill(record.get("headers", {}), values).items()}
        return web.json_response(_fill(record["body"], values), status=record["status"], headers=headers)

    async def _token(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.slow_s)
        expected = "Basic " + base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        form = await request.post()
        if (request.headers.get("Authorization") != expected or form.get("grant_type") != "refresh_token"
                or form.get("refresh_token") != self._refresh_token):
            return self._respond("token_invalid_grant")
        self.refreshes += 1
        access = f"access-{next(self._ids)}"
        self._refresh_token = f"refresh-{next(self._ids)}"  # rotation: the old one is now dead
        self._access[access] = self.clock.now() + timedelta(seconds=self.access_ttl_s)
        return self._respond("token", access_token=access, refresh_token=self._refresh_token,
                             expires_in=self.access_ttl_s)

    async def _guard(self, request: web.Request) -> web.Response | None:
        """Common checks before any vehicle endpoint: latency, auth, reachability."""
        await asyncio.sleep(self.slow_s)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        expires = self._access.get(token)
        if expires is None or expires <= self.clock.now():
            return self._respond("error_authentication")
        if request.match_info["vehicle_id"] != self.vehicle_id:
            return web.json_response({"type": "RESOURCE_NOT_FOUND", "statusCode": 404}, status=404)
        if self.rate_limited:
            return self._respond("error_rate_limit")
        if self.unreachable:
            return self._respond("error_vehicle_unreachable")
        return None

    async def _charge_status(self, request: web.Request) -> web.Response:
        self.advance(self.clock.now())
        return await self._guard(request) or self._respond(
            "charge_status", plugged_in=self.plugged_in, state=self._state())

    async def _charge_command(self, request: web.Request) -> web.Response:
        if (refusal := await self._guard(request)) is not None:
            return refusal
        body = await request.json()
        if body.get("action") not in ("START", "STOP"):
            return web.json_response({"type": "VALIDATION", "statusCode": 400}, status=400)
        if not self.plugged_in:
            return self._respond("error_not_plugged")
        self.commands.append(body)
        self.advance(self.clock.now())
        self.charging_allowed = body["action"] == "START"
        self.advance(self.clock.now())        # the car obeys at once
        return self._respond("charge_command_ok")

    async def _battery(self, request: web.Request) -> web.Response:
        self.advance(self.clock.now())
        return await self._guard(request) or self._respond(
            "battery", soc_fraction=round(self.battery.soc_pct / 100, 4),
            range_km=round(self.battery.soc_pct * 4.2, 1))

    async def _capacity(self, request: web.Request) -> web.Response:
        return await self._guard(request) or self._respond("battery_capacity",
                                                           capacity_kwh=self.battery.capacity_kwh)

    async def _get_limit(self, request: web.Request) -> web.Response:
        return await self._guard(request) or self._respond("charge_limit", limit_fraction=self.limit_fraction)

    async def _set_limit(self, request: web.Request) -> web.Response:
        if (refusal := await self._guard(request)) is not None:
            return refusal
        body = await request.json()
        limit = body.get("limit")
        if not isinstance(limit, (int, float)) or not 0.5 <= limit <= 1.0:
            return web.json_response({"type": "VALIDATION", "statusCode": 400,
                                      "description": "limit must be within [0.5, 1]"}, status=400)
        self.commands.append(body)
        self.advance(self.clock.now())
        self.limit_fraction = float(limit)
        return self._respond("charge_command_ok")
