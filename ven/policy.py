"""Dispatch policy: an event, the device's state and the owner's wishes -> device commands.

Pure: no I/O, no clock of its own. `time_scale` is how many device-seconds
pass per wall-clock second (1 in production; >1 when a demo compresses time).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from adapters.base import Capability, ChargeDelay, Command, Discharge, Reading


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
    efficiency: float = 0.95


@dataclass(frozen=True)
class OwnerPrefs:
    min_soc_pct: float = 20.0


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
           now: datetime, time_scale: float = 1.0) -> Decision:
    if now >= event.end:
        return Decision(Opt.OUT, "event already over")
    action = action_for(event.signal)
    if action is None:
        return Decision(Opt.OUT, f"signal {event.signal.name}/{event.signal.type} not supported")
    if not reading.plugged_in:
        return Decision(Opt.OUT, "device unplugged")
    if action is Action.CHARGE_DELAY:
        return _charge_delay(event, profile)
    return _discharge(event, reading, profile, prefs, now, time_scale)


def _charge_delay(event: EventWindow, profile: DeviceProfile) -> Decision:
    if Capability.CHARGE_DELAY not in profile.capabilities:
        return Decision(Opt.OUT, "device cannot delay charging")
    return Decision(Opt.IN, "charging delayed", (ChargeDelay(event.start, event.end),))


def _discharge(event: EventWindow, reading: Reading, profile: DeviceProfile, prefs: OwnerPrefs,
               now: datetime, time_scale: float) -> Decision:
    if Capability.DISCHARGE not in profile.capabilities:
        return Decision(Opt.OUT, "device cannot discharge")
    floor_pct = prefs.min_soc_pct
    usable_kwh = (reading.soc_pct - floor_pct) / 100 * profile.capacity_kwh * profile.efficiency
    if usable_kwh <= 0:
        return Decision(Opt.OUT, f"state of charge {reading.soc_pct:.0f} % is at or below the floor")
    # Spread what is above the floor over what is left of the event, so the
    # average over the FULL event is as high as the floor allows.
    remaining_h = (event.end - max(event.start, now)).total_seconds() * time_scale / 3600
    kw = min(event.signal.value, profile.max_discharge_kw, usable_kwh / remaining_h)
    return Decision(Opt.IN, f"discharging {kw:.2f} kW",
                    (Discharge(event.start, event.end, max_kw=kw, min_soc_pct=floor_pct),))
