"""An OCPP 2.0.1 / 2.1 charging station with an EV, built on the ocpp package's ChargePoint.

The device peer for the `ocpp2` adapter. It boots, reports the connector
Occupied, starts a transaction, (2.1) tells the CSMS its V2X parameters in
NotifyEVChargingNeeds, charges at its maximum and reports TransactionEvent
Updated meter values (energy amounts in stored kWh: the EV's battery, before
its charge and discharge losses). It obeys absolute charging profiles: a limit caps
charging; operationMode CentralSetpoint with a negative setpoint discharges
(never beyond dischargeLimit, its own maximum, or its V2X minimum SoC);
operationMode Idle holds at 0.

Fault switches: `muted`, `refuse_profiles`, `drop()` as in the 1.6 charger.
"""
from __future__ import annotations

import asyncio
import itertools
from datetime import datetime
from typing import Any

from ocpp import v21, v201
from ocpp.routing import on

from adapters._ocpp_common import iso, parse_time
from adapters.testing.ev_physics import BatteryPhysics
from adapters.testing.sim_charger import MutableSide, SimCharger
from flexadr.clock import Clock

_PURPOSE_RANK = {"TxProfile": 2, "TxDefaultProfile": 1}
VERSIONS = {"2.0.1": ("ocpp2.0.1", v201), "2.1": ("ocpp2.1", v21)}


def active_period(profile: dict[str, Any], now: datetime) -> dict[str, Any] | None:
    """The schedule period an absolute profile puts in force at `now`, or None."""
    if "valid_from" in profile and now < parse_time(profile["valid_from"]):
        return None
    if "valid_to" in profile and now >= parse_time(profile["valid_to"]):
        return None
    schedule = profile["charging_schedule"][0]
    if "start_schedule" not in schedule:
        return None
    start = parse_time(schedule["start_schedule"])
    elapsed_s = (now - start).total_seconds()
    if elapsed_s < 0 or ("duration" in schedule and elapsed_s >= schedule["duration"]):
        return None
    periods = [p for p in schedule["charging_schedule_period"] if p["start_period"] <= elapsed_s]
    return periods[-1] if periods else None


class _StationHandlers(MutableSide):
    sim: "Ocpp2ChargerSim"
    _call_result: Any

    @on("SetChargingProfile")
    def on_set_charging_profile(self, evse_id: int, charging_profile: dict[str, Any], **_: Any):
        if self.sim.refuse_profiles or evse_id != self.sim.evse_id:
            return self._call_result.SetChargingProfile(status="Rejected")
        if charging_profile["charging_profile_kind"] != "Absolute":
            return self._call_result.SetChargingProfile(status="Rejected")
        self.sim.advance(self.sim.clock.now())
        self.sim.profiles[charging_profile["id"]] = charging_profile
        self.sim.advance(self.sim.clock.now())
        return self._call_result.SetChargingProfile(status="Accepted")

    @on("ClearChargingProfile")
    def on_clear_charging_profile(self, charging_profile_id: int | None = None, **_: Any):
        matching = [pid for pid in self.sim.profiles if charging_profile_id in (None, pid)]
        self.sim.advance(self.sim.clock.now())
        for pid in matching:
            del self.sim.profiles[pid]
        self.sim.advance(self.sim.clock.now())
        return self._call_result.ClearChargingProfile(status="Accepted" if matching else "Unknown")


class _Station201(_StationHandlers, v201.ChargePoint):
    pass


class _Station21(_StationHandlers, v21.ChargePoint):
    pass


