"""An OCPP 1.6J charge point with a car plugged in, built on `ocpp.v16.ChargePoint`.

It is the device peer for the `ocpp16` adapter: it boots, starts a
transaction, charges the car at its maximum, obeys the charging profiles the
central system installs (TxProfile over TxDefaultProfile, highest stack level
wins, absolute schedules with duration and validity) and reports MeterValues.
Every payload both ways goes through the ocpp package's schema validation.

Fault switches for error tests: `muted` (stops answering calls),
`refuse_profiles` (answers Rejected) and `drop()` (closes the socket).
"""
from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint, call, call_result
from ocpp.v16.enums import Action, ChargingProfileStatus, ClearChargingProfileStatus

from adapters._ocpp_common import iso, parse_time
from adapters.testing.ev_physics import BatteryPhysics
from adapters.testing.sim_charger import MutableSide, SimCharger
from flexadr.clock import Clock

# TxProfile overrides TxDefaultProfile (OCPP 1.6 section 3.13.2).
_PURPOSE_RANK = {"TxProfile": 2, "TxDefaultProfile": 1}


def schedule_limit(profile: dict[str, Any], now: datetime) -> float | None:
    """The limit an (absolute) profile sets at `now`, or None when it is not in force."""
    if "valid_from" in profile and now < parse_time(profile["valid_from"]):
        return None
    if "valid_to" in profile and now >= parse_time(profile["valid_to"]):
        return None
    schedule = profile["charging_schedule"]
    start = parse_time(schedule["start_schedule"]) if "start_schedule" in schedule else None
    if start is None or now < start:
        return None
    elapsed_s = (now - start).total_seconds()
    if "duration" in schedule and elapsed_s >= schedule["duration"]:
        return None
    periods = [p for p in schedule["charging_schedule_period"] if p["start_period"] <= elapsed_s]
    return periods[-1]["limit"] if periods else None


class _ChargerSide(MutableSide, ChargePoint):
    def __init__(self, cp_id: str, connection: Any, sim: "Ocpp16ChargerSim"):
        super().__init__(cp_id, connection, response_timeout=5)
        self.sim = sim

    @on(Action.set_charging_profile)
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict[str, Any]):
        if self.sim.refuse_profiles or connector_id != self.sim.connector_id:
            return call_result.SetChargingProfile(ChargingProfileStatus.rejected)
        if cs_charging_profiles["charging_profile_kind"] != "Absolute":
            return call_result.SetChargingProfile(ChargingProfileStatus.not_supported)
        self.sim.advance(self.sim.clock.now())
        self.sim.profiles[cs_charging_profiles["charging_profile_id"]] = cs_charging_profiles
        self.sim.advance(self.sim.clock.now())
        return call_result.SetChargingProfile(ChargingProfileStatus.accepted)

    @on(Action.clear_charging_profile)
    def on_clear_charging_profile(self, id: int | None = None, **criteria: Any):
        matching = [pid for pid, p in self.sim.profiles.items() if (id is None or pid == id)
                    and all(p.get(k) == v for k, v in criteria.items() if k != "connector_id")]
        self.sim.advance(self.sim.clock.now())
        for pid in matching:
            del self.sim.profiles[pid]
        self.sim.advance(self.sim.clock.now())
        status = ClearChargingProfileStatus.accepted if matching else ClearChargingProfileStatus.unknown
        return call_result.ClearChargingProfile(status)


class Ocpp16ChargerSim(SimCharger):
    def __init__(self, url: str, battery: BatteryPhysics, clock: Clock | None = None, *,
                 connector_id: int = 1, voltage_v: float = 230.0, phases: int = 1,
                 meter_interval_s: float = 0.2, tick_s: float = 0.05):
        super().__init__(url, battery, clock, meter_interval_s, tick_s)
        self.connector_id = connector_id
        self.voltage_v = voltage_v
        self.phases = phases
        self.transaction_id: int | None = None

    async def start(self, timeout_s: float = 5.0) -> None:
        """Connect, boot and, with the car plugged in, start a transaction."""
        await self._connect("ocpp1.6", timeout_s)
        self._side = _ChargerSide(self.cp_id, self._connection, self)
        self._tasks = [asyncio.ensure_future(self._receive())]
        await self._side.call(call.BootNotification(charge_point_model="FlexSim-16",
                                                    charge_point_vendor="flexadr"))
        await self._plug_notice(self.battery.plugged_in)
        self._run_loops()

    async def _plug_notice(self, plugged_in: bool) -> None:
        """A car at the connector: Preparing, a transaction, Charging; gone: the
        transaction ends and the connector is Available."""
        now = iso(self.clock.now())
        if plugged_in:
            await self._status("Preparing")
            started = await self._side.call(call.StartTransaction(
                connector_id=self.connector_id, id_tag="EV-OWNER",
                meter_start=round(self.battery.kwh_imported * 1000), timestamp=now))
            self.transaction_id = started.transaction_id
            await self._status("Charging")
            return
        if self.transaction_id is not None:
            transaction, self.transaction_id = self.transaction_id, None
            await self._side.call(call.StopTransaction(
                meter_stop=round(self.battery.kwh_imported * 1000), timestamp=now,
                transaction_id=transaction))
        await self._status("Available")

    async def _status(self, status: str) -> None:
        await self._side.call(call.StatusNotification(
            connector_id=self.connector_id, error_code="NoError", status=status, timestamp=iso(self.clock.now())))

    # --- the charger's own behaviour --------------------------------------------
    def limit_kw(self, now: datetime) -> float | None:
        """The composite limit now: highest purpose, then highest stack level, wins."""
        in_force = []
        for profile in self.profiles.values():
            limit = schedule_limit(profile, now)
            if limit is not None:
                rank = (_PURPOSE_RANK.get(profile["charging_profile_purpose"], 0), profile["stack_level"])
                in_force.append((rank, limit, profile["charging_schedule"]["charging_rate_unit"]))
        if not in_force:
            return None
        _, limit, unit = max(in_force, key=lambda item: item[0])
        limit = float(limit)  # the ocpp package decodes JSON numbers as Decimal
        return limit / 1000 if unit == "W" else limit * self.voltage_v * self.phases / 1000

    def _step(self, now: datetime) -> None:
        self.battery.step(now, self.limit_kw(now))

    def _schedule(self, profile: dict[str, Any]) -> dict[str, Any]:
        return profile["charging_schedule"]

    async def _send_meter(self) -> None:
        await self._side.call(self._meter_values())

    def _meter_values(self) -> call.MeterValues:
        b = self.battery
        samples = [
            {"value": f"{b.kwh_imported * 1000:.1f}", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
            {"value": f"{b.kwh_exported * 1000:.1f}", "measurand": "Energy.Active.Export.Register", "unit": "Wh"},
            {"value": f"{max(b.kw, 0) * 1000:.1f}", "measurand": "Power.Active.Import", "unit": "W"},
            {"value": f"{max(-b.kw, 0) * 1000:.1f}", "measurand": "Power.Active.Export", "unit": "W"},
            {"value": f"{b.soc_pct:.1f}", "measurand": "SoC", "unit": "Percent", "location": "EV"},
        ]
        return call.MeterValues(
            connector_id=self.connector_id, transaction_id=self.transaction_id,
            meter_value=[{"timestamp": iso(self.clock.now()), "sampledValue": samples}],
        )
