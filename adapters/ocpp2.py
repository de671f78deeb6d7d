"""`ocpp2`: OCPP 2.0.1 and 2.1 chargers; the VEN is their CSMS.

Charge delay (2.0.1 and 2.1): one `SetChargingProfile` with an absolute
schedule holding the limit at 0 W over the window (2.1: operationMode
ChargingOnly), then `ClearChargingProfile` when it ends or on `clear()`.

Discharge (2.1 only, V2X): a schedule period with operationMode
CentralSetpoint and a negative `setpoint` (with the same `dischargeLimit`),
bounded by what the EV offered in `NotifyEVChargingNeeds`:
- the power is min(command max_kw, v2xChargingParameters.maxDischargePower);
- no V2X parameters, evMinV2XEnergyRequest >= 0 (the EV is already at the
  bottom of its V2X range) or no SoC in the meter values means the command
  is refused;
- the EV keeps its own V2X minimum; the command's floor (min_soc_pct) is the
  adapter's job: when TransactionEvent reports SoC at the floor, it replaces
  the profile with operationMode Idle for the rest of the window.
Telemetry comes from TransactionEvent meter values (Power.Active.Import/Export,
Energy.Active.Import/Export.Register, SoC) and the transaction's chargingState.

Config: charge_point_id (required), version "2.1" (default) or "2.0.1", host,
port, evse_id (1), purpose (TxDefaultProfile | TxProfile), stack_level (5),
profile_id (4801), response_timeout_s (10), heartbeat_interval_s (60).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Mapping

from ocpp import v21, v201
from ocpp.routing import on

from adapters._ocpp_common import MeterState, OneChargerServer, apply_sampled_values, iso, parse_time
from adapters._schedule import run_at
from adapters.base import (
    Adapter,
    AdapterError,
    Capability,
    ChargeDelay,
    Command,
    CommandRefused,
    DeviceDisconnected,
    Discharge,
    Reading,
)
from flexadr.clock import Clock

log = logging.getLogger(__name__)

VERSIONS = {"2.0.1": ("ocpp2.0.1", v201), "2.1": ("ocpp2.1", v21)}
PLUGGED_STATES = {"EVConnected", "Charging", "SuspendedEV", "SuspendedEVSE"}


@dataclass(frozen=True)
class V2xOffer:
    """What the EV said it can give (NotifyEVChargingNeeds, 2.1)."""
    max_discharge_w: float
    min_v2x_energy_wh: float | None  # < 0: energy left above the EV's V2X minimum


class _CsmsHandlers:
    """Handlers shared by the 2.0.1 and 2.1 CSMS sides (action names are the same)."""

    adapter: "Ocpp2Adapter"
    _call_result: Any

    @on("BootNotification")
    def on_boot(self, **_: Any):
        return self._call_result.BootNotification(
            current_time=iso(self.adapter.clock.now()), interval=self.adapter.heartbeat_interval_s,
            status="Accepted")

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any):
        return self._call_result.Heartbeat(current_time=iso(self.adapter.clock.now()))

    @on("StatusNotification")
    def on_status(self, evse_id: int, connector_status: str, **_: Any):
        if evse_id == self.adapter.evse_id:
            self.adapter._set_plugged_in(connector_status == "Occupied")
        return self._call_result.StatusNotification()

    @on("Authorize")
    def on_authorize(self, **_: Any):
        return self._call_result.Authorize(id_token_info={"status": "Accepted"})

    @on("TransactionEvent")
    def on_transaction_event(self, event_type: str, transaction_info: dict[str, Any], **kw: Any):
        evse = kw.get("evse") or {}
        if evse.get("id", self.adapter.evse_id) == self.adapter.evse_id:
            self.adapter._transaction_event(event_type, transaction_info, kw.get("meter_value") or [])
        return self._call_result.TransactionEvent()

    @on("MeterValues")
    def on_meter_values(self, evse_id: int, meter_value: list[dict[str, Any]], **_: Any):
        if evse_id == self.adapter.evse_id:
            self.adapter._meter_values(meter_value)
        return self._call_result.MeterValues()

    @on("NotifyEVChargingNeeds")
    def on_charging_needs(self, evse_id: int, charging_needs: dict[str, Any], **_: Any):
        if evse_id == self.adapter.evse_id:
            self.adapter._charging_needs(charging_needs)
        return self._call_result.NotifyEVChargingNeeds(status="Accepted")


class _Csms201(_CsmsHandlers, v201.ChargePoint):
    def __init__(self, cp_id: str, connection: Any, adapter: "Ocpp2Adapter"):
        super().__init__(cp_id, connection, response_timeout=adapter.response_timeout_s)
        self.adapter = adapter


class _Csms21(_CsmsHandlers, v21.ChargePoint):
    def __init__(self, cp_id: str, connection: Any, adapter: "Ocpp2Adapter"):
        super().__init__(cp_id, connection, response_timeout=adapter.response_timeout_s)
        self.adapter = adapter


class Ocpp2Adapter(Adapter):
    def __init__(self, config: Mapping[str, Any], clock: Clock):
        super().__init__(config, clock)
        if "charge_point_id" not in self.config:
            raise ValueError("ocpp2 needs config['charge_point_id']")
        self.version = str(self.config.get("version", "2.1"))
        if self.version not in VERSIONS:
            raise ValueError(f"version must be one of {sorted(VERSIONS)}, got {self.version!r}")
        subprotocol, self._ocpp = VERSIONS[self.version]
        self.capabilities = frozenset({Capability.CHARGE_DELAY, Capability.TELEMETRY} | (
            {Capability.DISCHARGE} if self.version == "2.1" else set()))
        self.evse_id = int(self.config.get("evse_id", 1))
        self.purpose = self.config.get("purpose", "TxDefaultProfile")
        if self.purpose not in ("TxDefaultProfile", "TxProfile"):
            raise ValueError(f"purpose must be TxDefaultProfile or TxProfile, got {self.purpose!r}")
        self.stack_level = int(self.config.get("stack_level", 5))
        self.profile_id = int(self.config.get("profile_id", 4801))
        self.response_timeout_s = float(self.config.get("response_timeout_s", 10))
        self.heartbeat_interval_s = int(self.config.get("heartbeat_interval_s", 60))
        side = _Csms21 if self.version == "2.1" else _Csms201
        self.server = OneChargerServer(
            self.config.get("host", "127.0.0.1"), int(self.config.get("port", 0)),
            str(self.config["charge_point_id"]), subprotocol, lambda cp_id, conn: side(cp_id, conn, self))
        self._meter = MeterState()
        self._transaction_id: str | None = None
        self.v2x: V2xOffer | None = None
        self._discharge: Discharge | None = None
        self._floor_reached = False
        self._tasks: list[asyncio.Task] = []

    @property
    def port(self) -> int:
        return self.server.port

    # --- lifecycle ----------------------------------------------------------
    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        self._cancel_tasks()
        await self.server.stop()

    async def wait_connected(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self.server.connected.wait(), timeout_s)
        except asyncio.TimeoutError:
            raise DeviceDisconnected(f"charge point {self.server.charge_point_id!r} did not connect") from None

    # --- commands -----------------------------------------------------------
    async def apply(self, command: Command) -> None:
        if isinstance(command, ChargeDelay):
            period = {"startPeriod": 0, "limit": 0.0}
            if self.version == "2.1":
                period["operationMode"] = "ChargingOnly"
            discharge = None
        elif isinstance(command, Discharge):
            period = self._discharge_period(command)
            discharge = command
        else:
            raise CommandRefused(f"unsupported command {command!r}")
        await self._set_profile(command.start, command.end, period)
        self._cancel_tasks()
        self._discharge, self._floor_reached = discharge, False
        self._tasks.append(asyncio.ensure_future(run_at(self.clock.now, command.end, self._clear_profile)))

    def _discharge_period(self, command: Discharge) -> dict[str, Any]:
        if self.version != "2.1":
            raise CommandRefused("discharge needs OCPP 2.1 (V2X); this charger speaks 2.0.1")
        offer = self.v2x
        if offer is None or offer.max_discharge_w <= 0:
            raise CommandRefused("the EV has not offered V2X discharge (no NotifyEVChargingNeeds V2X parameters)")
        if offer.min_v2x_energy_wh is not None and offer.min_v2x_energy_wh >= 0:
            raise CommandRefused("the EV is at or below its V2X minimum state of charge")
        if self._meter.soc_pct is None:
            # The floor is guarded from SoC meter values; without them it cannot be held.
            raise CommandRefused("the charger reports no SoC, so the discharge floor cannot be held")
        watts = min(command.max_kw * 1000, offer.max_discharge_w)
        return {"startPeriod": 0, "operationMode": "CentralSetpoint",
                "setpoint": -watts, "dischargeLimit": -watts}

    async def _set_profile(self, start: datetime, end: datetime, period: dict[str, Any]) -> None:
        duration_s = max(1, round((end - start).total_seconds()))
        profile: dict[str, Any] = {
            "id": self.profile_id,
            "stackLevel": self.stack_level,
            "chargingProfilePurpose": self.purpose,
            "chargingProfileKind": "Absolute",
            "validFrom": iso(start),
            "validTo": iso(end),
            "chargingSchedule": [{
                "id": self.profile_id,
                "startSchedule": iso(start),
                "duration": duration_s,
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [period],
            }],
        }
        if self.purpose == "TxProfile":
            if self._transaction_id is None:
                raise CommandRefused("TxProfile needs a running transaction and there is none")
            profile["transactionId"] = self._transaction_id
        request = self._ocpp.call.SetChargingProfile(evse_id=self.evse_id, charging_profile=profile)
        result = await self.server.call(request, self.response_timeout_s)
        if result.status != "Accepted":
            raise CommandRefused(f"SetChargingProfile answered {result.status} {result.status_info or ''}")

    async def clear(self) -> None:
        self._cancel_tasks()
        self._discharge = None
        await self._clear_profile()

    async def _clear_profile(self) -> None:
        self._discharge = None
        # "Unknown" only means nothing was left to clear.
        await self.server.call(self._ocpp.call.ClearChargingProfile(charging_profile_id=self.profile_id),
                               self.response_timeout_s)

    def _cancel_tasks(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    # --- the floor guard ------------------------------------------------------------
    def _check_floor(self) -> None:
        command, soc = self._discharge, self._meter.soc_pct
        if command is None or soc is None or self._floor_reached:
            return
        now = self.clock.now()
        if command.start <= now < command.end and soc <= command.min_soc_pct:
            self._floor_reached = True
            # Not from inside the message handler: the reply we would wait for comes
            # through the same receive loop.
            self._tasks.append(asyncio.ensure_future(self._idle_until(command.end)))

    async def _idle_until(self, end: datetime) -> None:
        try:
            await self._set_profile(self.clock.now(), end, {"startPeriod": 0, "operationMode": "Idle", "limit": 0.0})
        except AdapterError as exc:
            log.warning("could not stop the discharge at the floor: %r", exc)

    # --- telemetry ----------------------------------------------------------
    async def read(self) -> Reading:
        if self.server.charge_point is None:
            raise DeviceDisconnected(f"charge point {self.server.charge_point_id!r} is not connected")
        meter = self._meter
        return Reading(
            at=meter.at or self.clock.now(),
            kw=meter.import_kw - meter.export_kw,
            kwh_imported=meter.kwh_imported,
            kwh_exported=meter.kwh_exported,
            soc_pct=meter.soc_pct if meter.soc_pct is not None else 0.0,
            plugged_in=meter.plugged_in,
            online=True,
        )

    # --- called by the charger's side --------------------------------------------
    def _transaction_event(self, event_type: str, info: dict[str, Any], meter_value: list[dict[str, Any]]) -> None:
        if event_type == "Ended":
            self._transaction_id = None
        else:
            self._transaction_id = info["transaction_id"]
        if "charging_state" in info:
            self._set_plugged_in(info["charging_state"] in PLUGGED_STATES)
        self._meter_values(meter_value)

    def _meter_values(self, meter_value: list[dict[str, Any]]) -> None:
        for value in meter_value:
            self._meter = apply_sampled_values(self._meter, parse_time(value["timestamp"]), value["sampled_value"])
        self._check_floor()

    def _set_plugged_in(self, plugged_in: bool) -> None:
        self._meter = replace(self._meter, plugged_in=plugged_in)

    def _charging_needs(self, needs: dict[str, Any]) -> None:
        params = needs.get("v2x_charging_parameters")
        if params is None:
            self.v2x = None
            return
        minimum = params.get("ev_min_v2x_energy_request")
        self.v2x = V2xOffer(
            max_discharge_w=float(params.get("max_discharge_power", 0)),
            min_v2x_energy_wh=float(minimum) if minimum is not None else None,
        )
