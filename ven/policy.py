"""Dispatch policy: an event, the device's state and the owner's wishes -> device commands.

Pure: no I/O, no clock of its own. The owner comes first, in this order:
a grid outage (islanding) leaves the owner in full control; a storm warning
means no discharge and charging toward 100 %; an unplugged car cannot take
part; a battery never goes below the owner's floor nor beyond the program's
yearly cycle cap; a delayed car must still be ready by the owner's time.

`time_scale` is how many device-seconds pass per wall-clock second (1 in
production; > 1 when a demo or a test compresses time).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from adapters.base import Capability, Charge, ChargeDelay, Command, Discharge, Reading


class Opt(enum.StrEnum):
    IN = "optIn"
    OUT = "optOut"


class Action(enum.StrEnum):
    CHARGE_DELAY = "charge_delay"
    DISCHARGE = "discharge"


@dataclass(frozen=True)
class EventSignal:
    name: str
    type: str
    value: float


@dataclass(frozen=True)
class EventWindow:
    event_id: str
    start: datetime
    end: datetime
    signal: EventSignal


@dataclass(frozen=True)
class DeviceProfile:
    capabilities: frozenset[Capability]
    capacity_kwh: float
    max_discharge_kw: float = 0.0
    max_charge_kw: float = 0.0
    efficiency: float = 0.95
    cycle_cap_per_year: float | None = None   # full-equivalent discharge cycles


@dataclass(frozen=True)
class OwnerPrefs:
    min_soc_pct: float = 20.0
    ready_by: time | None = None       # local time the car must be charged by
    ready_soc_pct: float = 80.0
    timezone: str = "America/New_York"
    opt_out_if_not_ready: bool = True


@dataclass(frozen=True)
class Conditions:
    """What the agent knows beyond the event and the device."""
    islanded: bool = False                        # grid outage: utility commands do not apply
    storm_warning_until: datetime | None = None   # a severe storm warning is active until then
    cycles_used: float = 0.0                      # full-equivalent discharge cycles this year


@dataclass(frozen=True)
class Decision:
    opt: Opt
    reason: str
    commands: tuple[Command, ...] = ()


def action_for(signal: EventSignal) -> Action | None:
    """Which device action a 2.0b signal asks for; None if we do not support it."""
    if signal.name == "LOAD_CONTROL" and signal.type == "x-loadControlCapacity":
        return Action.CHARGE_DELAY
    if signal.name == "SIMPLE" and signal.type == "level" and signal.value > 0:
        return Action.CHARGE_DELAY
    if signal.name == "LOAD_DISPATCH" and signal.type in ("setpoint", "delta"):
        return Action.DISCHARGE
    return None


def decide(event: EventWindow, reading: Reading, profile: DeviceProfile, prefs: OwnerPrefs,
           now: datetime, time_scale: float = 1.0,
           conditions: Conditions = Conditions()) -> Decision:
    if now >= event.end:
        return Decision(Opt.OUT, "event already over")
    if conditions.islanded:
        return Decision(Opt.OUT, "grid outage: the owner keeps full control")
    action = action_for(event.signal)
    if action is None:
        return Decision(Opt.OUT, f"signal {event.signal.name}/{event.signal.type} not supported")
    if not reading.plugged_in:
        return Decision(Opt.OUT, "device unplugged")
    if _storm_active(conditions, now, event):
        return Decision(Opt.OUT, "severe storm warning: no discharge, charging toward 100 %",
                        (Charge(now, conditions.storm_warning_until, 100.0),))
    if action is Action.CHARGE_DELAY:
        return _charge_delay(event, reading, profile, prefs, now, time_scale)
    return _discharge(event, reading, profile, prefs, now, time_scale, conditions)


def storm_preparation(conditions: Conditions, profile: DeviceProfile,
                      now: datetime) -> Charge | None:
    """During a storm warning a battery (or V2G car) charges toward 100 % to ride
    through an outage, event or not; in an outage the owner is in control."""
    until = conditions.storm_warning_until
    if until is None or until <= now or conditions.islanded:
        return None
    if Capability.DISCHARGE not in profile.capabilities:
        return None
    return Charge(now, until, 100.0)


def _storm_active(conditions: Conditions, now: datetime, event: EventWindow) -> bool:
    until = conditions.storm_warning_until
    return until is not None and until > now and until > event.start


def _device_hours(delta: timedelta, time_scale: float) -> float:
    return max(delta.total_seconds(), 0.0) * time_scale / 3600


def ready_at(prefs: OwnerPrefs, after: datetime) -> datetime | None:
    """The first time after `after` that the owner's ready-by clock time comes round."""
    if prefs.ready_by is None:
        return None
    zone = ZoneInfo(prefs.timezone)
    local = after.astimezone(zone)
    candidate = datetime.combine(local.date(), prefs.ready_by, zone)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), prefs.ready_by, zone)
    return candidate


def _charge_delay(event: EventWindow, reading: Reading, profile: DeviceProfile,
                  prefs: OwnerPrefs, now: datetime, time_scale: float) -> Decision:
    if Capability.CHARGE_DELAY not in profile.capabilities:
        return Decision(Opt.OUT, "device cannot delay charging")
    delay = (ChargeDelay(event.start, event.end),)
    deadline = ready_at(prefs, event.end)
    if deadline is None:
        return Decision(Opt.IN, "charging delayed", delay)
    needed_kwh = max(prefs.ready_soc_pct - reading.soc_pct, 0) / 100 * profile.capacity_kwh
    charging_h = (_device_hours(event.start - now, time_scale)
                  + _device_hours(deadline - event.end, time_scale))
    possible_kwh = profile.max_charge_kw * profile.efficiency * charging_h
    if needed_kwh <= possible_kwh:
        return Decision(Opt.IN, "charging delayed; ready in time", delay)
    shortfall = f"would not reach {prefs.ready_soc_pct:.0f} % by {prefs.ready_by:%H:%M}"
    if prefs.opt_out_if_not_ready:
        return Decision(Opt.OUT, shortfall)
    return Decision(Opt.IN, f"charging delayed although it {shortfall}", delay)


def _discharge(event: EventWindow, reading: Reading, profile: DeviceProfile, prefs: OwnerPrefs,
               now: datetime, time_scale: float, conditions: Conditions) -> Decision:
    if Capability.DISCHARGE not in profile.capabilities:
        return Decision(Opt.OUT, "device cannot discharge")
    floor_pct = prefs.min_soc_pct
    usable_kwh = (reading.soc_pct - floor_pct) / 100 * profile.capacity_kwh * profile.efficiency
    if usable_kwh <= 0:
        return Decision(Opt.OUT, f"state of charge {reading.soc_pct:.0f} % is at or below the floor")
    if profile.cycle_cap_per_year is not None:
        cycles_left = profile.cycle_cap_per_year - conditions.cycles_used
        if cycles_left <= 0:
            return Decision(Opt.OUT, f"yearly cap of {profile.cycle_cap_per_year:g} cycles reached")
        usable_kwh = min(usable_kwh, cycles_left * profile.capacity_kwh)
    # Spread what may be used over what is left of the event, so the average
    # over the FULL event is as high as the floor and the cycle cap allow.
    remaining_h = _device_hours(event.end - max(event.start, now), time_scale)
    kw = min(event.signal.value, profile.max_discharge_kw, usable_kwh / remaining_h)
    return Decision(Opt.IN, f"discharging {kw:.2f} kW",
                    (Discharge(event.start, event.end, max_kw=kw, min_soc_pct=floor_pct),))
