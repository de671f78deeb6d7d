"""What the OCPP 1.6 and 2.x charger simulators share: the car's battery behind
a websocket, the fault switches, the physics and meter loops, and shutdown.

A subclass connects and boots in `start()`, says how the car's power follows
the installed profiles (`_step`), where their schedules change (`_schedule`),
what a meter report is (`_send_meter`) and how it tells the central system the
car came or went (`_plug_notice`).

The physics switches at every profile edge on the edge's own time, however
late the shared event loop wakes it (a charger's firmware applies schedules on
time), and runs up to the moment of each meter report, so the registers sent
are the energy that really flowed by then.
"""
from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Any

import websockets
from ocpp.messages import MessageType, unpack

from adapters._ocpp_common import parse_time
from adapters.testing.ev_physics import BatteryPhysics
from flexadr.clock import Clock, SystemClock


def profile_edges(profile: dict[str, Any], schedule: dict[str, Any]) -> list[datetime]:
    """Every moment an absolute profile's limit may change: validity, schedule start,
    each period's start, the schedule's end."""
    edges = [parse_time(profile[k]) for k in ("valid_from", "valid_to") if k in profile]
    if "start_schedule" in schedule:
        start = parse_time(schedule["start_schedule"])
        edges += [start + timedelta(seconds=float(p["start_period"]))
                  for p in schedule["charging_schedule_period"]]
        if "duration" in schedule:
            edges.append(start + timedelta(seconds=float(schedule["duration"])))
    return edges


class MutableSide:
    """Mixin for the ocpp ChargePoint a simulator talks through: a muted charger
    still reads its socket but never answers the central system."""
    sim: "SimCharger"

    async def route_message(self, raw_msg: str) -> None:
        if self.sim.muted and unpack(raw_msg).message_type_id == MessageType.Call:
            return
        await super().route_message(raw_msg)


class SimCharger:
    def __init__(self, url: str, battery: BatteryPhysics, clock: Clock | None,
                 meter_interval_s: float, tick_s: float):
        self.url = url
        self.cp_id = url.rstrip("/").split("/")[-1]
        self.battery = battery
        self.clock = clock or SystemClock()
        self.meter_interval_s = meter_interval_s
        self.tick_s = tick_s
        self.profiles: dict[int, dict[str, Any]] = {}
        self.muted = False              # fault switch: stops answering calls
        self.refuse_profiles = False    # fault switch: answers Rejected
        self._connection: Any = None
        self._side: Any = None
        self._tasks: list[asyncio.Task] = []
        self._stopping = False

    # --- DevicePeer -------------------------------------------------------------
    def power_kw(self) -> float:
        return self.battery.kw

    def soc_pct(self) -> float:
        return self.battery.soc_pct

    # --- what a subclass says ---------------------------------------------------
    def _step(self, now: datetime) -> None:
        raise NotImplementedError

    def _schedule(self, profile: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    async def _send_meter(self) -> None:
        raise NotImplementedError

    async def _plug_notice(self, plugged_in: bool) -> None:
        raise NotImplementedError

    # --- the car's own behaviour ---------------------------------------------------
    def advance(self, now: datetime) -> None:
        """Run the physics to `now`, switching at each profile edge passed since the last step."""
        last = self.battery.stepped_at
        if last is not None:
            edges = {e for profile in self.profiles.values()
                     for e in profile_edges(profile, self._schedule(profile)) if last < e < now}
            for edge in sorted(edges):
                self._step(edge)
        self._step(now)

    def set_plugged_in(self, plugged_in: bool) -> None:
        """The owner plugs the car in or drives off; the central system is told."""
        self.advance(self.clock.now())
        self.battery.plugged_in = plugged_in
        self.advance(self.clock.now())
        if self._side is not None:
            self._tasks.append(asyncio.ensure_future(self._plug_notice(plugged_in)))

    # --- lifecycle ----------------------------------------------------------------
    async def _connect(self, subprotocol: str, timeout_s: float) -> None:
        self._connection = await asyncio.wait_for(
            websockets.connect(self.url, subprotocols=[subprotocol], open_timeout=timeout_s), timeout_s)

    def _run_loops(self) -> None:
        self._tasks += [asyncio.ensure_future(self._physics()), asyncio.ensure_future(self._report())]

    async def stop(self) -> None:
        self._stopping = True
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        if tasks:
            # Bounded, and the loops also watch _stopping: Python 3.11's wait_for (inside
            # the ocpp package's call) can swallow a cancel that lands as a reply arrives.
            await asyncio.wait(tasks, timeout=2)
        if self._connection is not None:
            await self._connection.close()

    async def drop(self) -> None:
        """The network goes away: close the socket without a goodbye."""
        await self.stop()

    async def _receive(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await self._side.start()

    async def _physics(self) -> None:
        reported_kw = self.battery.kw
        while not self._stopping:
            self.advance(self.clock.now())
            if self.battery.kw != reported_kw and self._side is not None:
                # The power changed on its own (full, plugged): a charger reports it at once.
                reported_kw = self.battery.kw
                self._tasks.append(asyncio.ensure_future(self._send_meter_now()))
            await asyncio.sleep(self.tick_s)

    async def _send_meter_now(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await self._send_meter()

    async def _report(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.meter_interval_s)
            self.advance(self.clock.now())
            await self._send_meter_now()