class Ocpp2ChargerSim(SimCharger):
    def __init__(self, url: str, battery: BatteryPhysics, clock: Clock | None = None, *,
                 version: str = "2.1", evse_id: int = 1, v2x_min_soc_pct: float = 20.0,
                 meter_interval_s: float = 0.1, tick_s: float = 0.05, report_soc: bool = True):
        super().__init__(url, battery, clock, meter_interval_s, tick_s)
        self.version = version
        self.subprotocol, self._ocpp = VERSIONS[version]
        self.evse_id = evse_id
        self.v2x_min_soc_pct = v2x_min_soc_pct
        self.report_soc = report_soc  # AC chargers without ISO 15118 often cannot
        self._transactions = itertools.count(1)
        self.transaction_id: str | None = None
        self._seq = itertools.count()

    async def start(self, timeout_s: float = 5.0) -> None:
        await self._connect(self.subprotocol, timeout_s)
        side_class = _Station21 if self.version == "2.1" else _Station201
        self._side = side_class(self.cp_id, self._connection, response_timeout=5)
        self._side.sim = self
        self._tasks = [asyncio.ensure_future(self._receive())]
        await self._side.call(self._ocpp.call.BootNotification(
            charging_station={"model": "FlexSim-2", "vendor_name": "flexadr"}, reason="PowerUp"))
        await self._plug_notice(self.battery.plugged_in)
        self._run_loops()

    async def _plug_notice(self, plugged_in: bool) -> None:
        """A car at the connector: Occupied and a transaction (2.1: with its V2X
        parameters); gone: the transaction ends and the connector is Available."""
        if not plugged_in and self.transaction_id is not None:
            await self._transaction_event("Ended", "EVDeparted", meter=True)
            self.transaction_id = None
        await self._side.call(self._ocpp.call.StatusNotification(
            timestamp=iso(self.clock.now()), connector_status="Occupied" if plugged_in else "Available",
            evse_id=self.evse_id, connector_id=1))
        if plugged_in:
            self.transaction_id = f"TX-{next(self._transactions)}"
            await self._transaction_event("Started", "CablePluggedIn", meter=True)
            if self.version == "2.1":
                await self.notify_charging_needs()

    async def notify_charging_needs(self) -> None:
        """Tell the CSMS what the EV can do (ISO 15118-20 BPT, passed on in OCPP 2.1)."""
        b = self.battery
        to_min_wh = (self.v2x_min_soc_pct - b.soc_pct) / 100 * b.capacity_kwh * 1000
        to_max_wh = (100 - b.soc_pct) / 100 * b.capacity_kwh * 1000
        target = {} if b.charge_target_pct is None else {
            "targetSoC": round(b.charge_target_pct),
            "evTargetEnergyRequest": round((round(b.charge_target_pct) - b.soc_pct) / 100
                                           * b.capacity_kwh * 1000, 1)}
        await self._side.call(self._ocpp.call.NotifyEVChargingNeeds(evse_id=self.evse_id, charging_needs={
            "requestedEnergyTransfer": "AC_BPT",
            "controlMode": "ScheduledControl",
            "v2xChargingParameters": {
                "maxChargePower": b.max_charge_kw * 1000,
                "maxDischargePower": b.max_discharge_kw * 1000,
                "evMinV2XEnergyRequest": round(to_min_wh, 1),
                "evMaxV2XEnergyRequest": round(to_max_wh, 1),
            } | target,
        }))

    async def _transaction_event(self, event_type: str, trigger: str, meter: bool = False) -> None:
        kw = self.battery.kw
        state = "Charging" if kw != 0 else "SuspendedEVSE" if self.battery.plugged_in else "Idle"
        request = self._ocpp.call.TransactionEvent(
            event_type=event_type, timestamp=iso(self.clock.now()), trigger_reason=trigger,
            seq_no=next(self._seq),
            transaction_info={"transactionId": self.transaction_id, "chargingState": state},
            evse={"id": self.evse_id, "connectorId": 1},
            meter_value=[self._meter_value()] if meter else None,
        )
        await self._side.call(request)

    def _meter_value(self) -> dict[str, Any]:
        b = self.battery
        def sample(value: float, measurand: str, unit: str) -> dict[str, Any]:
            return {"value": round(value, 3), "measurand": measurand, "unitOfMeasure": {"unit": unit}}
        samples = [
            sample(b.kwh_imported * 1000, "Energy.Active.Import.Register", "Wh"),
            sample(b.kwh_exported * 1000, "Energy.Active.Export.Register", "Wh"),
            sample(max(b.kw, 0) * 1000, "Power.Active.Import", "W"),
            sample(max(-b.kw, 0) * 1000, "Power.Active.Export", "W"),
        ]
        if self.report_soc:
            samples.append(sample(b.soc_pct, "SoC", "Percent"))
        return {"timestamp": iso(self.clock.now()), "sampledValue": samples}

    # --- the station's own behaviour --------------------------------------------
    def setpoint_kw(self, now: datetime) -> float | None:
        """What the winning profile asks: None = unmanaged, >= 0 = charge cap, < 0 = discharge."""
        in_force = []
        for profile in self.profiles.values():
            period = active_period(profile, now)
            if period is not None:
                rank = (_PURPOSE_RANK.get(profile["charging_profile_purpose"], 0), profile["stack_level"])
                in_force.append((rank, period))
        if not in_force:
            return None
        _, period = max(in_force, key=lambda item: item[0])
        mode = period.get("operation_mode", "ChargingOnly")
        if mode == "Idle":
            return 0.0
        if mode == "CentralSetpoint" and float(period.get("setpoint", 0)) < 0:
            watts = -float(period["setpoint"])
            if "discharge_limit" in period:
                watts = min(watts, -float(period["discharge_limit"]))
            return -watts / 1000
        return float(period["limit"]) / 1000 if "limit" in period else None

    def _step(self, now: datetime) -> None:
        self.battery.step(now, self.setpoint_kw(now), self.v2x_min_soc_pct)

    def _schedule(self, profile: dict[str, Any]) -> dict[str, Any]:
        return profile["charging_schedule"][0]

    async def _send_meter(self) -> None:
        if self.transaction_id is None:      # no car: the station's own meter report
            await self._side.call(self._ocpp.call.MeterValues(
                evse_id=self.evse_id, meter_value=[self._meter_value()]))
            return
        await self._transaction_event("Updated", "MeterValuePeriodic", meter=True)
