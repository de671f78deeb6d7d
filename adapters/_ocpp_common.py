"""What the OCPP 1.6 and 2.x adapters share: the CSMS websocket server, calls
that fail with typed errors, and meter-value parsing.

The VEN is the central system: chargers dial in to it, so an adapter owns a
websocket server and waits for its one charge point (config `charge_point_id`).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Callable, Iterable, Mapping

import websockets
from ocpp.exceptions import OCPPError
from websockets.asyncio.server import Server, ServerConnection, serve

from adapters._schedule import run_at
from adapters.base import (
    Adapter,
    Charge,
    ChargeDelay,
    Command,
    CommandRefused,
    DeviceDisconnected,
    DeviceTimeout,
    Discharge,
    Reading,
)
from flexadr.clock import Clock

log = logging.getLogger(__name__)


def iso(when: datetime) -> str:
    """OCPP date-time: UTC with a Z, whole seconds are enough for schedules."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


@dataclass(frozen=True)
class MeterState:
    """The latest telemetry a charger pushed, in our units."""
    at: datetime | None = None
    import_kw: float = 0.0
    export_kw: float = 0.0
    kwh_imported: float = 0.0
    kwh_exported: float = 0.0
    soc_pct: float | None = None
    plugged_in: bool = False


_SCALE_TO_KILO = {"W": 1e-3, "Wh": 1e-3, "kW": 1.0, "kWh": 1.0}


def _unit_and_multiplier(sample: dict[str, Any]) -> tuple[str, int]:
    # 1.6 has `unit`; 2.x has `unit_of_measure: {unit, multiplier}`.
    if "unit_of_measure" in sample:
        uom = sample["unit_of_measure"] or {}
        return uom.get("unit", "Wh"), int(uom.get("multiplier", 0))
    return sample.get("unit", "Wh"), 0


def apply_sampled_values(state: MeterState, at: datetime, samples: Iterable[dict[str, Any]]) -> MeterState:
    """Fold one meterValue's sampled values (snake_case keys) into the state.

    Per-phase values are skipped: the adapters want the device total, and a
    charger that sends both would otherwise be counted twice.
    """
    updates: dict[str, Any] = {"at": at}
    for sample in samples:
        if sample.get("phase"):
            continue
        measurand = sample.get("measurand", "Energy.Active.Import.Register")
        unit, multiplier = _unit_and_multiplier(sample)
        value = float(sample["value"]) * (10 ** multiplier)
        if measurand == "SoC":
            updates["soc_pct"] = value
            continue
        kilo = value * _SCALE_TO_KILO.get(unit, 1e-3)
        field = {
            "Power.Active.Import": "import_kw",
            "Power.Active.Export": "export_kw",
            "Energy.Active.Import.Register": "kwh_imported",
            "Energy.Active.Export.Register": "kwh_exported",
        }.get(measurand)
        if field is not None:
            updates[field] = kilo
    return replace(state, **updates)


