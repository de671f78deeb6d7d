"""`ocpp16`: OCPP 1.6J chargers; the VEN is their central system.

Charge delay = one `SetChargingProfile` whose absolute schedule holds the
limit at 0 (or at the delay's charge cap) for the event window, then `ClearChargingProfile` when it ends
(or on `clear()`). The profile carries its own start and duration, so the
charger resumes on time even if the VEN is gone by then. Each pending command
has its own profile (id and stack level), so several accepted events coexist.
Telemetry is what the charger pushes in `MeterValues` (and the connector
status for plugged-in).

Config:
    charge_point_id   the id the charger puts at the end of its URL (required)
    host, port        where to listen (default 127.0.0.1, 0 = any free port)
    connector_id      default 1
    purpose           "TxDefaultProfile" (default) or "TxProfile"
    rate_unit         "W" (default) or "A"
    stack_level       default 5: above the charger's own defaults (command k uses 5 + k)
    profile_id        default 4701 (command k uses 4701 + k)
    max_commands      profiles on the charger at once, default 4 (more commands wait
                      and are installed as earlier ones end)
    max_limit         the charger's rating in rate_unit (default 22000 W / 32 A): a Charge
                      command (storm preparation, to full only) sets it for the window
    response_timeout_s  bound on each call (default 10)
    heartbeat_interval_s  told to the charger at boot (default 60)
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import (
    Action,
    AuthorizationStatus,
    ChargePointStatus,
    RegistrationStatus,
)

from adapters._ocpp_common import OcppAdapterBase, ProfileSlot, iso, parse_time
from adapters.base import Capability, Charge, Command, CommandRefused, Discharge
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
            self.adapter.set_plugged_in(status in PLUGGED_STATUSES)
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
    def on_meter_values(self, connector_id: int, meter_value: list[dict[str, Any]],
                        **_: Any) -> call_result.MeterValues:
        if connector_id == self.adapter.connector_id:
            for value in meter_value:
                self.adapter.meter_value(parse_time(value["timestamp"]), value["sampled_value"])
        return call_result.MeterValues()


class Ocpp16Adapter(OcppAdapterBase):
    capabilities = frozenset({Capability.CHARGE_DELAY, Capability.TELEMETRY})
    subprotocol = SUBPROTOCOL

    def __init__(self, config: Mapping[str, Any], clock: Clock):
        super().__init__(config, clock)
        self.connector_id = int(self.config.get("connector_id", 1))
        self.rate_unit = self.config.get("rate_unit", "W")
        if self.rate_unit not in ("W", "A"):
            raise ValueError(f"rate_unit must be W or A, got {self.rate_unit!r}")
        # The charger's rating, used as "no limit" for a Charge command.
        self.max_limit = float(self.config.get("max_limit", 32.0 if self.rate_unit == "A" else 22000.0))
        self._transaction_id: int | None = None
        self._next_transaction_id = 1

    def _make_side(self, cp_id: str, connection: Any) -> _CentralSystemSide:
        return _CentralSystemSide(cp_id, connection, self)

    def _period(self, command: Command) -> dict[str, Any]:
        if isinstance(command, Discharge):
            raise CommandRefused("OCPP 1.6 has no discharge; use ocpp2 with an OCPP 2.1 charger")
        if isinstance(command, Charge):
            if command.target_soc_pct < 100:
                raise CommandRefused("OCPP 1.6 cannot stop charging at a state of charge; only full")
            # Full power for the window, over any lower-stack-level limit; the car stops when full.
            return {"startPeriod": 0, "limit": self.max_limit}
        if command.max_kw > 0 and self.rate_unit != "W":
            raise CommandRefused("a charge cap in kW needs rate_unit W (the supply voltage is unknown)")
        return {"startPeriod": 0, "limit": command.max_kw * 1000}

    def _set_request(self, slot: ProfileSlot, start: datetime, end: datetime,
                     period: dict[str, Any]) -> call.SetChargingProfile:
        profile = self.profile(slot, start, end) | {
            "chargingProfileId": slot.profile_id,
            "chargingSchedule": self.schedule_fields(start, end) | {
                "chargingRateUnit": self.rate_unit,
                "chargingSchedulePeriod": [period],
            },
        }
        if self.purpose == "TxProfile":
            if self._transaction_id is None:
                raise CommandRefused("TxProfile needs a running transaction and there is none")
            profile["transactionId"] = self._transaction_id
        return call.SetChargingProfile(connector_id=self.connector_id, cs_charging_profiles=profile)

    def _clear_request(self, profile_id: int) -> call.ClearChargingProfile:
        return call.ClearChargingProfile(id=profile_id)

    # --- called by the charger's side --------------------------------------------
    def _begin_transaction(self, connector_id: int) -> int:
        transaction_id = self._next_transaction_id
        self._next_transaction_id += 1
        if connector_id == self.connector_id:
            self._transaction_id = transaction_id
        return transaction_id

    def _end_transaction(self, transaction_id: int) -> None:
        if self._transaction_id == transaction_id:
            self._transaction_id = None
