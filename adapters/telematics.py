"""`telematics`: cars controlled through their maker's cloud, Smartcar-style API v2.0.

Endpoints used (per the provider's published reference):
    POST {auth_url}/oauth/token                 refresh_token grant, HTTP Basic client auth
    GET  {api_url}/v2.0/vehicles/{id}/charge    {"isPluggedIn", "state"}
    POST {api_url}/v2.0/vehicles/{id}/charge    {"action": "START" | "STOP"}
    GET  {api_url}/v2.0/vehicles/{id}/battery   {"percentRemaining", "range"}
    GET/POST {api_url}/v2.0/vehicles/{id}/charge/limit   {"limit": 0.5..1}

Charge delay = STOP at the window start (only if the car is plugged in and not
full), START at the end (only if we were the ones who stopped it). The API has
no standard charge schedule, so the adapter re-checks at every window edge.
A command reaches the car a round trip (or several) after the adapter sends
it, and a busy VEN sends it late: with `stop_lead_s` (program seconds, default
0) the STOP goes out that long before the window, so the car never charges in
it and is held off that much longer. The START at the end is not brought
forward.
Charge (storm preparation) = raise the charge limit to the target (the API takes
50-100 %) and START; the owner's limit is put back when the window ends.
Discharge is refused: these APIs have no V2X command.

Telemetry: the cloud has no meter. `kw` is `charge_kw` (config, the car's
nominal AC charging power) while the car says CHARGING, else 0, and the energy
registers integrate that estimate between the charge statuses the adapter sees:
on every read and right after each of its own START / STOP, so an event's
edges are where the commands put them. A car that stops by itself at its limit
between two reads is counted charging until the moment its SoC growth (the
reads' percentRemaining while it charged) says it got there; with fewer than two
reads in the charging stretch, until the second status. Treat them as estimates.
`time_scale` (default 1) compresses time for demos and replays, as in `sim`.

Tokens: access tokens are refreshed before they expire (and once more on a
401); refresh tokens rotate on every refresh, so the newest one is kept, and
written to `token_file` when configured so a restart does not lose it.

Tested against a local aiohttp server replaying recorded responses shaped
like the provider's published API (adapters/testing/smartcar_cloud.py); it
has not been run against the live cloud from this repository.

Config: vehicle_id, client_id, client_secret, refresh_token (required);
api_url, auth_url, access_token, token_file, request_timeout_s (10),
refresh_margin_s (300), charge_kw (7.2), stop_lead_s (0), time_scale (1).
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Mapping

import aiohttp

from adapters._schedule import hold_until_edges
from adapters.base import (
    Adapter,
    Capability,
    Charge,
    ChargeDelay,
    Command,
    CommandRefused,
    DeviceDisconnected,
    DeviceTimeout,
    Reading,
)
from flexadr.clock import Clock

log = logging.getLogger(__name__)

API_URL = "https://api.smartcar.com"
AUTH_URL = "https://auth.smartcar.com"
# VEHICLE_STATE codes that mean "the car is not there right now", not "no".
_UNREACHABLE_CODES = {"UNREACHABLE", "ASLEEP", "VEHICLE_OFFLINE_FOR_SERVICE"}


class TelematicsAuthError(CommandRefused):
    """The cloud refused our credentials; a person has to re-authorise the car."""


@dataclass
class Tokens:
    access_token: str | None
    refresh_token: str
    access_expires_at: datetime | None


@dataclass(frozen=True)
class ChargeStatus:
    plugged_in: bool
    state: str  # CHARGING | NOT_CHARGING | FULLY_CHARGED


@dataclass(frozen=True)
class SocReading:
    at: datetime
    soc_pct: float


def stop_moment(first: SocReading, last: SocReading, soc_now_pct: float) -> datetime | None:
    """When a car charging steadily from `first` to `last` reached `soc_now_pct`, where it
    stopped by itself; None when the readings show no growth."""
    span_s = (last.at - first.at).total_seconds()
    grown_pct = last.soc_pct - first.soc_pct
    if span_s <= 0 or grown_pct <= 0:
        return None
    return last.at + timedelta(seconds=max(0.0, soc_now_pct - last.soc_pct) * span_s / grown_pct)


def typed_error(status: int, body: Any) -> Exception:
    """A provider error response -> our typed error."""
    body = body if isinstance(body, dict) else {}
    kind, code = body.get("type"), body.get("code")
    text = f"HTTP {status} {kind}.{code}: {body.get('description', '')}".strip()
    if status == 401 or kind == "AUTHENTICATION":
        return TelematicsAuthError(text)
    if kind == "VEHICLE_STATE" and code in _UNREACHABLE_CODES:
        return DeviceDisconnected(text)
    if status == 429 or status >= 500:
        return DeviceTimeout(text)  # transient: retry later
    return CommandRefused(text)


class TelematicsAdapter(Adapter):
    capabilities = frozenset({Capability.CHARGE_DELAY, Capability.TELEMETRY})

    def __init__(self, config: Mapping[str, Any], clock: Clock):
        super().__init__(config, clock)
        missing = {"vehicle_id", "client_id", "client_secret", "refresh_token"} - set(self.config)
        if missing:
            raise ValueError(f"telematics config misses {sorted(missing)}")
        self.api_url = self.config.get("api_url", API_URL).rstrip("/")
        self.auth_url = self.config.get("auth_url", AUTH_URL).rstrip("/")
        self.vehicle_id = self.config["vehicle_id"]
        self.timeout_s = float(self.config.get("request_timeout_s", 10))
        self.refresh_margin = timedelta(seconds=float(self.config.get("refresh_margin_s", 300)))
        self.charge_kw = float(self.config.get("charge_kw", 7.2))
        self.time_scale = float(self.config.get("time_scale", 1.0))
        self.stop_lead = timedelta(seconds=float(self.config.get("stop_lead_s", 0)) / self.time_scale)
        self.token_file = Path(self.config["token_file"]) if self.config.get("token_file") else None
        self.tokens = self._initial_tokens()
        self._session: aiohttp.ClientSession | None = None
        self._refresh_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []
        self._we_stopped = False
        self._commands: list[Command] = []
        self._limit_before_pct: float | None = None  # the owner's charge limit while a Charge runs
        self._kwh_imported = 0.0
        self._last: tuple[datetime, float] | None = None  # (time, kw) of the latest charge status
        # The first and latest SoC read while the car charges, for where it stopped by itself.
        self._charging_socs: tuple[SocReading, SocReading] | None = None

    def _initial_tokens(self) -> Tokens:
        if self.token_file is not None and self.token_file.exists():
            saved = json.loads(self.token_file.read_text())
            expires = saved.get("access_expires_at")
            return Tokens(saved.get("access_token"), saved["refresh_token"],
                          datetime.fromisoformat(expires) if expires else None)
        return Tokens(self.config.get("access_token"), self.config["refresh_token"], None)

    # --- lifecycle ----------------------------------------------------------------
    async def start(self) -> None:
        self._session_or_new()

    async def stop(self) -> None:
        self._cancel_tasks()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _session_or_new(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        return self._session

    # --- HTTP edge ---------------------------------------------------------------
    async def _http(self, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
        try:
            async with self._session_or_new().request(method, url, **kwargs) as response:
                try:
                    body = await response.json(content_type=None)
                except (json.JSONDecodeError, aiohttp.ContentTypeError):
                    body = None
                return response.status, body
        except asyncio.TimeoutError:
            raise DeviceTimeout(f"{method} {url}: no answer within {self.timeout_s}s") from None
        except aiohttp.ClientConnectionError as exc:
            raise DeviceDisconnected(f"{method} {url}: {exc}") from exc

    async def _refresh(self) -> None:
        status, body = await self._http(
            "POST", f"{self.auth_url}/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": self.tokens.refresh_token},
            headers={"Authorization": self._basic_auth()},
        )
        if status != 200 or not isinstance(body, dict) or "access_token" not in body:
            error = body.get("error") if isinstance(body, dict) else None
            raise TelematicsAuthError(f"token refresh failed: HTTP {status} {error}")
        self.tokens = Tokens(
            body["access_token"],
            body.get("refresh_token", self.tokens.refresh_token),  # rotated: keep the newest
            self.clock.now() + timedelta(seconds=int(body.get("expires_in", 0))),
        )
        self._save_tokens()

    def _basic_auth(self) -> str:
        pair = f"{self.config['client_id']}:{self.config['client_secret']}".encode()
        return "Basic " + base64.b64encode(pair).decode()

    def _save_tokens(self) -> None:
        if self.token_file is None:
            return
        t = self.tokens
        self.token_file.write_text(json.dumps({
            "access_token": t.access_token, "refresh_token": t.refresh_token,
            "access_expires_at": t.access_expires_at.isoformat() if t.access_expires_at else None,
        }))

    async def _bearer(self, force_refresh: bool = False) -> str:
        async with self._refresh_lock:  # one refresh at a time: refresh tokens are single-use
            t = self.tokens
            stale = t.access_token is None or (
                t.access_expires_at is not None and t.access_expires_at - self.refresh_margin <= self.clock.now())
            if force_refresh or stale:
                await self._refresh()
            return self.tokens.access_token

    async def _api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        url = f"{self.api_url}/v2.0/vehicles/{self.vehicle_id}{path}"
        used = await self._bearer()
        for attempt in range(2):
            status, answer = await self._http(method, url, json=body,
                                              headers={"Authorization": f"Bearer {used}"})
            if status == 401 and attempt == 0:
                # Revoked or clock skew: one refresh, one retry.
                used = await self._bearer(force_refresh=self.tokens.access_token == used)
                continue
            if status >= 400:
                raise typed_error(status, answer)
            return answer
        raise typed_error(401, answer)

    # --- the car API ---------------------------------------------------------------
    async def charge_status(self, soc: SocReading | None = None) -> ChargeStatus:
        """The car's charge state; `soc` is a reading taken just before, if any."""
        asked = self.clock.now()
        body = await self._api("GET", "/charge")
        status = ChargeStatus(bool(body["isPluggedIn"]), str(body["state"]))
        self._estimate(asked, self.charge_kw if status.state == "CHARGING" else 0.0,
                       self._stopped_by_itself(status, soc))
        return status

    def _stopped_by_itself(self, status: ChargeStatus, soc: SocReading | None) -> datetime | None:
        """Follow the charging stretch's SoC; at its end at the limit, when the car stopped."""
        socs = self._charging_socs
        if status.state == "CHARGING":
            if soc is not None:
                self._charging_socs = (socs[0] if socs else soc, soc)
            return None
        self._charging_socs = None
        if status.state != "FULLY_CHARGED" or soc is None or socs is None:
            return None
        return stop_moment(socs[0], socs[1], soc.soc_pct)

    def _estimate(self, at: datetime, kw: float, stopped_at: datetime | None = None) -> None:
        """Re-base the estimated register on a charge status asked for at `at`: the
        previous estimate held since the previous status, or until `stopped_at` if the car
        stopped by itself before. An answer older than the latest seen (a read that crossed
        one of our commands) changes nothing."""
        if self._last is not None:
            since, last_kw = self._last
            if at < since:
                return
            until = at if stopped_at is None else min(at, max(since, stopped_at))
            self._kwh_imported += last_kw * (until - since).total_seconds() * self.time_scale / 3600
        self._last = (at, kw)

    async def charge_limit_pct(self) -> float:
        return float((await self._api("GET", "/charge/limit"))["limit"]) * 100

    async def set_charge_limit_pct(self, pct: float) -> None:
        await self._api("POST", "/charge/limit", {"limit": round(pct / 100, 2)})

    async def _charge(self, action: str) -> None:
        await self._api("POST", "/charge", {"action": action})
        await self.charge_status()      # the estimate follows the command at once

    # --- commands ---------------------------------------------------------------------
    async def apply(self, command: Command) -> None:
        if not isinstance(command, (ChargeDelay, Charge)):
            raise CommandRefused("telematics APIs have no discharge command")
        if isinstance(command, ChargeDelay) and command.max_kw > 0:
            raise CommandRefused("telematics APIs can start and stop charging, not cap its power")
        await self.charge_status()  # reach and credentials checked in the caller's hands
        if isinstance(command, ChargeDelay):
            command = replace(command, start=command.start - self.stop_lead)
        self._tasks = await hold_until_edges(command, self._commands, self._tasks,
                                                self.clock.now, self._sync)

    async def _sync(self) -> None:
        """At every window edge, put the car in the state the commands in force ask for:
        a Charge wins (charge now, limit raised to its target), else a delay holds
        charging off, else the car goes back to what it did before."""
        now = self.clock.now()
        self._commands = [c for c in self._commands if c.end > now]
        active = [c for c in self._commands if c.start <= now]
        charge = next((c for c in reversed(active) if isinstance(c, Charge)), None)
        if charge is not None:
            await self._end_delay()
            await self._begin_charge(charge.target_soc_pct)
        elif any(isinstance(c, ChargeDelay) for c in active):
            await self._end_charge()
            if not self._we_stopped:
                await self._begin_delay()
        else:
            await self._end_charge()
            await self._end_delay()

    async def _begin_delay(self) -> None:
        status = await self.charge_status()
        if not status.plugged_in or status.state == "FULLY_CHARGED":
            return  # nothing would charge anyway; leave the car alone
        await self._charge("STOP")
        self._we_stopped = True

    async def _end_delay(self) -> None:
        if self._we_stopped:
            await self._charge("START")
            self._we_stopped = False

    async def _begin_charge(self, target_soc_pct: float) -> None:
        if self._limit_before_pct is None:
            self._limit_before_pct = await self.charge_limit_pct()
        # The provider accepts limits from 50 % to 100 %.
        await self.set_charge_limit_pct(min(100.0, max(50.0, target_soc_pct)))
        await self._charge("START")

    async def _end_charge(self) -> None:
        if self._limit_before_pct is not None:
            await self.set_charge_limit_pct(self._limit_before_pct)  # the owner's limit again
            self._limit_before_pct = None

    async def clear(self) -> None:
        self._cancel_tasks()
        self._commands = []
        await self._end_charge()
        await self._end_delay()

    def _cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    # --- telemetry ------------------------------------------------------------------
    async def read(self) -> Reading:
        asked = self.clock.now()
        battery = await self._api("GET", "/battery")
        soc = SocReading(asked, float(battery["percentRemaining"]) * 100)
        charge = await self.charge_status(soc)
        at, kw = self._last
        return Reading(at=at, kw=kw, kwh_imported=self._kwh_imported, kwh_exported=0.0,
                       soc_pct=soc.soc_pct, plugged_in=charge.plugged_in,
                       online=True)