class OneChargerServer:
    """A websocket server that accepts one named charge point at a time.

    `make_charge_point(id, connection)` builds the ocpp ChargePoint for it.
    A newer connection from the same charger replaces the old one (chargers
    reconnect after a network blip before the old socket times out).
    """

    def __init__(self, host: str, port: int, charge_point_id: str, subprotocol: str,
                 make_charge_point: Callable[[str, ServerConnection], Any]):
        self.host = host
        self.port = port
        self.charge_point_id = charge_point_id
        self.subprotocol = subprotocol
        self._make = make_charge_point
        self._server: Server | None = None
        self.charge_point: Any = None
        self._closed = asyncio.Event()
        self.connected = asyncio.Event()

    async def start(self) -> None:
        self._server = await serve(self._handle, self.host, self.port, subprotocols=[self.subprotocol],
                                   process_request=self._screen)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def _screen(self, connection: ServerConnection, request: Any) -> Any:
        """Turn away strangers at the HTTP handshake, before any OCPP is spoken."""
        cp_id = request.path.strip("/").split("/")[-1]
        if cp_id != self.charge_point_id:
            log.warning("refusing unknown charge point %r", cp_id)
            return connection.respond(404, "unknown charge point\n")
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        cp_id = connection.request.path.strip("/").split("/")[-1]
        if connection.subprotocol != self.subprotocol:
            # OCPP-J: a charger that offers none of our subprotocols is closed at once.
            log.warning("refusing charge point %r without subprotocol %s", cp_id, self.subprotocol)
            await connection.close(code=1002, reason=f"{self.subprotocol} required")
            return
        charge_point = self._make(cp_id, connection)
        self.charge_point, closed = charge_point, asyncio.Event()
        self._closed = closed
        self.connected.set()
        try:
            await charge_point.start()
        except websockets.ConnectionClosed:
            pass
        finally:
            closed.set()
            if self.charge_point is charge_point:
                self.charge_point = None
                self.connected.clear()

    async def call(self, payload: Any, timeout_s: float) -> Any:
        """Send one OCPP call; typed AdapterError on no charger, timeout, refusal or drop."""
        charge_point, closed = self.charge_point, self._closed
        if charge_point is None:
            raise DeviceDisconnected(f"charge point {self.charge_point_id!r} is not connected")
        action = type(payload).__name__
        call = asyncio.ensure_future(charge_point.call(payload, suppress=False))
        dropped = asyncio.ensure_future(closed.wait())
        try:
            done, _ = await asyncio.wait({call, dropped}, timeout=timeout_s,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            dropped.cancel()
        if call in done:
            return _result_or_typed_error(call, action, self.charge_point_id)
        call.cancel()
        if dropped in done:
            raise DeviceDisconnected(f"{self.charge_point_id!r} disconnected during {action}")
        raise DeviceTimeout(f"{self.charge_point_id!r} did not answer {action} within {timeout_s}s")


def _result_or_typed_error(call: asyncio.Future, action: str, cp_id: str) -> Any:
    try:
        return call.result()
    except OCPPError as exc:
        raise CommandRefused(f"{cp_id!r} answered {action} with CALLERROR {exc!r}") from exc
    except asyncio.TimeoutError as exc:
        raise DeviceTimeout(f"{cp_id!r} did not answer {action}") from exc
    except websockets.ConnectionClosed as exc:
        raise DeviceDisconnected(f"{cp_id!r} disconnected during {action}") from exc


@dataclass
class ProfileSlot:
    """One pending command and the charging profile that carries it."""
    profile_id: int
    stack_level: int
    command: Command
    tidy_up: asyncio.Task | None = None


class OcppAdapterBase(Adapter):
    """The parts of the OCPP adapters that do not depend on the protocol version.

    Each pending command gets its own charging profile with its own id and
    stack level: a charger replaces a profile with the same id, or the same
    purpose and stack level, so one shared id would keep only the last event
    of several a VEN has accepted. Slot k uses profile_id + k, stack_level + k.

    A charger has room for `max_commands` such profiles; a week of standing and
    called events hands a VEN more. The slots hold the commands that start
    soonest and the rest wait, each installed as a slot's command ends.
    """

    subprotocol: str

    def __init__(self, config: Mapping[str, Any], clock: Clock):
        super().__init__(config, clock)
        if "charge_point_id" not in self.config:
            raise ValueError(f"{type(self).__name__} needs config['charge_point_id']")
        self.purpose = self.config.get("purpose", "TxDefaultProfile")
        if self.purpose not in ("TxDefaultProfile", "TxProfile"):
            raise ValueError(f"purpose must be TxDefaultProfile or TxProfile, got {self.purpose!r}")
        self.stack_level = int(self.config.get("stack_level", 5))
        self.profile_id = int(self.config.get("profile_id", 4701))
        self.max_commands = int(self.config.get("max_commands", 4))
        self.response_timeout_s = float(self.config.get("response_timeout_s", 10))
        self.heartbeat_interval_s = int(self.config.get("heartbeat_interval_s", 60))
        self.server = OneChargerServer(
            self.config.get("host", "127.0.0.1"), int(self.config.get("port", 0)),
            str(self.config["charge_point_id"]), self.subprotocol, self._make_side)
        self.meter = MeterState()
        self.slots: dict[int, ProfileSlot] = {}
        self.waiting: list[Command] = []   # accepted, no free slot yet; earliest start first
        # Slots change from apply and clear (the agent) and from a slot's end (a timer).
        self._slots_changing = asyncio.Lock()
        self._reported = asyncio.Event()

    # --- what a version supplies ------------------------------------------------
    def _make_side(self, cp_id: str, connection: ServerConnection) -> Any:
        raise NotImplementedError

    def _period(self, command: Command) -> dict[str, Any]:
        """The schedule period that carries `command`; CommandRefused if it cannot."""
        raise NotImplementedError

    def _set_request(self, slot: ProfileSlot, start: datetime, end: datetime, period: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _clear_request(self, profile_id: int) -> Any:
        raise NotImplementedError

    # --- lifecycle ----------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        self._forget_commands()
        await self.server.stop()

    async def wait_connected(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self.server.connected.wait(), timeout_s)
        except asyncio.TimeoutError:
            raise DeviceDisconnected(f"charge point {self.server.charge_point_id!r} did not connect") from None

    # --- commands -------------------------------------------------------------------
    async def apply(self, command: Command) -> None:
        if not isinstance(command, (ChargeDelay, Discharge, Charge)):
            raise CommandRefused(f"unsupported command {command!r}")
        if command.end <= self.clock.now():
            return  # already over: nothing for the charger to do
        self._period(command)  # what the charger could never carry is refused now, not when installed
        async with self._slots_changing:
            if len(self.slots) >= self.max_commands:
                k, last = max(self.slots.items(), key=lambda item: item[1].command.start)
                if command.start >= last.command.start:
                    self._wait(command)
                    return
                # The new command starts sooner: it takes the slot of the one starting last.
                await self._free(k)
                self._wait(last.command)
            await self._install(command)

    def _wait(self, command: Command) -> None:
        self.waiting.append(command)
        self.waiting.sort(key=lambda c: c.start)

    async def _install(self, command: Command) -> None:
        """Put `command` into a free slot (the caller holds `_slots_changing`)."""
        k = next(k for k in range(self.max_commands) if k not in self.slots)
        slot = ProfileSlot(self.profile_id + k, self.stack_level + k, command)
        await self.send_profile(slot, command.start, command.end, self._period(command))
        slot.tidy_up = asyncio.ensure_future(run_at(self.clock.now, command.end, lambda: self._retire(k, slot)))
        self.slots[k] = slot
        self._installed(slot)

    def _installed(self, slot: ProfileSlot) -> None:
        """A version's follow-up once a slot's profile is on the charger. Default: none."""

    async def _free(self, k: int) -> None:
        slot = self.slots.pop(k)
        if slot.tidy_up is not None:
            slot.tidy_up.cancel()
        await self.server.call(self._clear_request(slot.profile_id), self.response_timeout_s)

    async def send_profile(self, slot: ProfileSlot, start: datetime, end: datetime, period: dict[str, Any]) -> None:
        result = await self.server.call(self._set_request(slot, start, end, period), self.response_timeout_s)
        if result.status != "Accepted":
            raise CommandRefused(f"SetChargingProfile answered {result.status}")

    def profile(self, slot: ProfileSlot, start: datetime, end: datetime) -> dict[str, Any]:
        """The fields every version's absolute one-window profile shares."""
        return {
            "stackLevel": slot.stack_level,
            "chargingProfilePurpose": self.purpose,
            "chargingProfileKind": "Absolute",
            "validFrom": iso(start),
            "validTo": iso(end),
        }

    def schedule_fields(self, start: datetime, end: datetime) -> dict[str, Any]:
        return {"startSchedule": iso(start), "duration": max(1, round((end - start).total_seconds()))}

    async def _retire(self, k: int, slot: ProfileSlot) -> None:
        async with self._slots_changing:
            if self.slots.get(k) is not slot:
                return
            # The profile has expired on its own by now; clearing it just keeps the charger tidy.
            del self.slots[k]
            await self.server.call(self._clear_request(slot.profile_id), self.response_timeout_s)
            await self._install_waiting()

    async def _install_waiting(self) -> None:
        now = self.clock.now()
        self.waiting = [c for c in self.waiting if c.end > now]
        while self.waiting and len(self.slots) < self.max_commands:
            command = self.waiting.pop(0)
            try:
                await self._install(command)
            except AdapterError as exc:
                # Nobody is waiting on this call to raise to: the agent sees the
                # device not doing it in the readings.
                log.warning("%s: a waiting command could not be installed: %r",
                            self.server.charge_point_id, exc)

    async def clear(self) -> None:
        async with self._slots_changing:
            self._forget_commands()
            # Every id we could have used, not just the ones in memory: a restarted VEN
            # must still be able to take back what its previous run installed.
            # "Unknown" answers just mean there was nothing there.
            for k in range(self.max_commands):
                await self.server.call(self._clear_request(self.profile_id + k), self.response_timeout_s)

    def _forget_commands(self) -> None:
        for slot in self.slots.values():
            if slot.tidy_up is not None:
                slot.tidy_up.cancel()
        self.slots.clear()
        self.waiting.clear()

    # --- telemetry ----------------------------------------------------------------------
    async def read(self) -> Reading:
        if self.server.charge_point is None:
            raise DeviceDisconnected(f"charge point {self.server.charge_point_id!r} is not connected")
        meter = self.meter
        return Reading(
            at=meter.at or self.clock.now(),
            kw=meter.import_kw - meter.export_kw,
            kwh_imported=meter.kwh_imported,
            kwh_exported=meter.kwh_exported,
            # 0 when the charger sends no SoC (most AC chargers): the cautious side for a floor.
            soc_pct=meter.soc_pct if meter.soc_pct is not None else 0.0,
            plugged_in=meter.plugged_in,
            online=True,
        )

    async def readings(self, interval_s: float) -> AsyncIterator[Reading]:
        """A reading as soon as the charger reports, and at least every `interval_s`."""
        while True:
            self._reported.clear()
            yield await self.read()
            try:
                await asyncio.wait_for(self._reported.wait(), interval_s)
            except asyncio.TimeoutError:
                pass  # nothing new: repeat the last state so the consumer sees we are alive

    def meter_value(self, at: datetime, samples: Iterable[dict[str, Any]]) -> None:
        self.meter = apply_sampled_values(self.meter, at, samples)
        self._reported.set()

    def set_plugged_in(self, plugged_in: bool) -> None:
        self.meter = replace(self.meter, plugged_in=plugged_in)
