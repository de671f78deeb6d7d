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
  adapter's job, in the schedule itself: the discharge period ends at the
  moment the floor is predicted and an Idle period holds the rest of the
  window (see "the floor in the schedule" below). When TransactionEvent reports
  SoC at the floor first, the profile is replaced with Idle (the backstop; see
  the state-of-charge guard for why not limitAtSoC).
Charge (storm preparation): the limit is max_limit_w over the window; a target
below 100 % is held like the floor: at that SoC the profile becomes limit 0.

Each pending command has its own profile (id and stack level), so several
accepted events coexist. Telemetry comes from TransactionEvent meter values (Power.Active.Import/Export,
Energy.Active.Import/Export.Register, SoC) and the transaction's chargingState.

Config: charge_point_id (required), version "2.1" (default) or "2.0.1", host,
port, evse_id (1), purpose (TxDefaultProfile | TxProfile), stack_level (5),
profile_id (4801), max_commands (4 profiles at once; more wait for a slot), max_limit_w (22000), response_timeout_s (10),
heartbeat_interval_s (60), time_scale (1: device seconds per wall second, for
compressed-time simulators; it turns the device-time prediction of the floor into
the wall time of the schedule).
"""
from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Mapping

from ocpp import v21, v201
from ocpp.routing import on

from adapters._ocpp_common import MeterState, OcppAdapterBase, ProfileSlot, iso, parse_time
from adapters._schedule import run_at
from adapters.base import AdapterError, Capability, Charge, ChargeDelay, Command, CommandRefused, Discharge
from flexadr.clock import Clock

log = logging.getLogger(__name__)

VERSIONS = {"2.0.1": ("ocpp2.0.1", v201), "2.1": ("ocpp2.1", v21)}
PLUGGED_STATES = {"EVConnected", "Charging", "SuspendedEV", "SuspendedEVSE"}


@dataclass(frozen=True)
class V2xOffer:
    """What the EV said it can give (NotifyEVChargingNeeds, 2.1)."""
    max_discharge_w: float
    min_v2x_energy_wh: float | None  # < 0: energy left above the EV's V2X minimum
    capacity_kwh: float | None = None  # from targetSoC and evTargetEnergyRequest


# A SoC stretch shorter than this says too little about the battery's efficiency.
MIN_STRETCH_PCT = 1.0
IDLE = {"operationMode": "Idle", "limit": 0.0}


def capacity_from_needs(params: Mapping[str, Any], soc_pct: float | None) -> float | None:
    """The battery's capacity from the EV's own energy figures: evTargetEnergyRequest
    is the energy from the SoC now (the last meter value) to targetSoC."""
    target_pct, target_wh = params.get("target_soc"), params.get("ev_target_energy_request")
    if soc_pct is None or target_pct is None or target_wh is None:
        return None
    span_pct = float(target_pct) - soc_pct
    if abs(span_pct) < MIN_STRETCH_PCT:
        return None
    return float(target_wh) / 1000 / (span_pct / 100)


def seconds_to_floor(soc_pct: float, floor_pct: float, export_kw: float, kwh_out_per_pct: float) -> float:
    """Device seconds until discharging at `export_kw` brings `soc_pct` down to `floor_pct`."""
    return max(0.0, soc_pct - floor_pct) * kwh_out_per_pct / export_kw * 3600


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
            self.adapter.set_plugged_in(connector_status == "Occupied")
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


class Ocpp2Adapter(OcppAdapterBase):
    def __init__(self, config: Mapping[str, Any], clock: Clock):
        config = {"profile_id": 4801, **config}
        version = str(config.get("version", "2.1"))
        if version not in VERSIONS:
            raise ValueError(f"version must be one of {sorted(VERSIONS)}, got {version!r}")
        self.version = version
        self.subprotocol, self._ocpp = VERSIONS[version]
        super().__init__(config, clock)
        self.capabilities = frozenset({Capability.CHARGE_DELAY, Capability.TELEMETRY} | (
            {Capability.DISCHARGE} if version == "2.1" else set()))
        self.evse_id = int(self.config.get("evse_id", 1))
        self.max_limit_w = float(self.config.get("max_limit_w", 22000.0))  # "no limit" for a Charge
        self._transaction_id: str | None = None
        self.v2x: V2xOffer | None = None
        self.time_scale = float(self.config.get("time_scale", 1.0))
        self._bounded: set[int] = set()  # profile ids already held at their SoC bound
        self._guards: set[asyncio.Task] = set()
        # The battery's losses each way (stored per metered kWh in; metered kWh out per
        # stored), learnt from the meter values of a stretch in one direction: the EV's
        # capacity turns its SoC change into stored kWh.
        self._mark: MeterState | None = None
        self.charge_efficiency: float | None = None
        self.discharge_efficiency: float | None = None

    def _make_side(self, cp_id: str, connection: Any) -> Any:
        side = _Csms21 if self.version == "2.1" else _Csms201
        return side(cp_id, connection, self)

    # --- commands -----------------------------------------------------------
    def _period(self, command: Command) -> dict[str, Any]:
        if isinstance(command, Discharge):
            return self._discharge_period(command)
        limit = command.max_kw * 1000 if isinstance(command, ChargeDelay) else 0.0
        if isinstance(command, Charge):
            if command.target_soc_pct < 100 and self.meter.soc_pct is None:
                raise CommandRefused("the charger reports no SoC, so a charge target cannot be held")
            limit = self.max_limit_w  # full power; the SoC guard stops it at the target
        period: dict[str, Any] = {"startPeriod": 0, "limit": limit}
        if self.version == "2.1":
            period["operationMode"] = "ChargingOnly"
        return period

    def _discharge_period(self, command: Discharge) -> dict[str, Any]:
        if self.version != "2.1":
            raise CommandRefused("discharge needs OCPP 2.1 (V2X); this charger speaks 2.0.1")
        offer = self.v2x
        if offer is None or offer.max_discharge_w <= 0:
            raise CommandRefused("the EV has not offered V2X discharge (no NotifyEVChargingNeeds V2X parameters)")
        if offer.min_v2x_energy_wh is not None and offer.min_v2x_energy_wh >= 0:
            raise CommandRefused("the EV is at or below its V2X minimum state of charge")
        if self.meter.soc_pct is None:
            # The floor is guarded from SoC meter values; without them it cannot be held.
            raise CommandRefused("the charger reports no SoC, so the discharge floor cannot be held")
        watts = min(command.max_kw * 1000, offer.max_discharge_w)
        return {"startPeriod": 0, "operationMode": "CentralSetpoint",
                "setpoint": -watts, "dischargeLimit": -watts}

    def _installed(self, slot: ProfileSlot) -> None:
        command = slot.command
        if isinstance(command, Discharge) and self.clock.now() < command.start:
            # The SoC the discharge starts from is known only then: place the floor again.
            self._background(run_at(self.clock.now, command.start, lambda: self._replace_floor(slot)))

    async def _replace_floor(self, slot: ProfileSlot) -> None:
        if (slot in self.slots.values() and slot.profile_id not in self._bounded
                and self.kwh_out_per_pct() is not None):
            command = slot.command
            await self.send_profile(slot, command.start, command.end, self._discharge_period(command))

    def _background(self, job: Any) -> None:
        task = asyncio.ensure_future(job)
        self._guards.add(task)  # keep a reference until done, or the loop may drop it
        task.add_done_callback(self._guards.discard)

    # --- the floor in the schedule ------------------------------------------------
    # A meter value may come a whole meter period after the floor is passed (in
    # compressed time most of an event), so the schedule itself stops the discharge:
    # from the SoC, the EV's capacity and the battery's efficiency the adapter knows
    # when the floor is reached, and an Idle period starts then.
    def kwh_out_per_pct(self) -> float | None:
        """Metered kWh a discharge takes per SoC percent, or None when not yet known."""
        capacity = self.v2x.capacity_kwh if self.v2x is not None else None
        # Until a discharge has been metered, its losses are taken to be the charge's.
        efficiency = self.discharge_efficiency or self.charge_efficiency
        if capacity is None or efficiency is None:
            return None
        return capacity / 100 * efficiency

    def floor_moment(self, command: Discharge, start: datetime, export_kw: float) -> datetime | None:
        """The wall time at which discharging from `start` reaches the command's floor."""
        per_pct = self.kwh_out_per_pct()
        soc = self._soc_estimate(per_pct)
        if per_pct is None or soc is None:
            return None
        device_s = seconds_to_floor(soc, command.min_soc_pct, export_kw, per_pct)
        return max(start, self.clock.now()) + timedelta(seconds=device_s / self.time_scale)

    def _soc_estimate(self, kwh_out_per_pct: float | None) -> float | None:
        """The SoC now: the last meter value, less what a running discharge has taken
        since (a running charge is not added: it may have stopped at its target)."""
        meter = self.meter
        if meter.soc_pct is None or meter.at is None or kwh_out_per_pct is None:
            return meter.soc_pct
        hours = max(0.0, (self.clock.now() - meter.at).total_seconds()) * self.time_scale / 3600
        return meter.soc_pct - meter.export_kw * hours / kwh_out_per_pct

    def _schedule_periods(self, slot: ProfileSlot, start: datetime, end: datetime,
                          period: dict[str, Any]) -> tuple[datetime, list[dict[str, Any]]]:
        """The schedule's start and periods: a discharge is followed by Idle from its floor."""
        command = slot.command
        if not (isinstance(command, Discharge) and period.get("operationMode") == "CentralSetpoint"):
            return start, [period]
        floor_at = self.floor_moment(command, start, -float(period["setpoint"]) / 1000)
        if floor_at is None or floor_at >= end:
            return start, [period]
        if floor_at <= start:
            return start, [IDLE | {"startPeriod": 0}]
        # startPeriod is whole seconds: the schedule starts that much before the floor
        # (validFrom still holds it off until `start`), so Idle begins on the floor itself.
        whole_s = math.ceil((floor_at - start).total_seconds())
        return floor_at - timedelta(seconds=whole_s), [period, IDLE | {"startPeriod": whole_s}]

    def _set_request(self, slot: ProfileSlot, start: datetime, end: datetime, period: dict[str, Any]) -> Any:
        schedule_start, periods = self._schedule_periods(slot, start, end, period)
        schedule = {
            "startSchedule": iso(schedule_start),
            "duration": max(1, math.ceil((end - schedule_start).total_seconds())),
            "id": slot.profile_id,
            "chargingRateUnit": "W",
            "chargingSchedulePeriod": periods,
        }
        profile = self.profile(slot, start, end) | {"id": slot.profile_id, "chargingSchedule": [schedule]}
        if self.purpose == "TxProfile":
            if self._transaction_id is None:
                raise CommandRefused("TxProfile needs a running transaction and there is none")
            profile["transactionId"] = self._transaction_id
        return self._ocpp.call.SetChargingProfile(evse_id=self.evse_id, charging_profile=profile)

    def _clear_request(self, profile_id: int) -> Any:
        self._bounded.discard(profile_id)
        return self._ocpp.call.ClearChargingProfile(charging_profile_id=profile_id)

    # --- the state-of-charge guard ----------------------------------------------------
    # OCPP cannot say "stop discharging at X %" and the ocpp package (2.1.0) rewrites
    # the key `soc` of limitAtSoC to `SoC`, which the schema rejects; so the adapter
    # watches SoC in the meter values and replaces the profile when a bound is reached.
    def _check_soc_bounds(self) -> None:
        soc, now = self.meter.soc_pct, self.clock.now()
        if soc is None:
            return
        for slot in list(self.slots.values()):
            command = slot.command
            if not command.start <= now < command.end or slot.profile_id in self._bounded:
                continue
            if isinstance(command, Discharge) and soc <= command.min_soc_pct:
                hold = {"startPeriod": 0, "operationMode": "Idle", "limit": 0.0}
            elif isinstance(command, Charge) and command.target_soc_pct < 100 and soc >= command.target_soc_pct:
                hold = {"startPeriod": 0, "limit": 0.0}
                if self.version == "2.1":
                    hold["operationMode"] = "ChargingOnly"
            else:
                continue
            self._bounded.add(slot.profile_id)
            # Not from inside the message handler: the reply we would wait for comes
            # through the same receive loop.
            self._background(self._hold_until(slot, command.end, hold))

    async def _hold_until(self, slot: ProfileSlot, end: datetime, period: dict[str, Any]) -> None:
        # Same id and stack level: the charger replaces the profile.
        try:
            await self.send_profile(slot, self.clock.now(), end, period)
        except AdapterError as exc:
            log.warning("could not hold the state-of-charge bound: %r", exc)

    # --- called by the charger's side --------------------------------------------
    def _transaction_event(self, event_type: str, info: dict[str, Any], meter_value: list[dict[str, Any]]) -> None:
        if event_type == "Ended":
            self._transaction_id = None
        else:
            self._transaction_id = info["transaction_id"]
        if event_type != "Updated":
            # Another car, or none: what was learnt about the battery is no longer it.
            self._mark, self.v2x = None, None
            self.charge_efficiency = self.discharge_efficiency = None
        if "charging_state" in info:
            self.set_plugged_in(info["charging_state"] in PLUGGED_STATES)
        self._meter_values(meter_value)

    def _meter_values(self, meter_value: list[dict[str, Any]]) -> None:
        for value in meter_value:
            self.meter_value(parse_time(value["timestamp"]), value["sampled_value"])
        self._learn_efficiency()
        self._check_soc_bounds()

    def _learn_efficiency(self) -> None:
        """Metered against stored energy over the latest stretch in one direction."""
        meter, mark = self.meter, self._mark
        capacity = self.v2x.capacity_kwh if self.v2x is not None else None
        if meter.soc_pct is None or capacity is None:
            return
        if mark is None or mark.soc_pct is None:
            self._mark = meter
            return
        kwh_in = meter.kwh_imported - mark.kwh_imported
        kwh_out = meter.kwh_exported - mark.kwh_exported
        if kwh_in > 0 and kwh_out > 0:
            self._mark = meter      # the direction changed: a new stretch from here
            return
        stored_kwh = (meter.soc_pct - mark.soc_pct) / 100 * capacity
        if abs(meter.soc_pct - mark.soc_pct) < MIN_STRETCH_PCT:
            return
        if kwh_in > 0 and stored_kwh > 0:
            self.charge_efficiency = stored_kwh / kwh_in        # stored per metered kWh in
        elif kwh_out > 0 and stored_kwh < 0:
            self.discharge_efficiency = kwh_out / -stored_kwh   # metered kWh out per stored

    def _charging_needs(self, needs: dict[str, Any]) -> None:
        params = needs.get("v2x_charging_parameters")
        if params is None:
            self.v2x = None
            return
        minimum = params.get("ev_min_v2x_energy_request")
        self.v2x = V2xOffer(
            max_discharge_w=float(params.get("max_discharge_power", 0)),
            min_v2x_energy_wh=float(minimum) if minimum is not None else None,
            capacity_kwh=capacity_from_needs(params, self.meter.soc_pct),
        )
        self._mark = None
