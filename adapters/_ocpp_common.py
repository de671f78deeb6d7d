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
from typing import Any, Callable, Iterable

import websockets
from ocpp.exceptions import OCPPError
from websockets.asyncio.server import Server, ServerConnection, serve

from adapters.base import CommandRefused, DeviceDisconnected, DeviceTimeout

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
        self._server = await serve(self._handle, self.host, self.port, subprotocols=[self.subprotocol])
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, connection: ServerConnection) -> None:
        cp_id = connection.request.path.strip("/").split("/")[-1]
        if connection.subprotocol != self.subprotocol or cp_id != self.charge_point_id:
            log.warning("refusing charge point %r (subprotocol %r)", cp_id, connection.subprotocol)
            await connection.close(code=1008, reason="unknown charge point")
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
