"""`ocpp16`: OCPP 1.6J chargers; the VEN is their central system.

Charge delay = one `SetChargingProfile` whose absolute schedule holds the
limit at 0 for the event window, then `ClearChargingProfile` when it ends
(or on `clear()`). The profile carries its own start and duration, so the
charger resumes on time even if the VEN is gone by then. Telemetry is what
the charger pushes in `MeterValues` (and the connector status for plugged-in).

Config:
    charge_point_id   the id the charger puts at the end of its URL (required)
    host, port        where to listen (default 127.0.0.1, 0 = any free port)
    connector_id      default 1
    purpose           "TxDefaultProfile" (default) or "TxProfile"
    rate_unit         "W" (default) or "A"
    stack_level       default 5: above the charger's own defaults
    profile_id        default 4701
    response_timeout_s  bound on each call (default 10)
    heartbeat_interval_s  told to the charger at boot (default 60)
"""
from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime
from typing import Any, Mapping

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import (
    Action,
    AuthorizationStatus,
    ChargePointStatus,
    ChargingProfileStatus,
    RegistrationStatus,
)

from adapters._ocpp_common import MeterState, OneChargerServer, apply_sampled_values, iso, parse_time
from adapters._schedule import run_at
from adapters.base import (
    Adapter,
    Capability,
    ChargeDelay,
    Command,
    CommandRefused,
    DeviceDisconnected,
    Discharge,
    Reading,
)
from flexadr.clock import Clock

SUBPROTOCOL = "ocpp1.6"
# Statuses in which a car is at the connector (OCPP 1.6 section 4.9).
PLUGGED_STATUSES = {
    ChargePointStatus.preparing, ChargePointStatus.charging, ChargePointStatus.suspended_ev,
    ChargePointStatus.suspended_evse, ChargePointStatus.finishing,
}


class _CentralSystemSide(ChargePoint):
    """Our end of one charger's websocket: answers what the charger sends."""

    def __init__(self, cp_id: str, connection: Any, adapter: "Ocpp16Adapter"):
        super().__init__(cp_id, connection, response_timeout=adapter.response_timeout_s)
        self.adapter = adapter

    @on(Action.boot_notification)
    def on_boot(self, **_: Any) -> call_result.BootNotification:
        return call_result.BootNotification(
            current_time=iso(self.adapter.clock.now()),
            interval=self.adapter.heartbeat_interval_s,
            status=RegistrationStatus.accepted,
        )

    @on(Action.heartbeat)
    def on_heartbeat(self) -> call_result.Heartbeat:
        return call_result.Heartbeat(current_time=iso(self.adapter.clock.now()))

    @on(Action.status_notification)
    def on_status(self, connector_id: int, status: str, **_: Any) -> call_result.StatusNotification:
        if connector_id == self.adapter.connector_id:
            self.adapter._set_plugged_in(status in PLUGGED_STATUSES)
        return call_result.StatusNotification()

    @on(Action.authorize)
    def on_authorize(self, id_tag: str) -> call_result.Authorize:
        # Authorisation belongs to the charger's owner, not to a DR program.
        return call_result.Authorize(id_tag_info={"status": AuthorizationStatus.accepted})

    @on(Action.start_transaction)
    def on_start_transaction(self, connector_id: int, meter_start: int, **_: Any) -> call_result.StartTransaction:
        transaction_id = self.adapter._begin_transaction(connector_id)
        return call_result.StartTransaction(
            transaction_id=transaction_id, id_tag_info={"status": AuthorizationStatus.accepted}
        )

    @on(Action.stop_transaction)
    def on_stop_transaction(self, transaction_id: int, **_: Any) -> call_result.StopTransaction:
        self.adapter._end_transaction(transaction_id)
        return call_result.StopTransaction()

    @on(Action.meter_values)
    def on_meter_values(self, connector_id: int, meter_value: list[dict[str, Any]], **_: Any) -> call_result.MeterValues:
        if connector_id == self.adapter.connector_id:
            for value in meter_value:
                self.adapter._meter_value(parse_time(value["timestamp"]), value["sampled_value"])
        return call_result.MeterValues()


class Ocpp16Adapter(Adapter):
    capabilities = frozenset({Capability.CHARGE_DELAY, Capability.TELEMETRY})

    def __init__(self, config: Mapping[str, Any], clock: Clock):
        super().__init__(config, clock)
        if "charge_point_id" not in self.config:
            raise ValueError("ocpp16 needs config['charge_point_id']")
        self.connector_id = int(self.config.get("connector_id", 1))
        self.purpose = self.config.get("purpose", "TxDefaultProfile")
        if self.purpose not in ("TxDefaultProfile", "TxProfile"):
            raise ValueError(f"purpose must be TxDefaultProfile or TxProfile, got {self.purpose!r}")
        self.rate_unit = self.config.get("rate_unit", "W")
        self.stack_level = int(self.config.get("stack_level", 5))
        self.profile_id = int(self.config.get("profile_id", 4701))
        self.response_timeout_s = float(self.config.get("response_timeout_s", 10))
        self.heartbeat_interval_s = int(self.config.get("heartbeat_interval_s", 60))
        self.server = OneChargerServer(
            self.config.get("host", "127.0.0.1"), int(self.config.get("port", 0)),
            str(self.config["charge_point_id"]), SUBPROTOCOL,
            lambda cp_id, conn: _CentralSystemSide(cp_id, conn, self),
        )
        self._meter = MeterState()
        self._transaction_id: int | None = None
        self._next_transaction_id = 1
        self._tidy_up: asyncio.Task | None = None

    @property
    def port(self) -> int:
        return self.server.port

    # --- lifecycle ----------------------------------------------------------
    async def start(self) -> None:
        await self.server.start()

    async def stop(self) -> None:
        self._cancel_tidy_up()
        await self.server.stop()

    async def wait_connected(self, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(self.server.connected.wait(), timeout_s)
        except asyncio.TimeoutError:
            raise DeviceDisconnected(f"charge point {self.server.charge_point_id!r} did not connect") from None

    # --- commands -----------------------------------------------------------
    async def apply(self, command: Command) -> None:
        if isinstance(command, Discharge):
            raise CommandRefused("OCPP 1.6 has no discharge; use ocpp2 with an OCPP 2.1 charger")
        if not isinstance(command, ChargeDelay):
            raise CommandRefused(f"unsupported command {command!r}")
        request = call.SetChargingProfile(
            connector_id=self.connector_id, cs_charging_profiles=self._zero_profile(command)
        )
        result = await self.server.call(request, self.response_timeout_s)
        if result.status != ChargingProfileStatus.accepted:
            raise CommandRefused(f"SetChargingProfile answered {result.status}")
        self._cancel_tidy_up()
        self._tidy_up = asyncio.ensure_future(run_at(self.clock.now, command.end, self._clear_profile))

    def _zero_profile(self, command: ChargeDelay) -> dict[str, Any]:
        duration_s = max(1, round((command.end - command.start).total_seconds()))
        profile: dict[str, Any] = {
            "chargingProfileId": self.profile_id,
            "stackLevel": self.stack_level,
            "chargingProfilePurpose": self.purpose,
            "chargingProfileKind": "Absolute",
            "validFrom": iso(command.start),
            "validTo": iso(command.end),
            "chargingSchedule": {
                "chargingRateUnit": self.rate_unit,
                "startSchedule": iso(command.start),
                "duration": duration_s,
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 0.0}],
            },
        }
        if self.purpose == "TxProfile":
            if self._transaction_id is None:
                raise CommandRefused("TxProfile needs a running transaction and there is none")
            profile["transactionId"] = self._transaction_id
        return profile

    async def clear(self) -> None:
        self._cancel_tidy_up()
        await self._clear_profile()

    async def _clear_profile(self) -> None:
        # "Unknown" just means there was nothing left to clear.
        await self.server.call(call.ClearChargingProfile(id=self.profile_id), self.response_timeout_s)

    def _cancel_tidy_up(self) -> None:
        if self._tidy_up is not None:
            self._tidy_up.cancel()
            self._tidy_up = None

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
    def _meter_value(self, at: datetime, samples: list[dict[str, Any]]) -> None:
        self._meter = apply_sampled_values(self._meter, at, samples)

    def _set_plugged_in(self, plugged_in: bool) -> None:
        self._meter = replace(self._meter, plugged_in=plugged_in)

    def _begin_transaction(self, connector_id: int) -> int:
        transaction_id = self._next_transaction_id
        self._next_transaction_id += 1
        if connector_id == self.connector_id:
            self._transaction_id = transaction_id
        return transaction_id

    def _end_transaction(self, transaction_id: int) -> None:
        if self._transaction_id == transaction_id:
            self._transaction_id = None
