"""Dispatch policy: events, the device's state and the owner's wishes -> device commands.

Pure: no I/O, no clock of its own. Each interval of an event asks something of
the device (`Ask`); the policy turns every interval still ahead into a command
on that interval's own window, so the device follows the schedule as the VTN
sent it. The owner comes first, in this order: a grid outage (islanding)
leaves the owner in full control; a storm warning means no discharge and
charging toward 100 %; an unplugged car cannot take part; a battery never goes
below the owner's floor nor beyond the program's yearly cycle cap; a curtailed
car must still be ready by the owner's time.

Sign conventions: a LOAD_DISPATCH setpoint is the power the device delivers
to the grid (the programs' dispatch kW; negative = draw); every LOAD_CONTROL
type and a LOAD_DISPATCH delta / multiplier speak of the device's load (power
into it), relative to `baseline_kw`, its load when the event first arrived.

`time_scale` is how many device-seconds pass per wall-clock second (1 in
production; > 1 when a demo or a test compresses time).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from typing import Sequence
from zoneinfo import ZoneInfo

from adapters.base import Capability, Charge, ChargeDelay, Command, Discharge, Reading
from ven.events import Event, Interval, Signal


class Opt(enum.StrEnum):
    IN = "optIn"
    OUT = "optOut"


@dataclass(frozen=True)
class DeviceProfile:
    capabilities: frozenset[Capability]
    capacity_kwh: float
    max_discharge_kw: float = 0.0
    max_charge_kw: float = 0.0        # the charger's rating: what a capacity fraction is of
    efficiency: float = 0.95
    cycle_cap_per_year: float | None = None   # full-equivalent discharge cycles


@dataclass(frozen=True)
class SimpleLevel:
    """What a SIMPLE level (0-3) means for this device."""
    charge_fraction: float = 1.0      # of the charger's rating; 1 = no limit, 0 = no charging
    discharge: bool = False           # deliver at the inverter's rating, above the floor


# 0 normal, 1 moderate: half-rate charging, 2 high: no charging,
# 3 special: no charging and, where the device can, discharge.
DEFAULT_SIMPLE_LEVELS = (SimpleLevel(), SimpleLevel(0.5), SimpleLevel(0.0),
                         SimpleLevel(0.0, discharge=True))


@dataclass(frozen=True)
class OwnerPrefs:
    min_soc_pct: float = 20.0
    ready_by: time | None = None       # local time the car must be charged by
    ready_soc_pct: float = 80.0
    timezone: str = "America/New_York"
    opt_out_if_not_ready: bool = True
    simple_levels: tuple[SimpleLevel, ...] = DEFAULT_SIMPLE_LEVELS


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


@dataclass(frozen=True)
class Ask:
    """What one interval asks of the device."""
    charge_max_kw: float | None = None   # cap on charging; None = no limit
    charge_fraction: float | None = None # cap as a fraction of the charger's rating
    discharge_kw: float = 0.0            # power to deliver
    soc_pct: float | None = None         # CHARGE_STATE: state of charge to reach or hold


# siScaleCode -> factor (2.0b itemBase); a signal without itemBase speaks kW (our programs).
_SCALE = {"p": 1e-12, "n": 1e-9, "micro": 1e-6, "m": 1e-3, "c": 1e-2, "d": 1e-1, "none": 1.0,
          "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_DISPATCH_FIRST = ("LOAD_DISPATCH", "LOAD_CONTROL", "CHARGE_STATE", "SIMPLE")


def _kw(signal: Signal, value: float) -> float | None:
    if signal.unit is None:
        return value
    if signal.unit.lower() != "w" or (signal.scale or "none") not in _SCALE:
        return None
    return value * _SCALE[signal.scale or "none"] / 1000


def _load(kw: float | None) -> Ask | None:
    """A wanted load (kW into the device): a cap on charging, or a discharge."""
    if kw is None:
        return None
    return Ask(discharge_kw=-kw) if kw < 0 else Ask(charge_max_kw=kw)




def ask_for(signal: Signal, payload: float, profile: DeviceProfile, prefs: OwnerPrefs,
            baseline_kw: float) -> Ask | None:
    """What an interval of `signal` asks of the device; None if we do not support it."""
    kind = (signal.name, signal.type)
    if kind == ("LOAD_DISPATCH", "setpoint"):
        kw = _kw(signal, payload)
        return _load(None if kw is None else -kw)
    if kind == ("LOAD_DISPATCH", "delta"):
        kw = _kw(signal, payload)
        return _load(None if kw is None else baseline_kw - kw)
    if kind == ("LOAD_DISPATCH", "multiplier"):
        return _load(baseline_kw * payload)
    if kind == ("LOAD_CONTROL", "x-loadControlCapacity"):
        return Ask(charge_fraction=payload)
    if kind == ("LOAD_CONTROL", "x-loadControlLevelOffset"):
        kw = _kw(signal, payload)
        return _load(None if kw is None else baseline_kw + kw)
    if kind == ("LOAD_CONTROL", "x-loadControlPercentOffset"):
        return _load(baseline_kw * (1 + payload / 100))
    if kind == ("LOAD_CONTROL", "x-loadControlSetpoint"):
        return _load(_kw(signal, payload))
    if kind == ("SIMPLE", "level"):
        level = round(payload)
        if level != payload or not 0 <= level < len(prefs.simple_levels):
            return None
        mapped = prefs.simple_levels[level]
        return Ask(charge_fraction=mapped.charge_fraction,
                   discharge_kw=profile.max_discharge_kw if mapped.discharge else 0.0)
    if kind == ("CHARGE_STATE", "setpoint"):
        if signal.unit is None or signal.unit == "%":
            return Ask(soc_pct=payload)
        kw = _kw(replace(signal, unit="W"), payload) if signal.unit.lower() == "wh" else None
        return None if kw is None else Ask(soc_pct=kw / profile.capacity_kwh * 100)
    return None


def dispatch_signal(event: Event, profile: DeviceProfile, prefs: OwnerPrefs) -> Signal | None:
    """The signal the device follows: the most specific one we support (SIMPLE last)."""
    supported = [s for s in event.signals if s.intervals
                 and all(ask_for(s, i.payload, profile, prefs, 0.0) is not None for i in s.intervals)]
    order = {name: n for n, name in enumerate(_DISPATCH_FIRST)}
    return min(supported, key=lambda s: order.get(s.name, len(order)), default=None)


def decide(event: Event, reading: Reading, profile: DeviceProfile, prefs: OwnerPrefs,
           now: datetime, time_scale: float = 1.0, conditions: Conditions = Conditions(),
           baseline_kw: float = 0.0) -> Decision:
    if now >= event.end:
        return Decision(Opt.OUT, "event already over")
    if conditions.islanded:
        return Decision(Opt.OUT, "grid outage: the owner keeps full control")
    signal = dispatch_signal(event, profile, prefs)
    if signal is None:
        names = ", ".join(f"{s.name}/{s.type}" for s in event.signals) or "no signal"
        return Decision(Opt.OUT, f"signal {names} not supported")
    if not reading.plugged_in:
        return Decision(Opt.OUT, "device unplugged")
    if _storm_active(conditions, now, event):
        return Decision(Opt.OUT, "severe storm warning: no discharge, charging toward 100 %",
                        (Charge(now, conditions.storm_warning_until, 100.0),))
    ahead = [(i, ask_for(signal, i.payload, profile, prefs, baseline_kw))
             for i in signal.intervals if i.end > now]
    plan = _Plan(reading, profile, prefs, now, time_scale, conditions)
    if signal.name == "CHARGE_STATE":
        outcomes = plan.soc_targets(ahead)
    else:
        outcomes = plan.discharges([(i, a) for i, a in ahead if a.discharge_kw > 0])
        for interval, wanted in ahead:
            if interval not in outcomes:
                outcomes[interval] = plan.curtail(interval, wanted)
    commands = _merged([c for i, _ in ahead for c in outcomes[i].commands])
    unable = [o.reason for i, _ in ahead if (o := outcomes[i]).unable]
    if ahead and len(unable) == len(ahead):
        return Decision(Opt.OUT, unable[0])
    return _ready_by(Decision(Opt.IN, _describe(commands, unable), commands),
                     reading, profile, prefs, now, time_scale, event)


@dataclass(frozen=True)
class _Outcome:
    commands: tuple[Command, ...] = ()
    reason: str = ""              # set when the device cannot do what the interval asks

    @property
    def unable(self) -> bool:
        return bool(self.reason)


@dataclass(frozen=True)
class _Plan:
    reading: Reading
    profile: DeviceProfile
    prefs: OwnerPrefs
    now: datetime
    time_scale: float
    conditions: Conditions

    def hours(self, interval: Interval) -> float:
        return _device_hours(interval.end - max(interval.start, self.now), self.time_scale)

    def discharges(self, wanted: list[tuple[Interval, Ask]]) -> dict[Interval, _Outcome]:
        """Discharge intervals: the energy above the floor (and within the cycle cap) is
        spread so each interval gets its setpoint, or the same lower level when short."""
        if not wanted:
            return {}
        refused = self._discharge_refused()
        if refused:
            return {i: self.curtail(i, replace(a, discharge_kw=0.0), refused) for i, a in wanted}
        profile, floor_pct = self.profile, self.prefs.min_soc_pct
        usable_kwh = min(self._above(self.reading.soc_pct, floor_pct), self._cycles_left_kwh())
        demands = [(i, min(a.discharge_kw, profile.max_discharge_kw), self.hours(i)) for i, a in wanted]
        level = _water_level([(kw, h) for _, kw, h in demands], usable_kwh)
        return {i: _Outcome((Discharge(i.start, i.end, max_kw=min(kw, level),
                                       min_soc_pct=floor_pct),)) for i, kw, _ in demands}

    def _above(self, soc_pct: float, floor_pct: float) -> float:
        """Energy a discharge from soc_pct down to floor_pct delivers."""
        profile = self.profile
        return max(soc_pct - floor_pct, 0.0) / 100 * profile.capacity_kwh * profile.efficiency

    def _cycles_left_kwh(self) -> float:
        cap = self.profile.cycle_cap_per_year
        if cap is None:
            return float("inf")
        return max(cap - self.conditions.cycles_used, 0.0) * self.profile.capacity_kwh

    def _discharge_refused(self) -> str:
        profile = self.profile
        if Capability.DISCHARGE not in profile.capabilities:
            return "device cannot discharge"
        if self.reading.soc_pct <= self.prefs.min_soc_pct:
            return f"state of charge {self.reading.soc_pct:.0f} % is at or below the floor"
        if profile.cycle_cap_per_year is not None \
                and self.conditions.cycles_used >= profile.cycle_cap_per_year:
            return f"yearly cap of {profile.cycle_cap_per_year:g} cycles reached"
        return ""

    def curtail(self, interval: Interval, wanted: Ask, refused: str = "") -> _Outcome:
        """A charge cap (or a discharge the device cannot do, which still holds
        charging off if the interval asked for that too)."""
        rating = self.profile.max_charge_kw
        cap, fraction = wanted.charge_max_kw, wanted.charge_fraction
        if fraction is not None:
            if fraction >= 1:
                return _Outcome(reason=refused)             # 1.0: no limit
            if 0 < fraction and rating <= 0:
                return _Outcome(reason=refused or "the charger's rating (max_charge_kw) is "
                                                  "not configured: no fraction of it to charge at")
            cap = max(fraction, 0.0) * rating
        if cap is None or cap >= rating > 0:
            return _Outcome(reason=refused)                 # nothing to curtail
        if Capability.CHARGE_DELAY not in self.profile.capabilities:
            return _Outcome(reason=refused or "device cannot delay charging")
        return _Outcome((ChargeDelay(interval.start, interval.end, max_kw=cap),))

    def soc_targets(self, ahead: list[tuple[Interval, Ask]]) -> dict[Interval, _Outcome]:
        """CHARGE_STATE: charge up to each interval's level, or discharge down to it (never
        below the floor); the state of charge is followed from interval to interval so
        the cycle cap holds over the whole event."""
        profile, soc = self.profile, self.reading.soc_pct
        cycles_kwh, outcomes = self._cycles_left_kwh(), {}
        for interval, wanted in ahead:
            target = min(wanted.soc_pct, 100.0)
            floor_pct = max(target, self.prefs.min_soc_pct)
            if soc < target:
                outcomes[interval], soc = _Outcome((Charge(interval.start, interval.end, target),)), target
                continue
            hours = self.hours(interval)
            energy_kwh = min(self._above(soc, floor_pct), cycles_kwh)
            if energy_kwh > 0 and hours > 0 and not self._discharge_refused():
                kw = min(profile.max_discharge_kw, energy_kwh / hours)
                outcomes[interval] = _Outcome((Discharge(interval.start, interval.end, kw, floor_pct),))
                cycles_kwh -= kw * hours
                soc -= kw * hours / profile.efficiency / profile.capacity_kwh * 100
            elif Capability.CHARGE_DELAY in profile.capabilities:
                outcomes[interval] = _Outcome((ChargeDelay(interval.start, interval.end),))   # hold
            else:
                outcomes[interval] = _Outcome()
        return outcomes


def _water_level(demands: list[tuple[float, float]], energy_kwh: float) -> float:
    """The power level c with sum(min(kw, c) * h) == energy_kwh (inf if all demands fit)."""
    if sum(kw * h for kw, h in demands) <= energy_kwh:
        return float("inf")
    if energy_kwh <= 0:
        return 0.0
    left, hours = energy_kwh, sum(h for _, h in demands)
    for kw, h in sorted(demands):
        if kw * hours >= left:
            return left / hours
        left -= kw * h
        hours -= h
    return float("inf")


def _merged(commands: list[Command]) -> tuple[Command, ...]:
    """Adjacent intervals asking the same thing become one command (fewer device profiles)."""
    out: list[Command] = []
    for command in commands:
        last = out[-1] if out else None
        if last is not None and last.end == command.start \
                and replace(last, start=command.start, end=command.end) == command:
            out[-1] = replace(last, end=command.end)
        else:
            out.append(command)
    return tuple(out)


def _describe(commands: tuple[Command, ...], unable: list[str]) -> str:
    parts = []
    for c in commands:
        if isinstance(c, Discharge):
            parts.append(f"discharging {c.max_kw:.2f} kW")
        elif isinstance(c, ChargeDelay):
            parts.append(f"charging capped at {c.max_kw:.2f} kW" if c.max_kw else "charging delayed")
        else:
            parts.append(f"charging to {c.target_soc_pct:.0f} %")
    text = " / ".join(dict.fromkeys(parts)) or "nothing to change"
    return text + (f" ({len(unable)} interval(s) not followed: {unable[0]})" if unable else "")


def _ready_by(decision: Decision, reading: Reading, profile: DeviceProfile, prefs: OwnerPrefs,
              now: datetime, time_scale: float, event: Event) -> Decision:
    """A curtailed car must still reach the owner's level by the owner's time."""
    caps = [c for c in decision.commands if isinstance(c, ChargeDelay)]
    deadline = ready_at(prefs, event.end)
    if not caps or deadline is None:
        return decision
    needed_kwh = max(prefs.ready_soc_pct - reading.soc_pct, 0) / 100 * profile.capacity_kwh
    full_kwh = profile.max_charge_kw * _device_hours(deadline - now, time_scale)
    lost_kwh = sum((profile.max_charge_kw - min(c.max_kw, profile.max_charge_kw))
                   * _device_hours(min(c.end, deadline) - max(c.start, now), time_scale)
                   for c in caps)
    possible_kwh = (full_kwh - lost_kwh) * profile.efficiency
    if needed_kwh <= possible_kwh:
        return replace(decision, reason=f"{decision.reason}; ready in time")
    shortfall = f"would not reach {prefs.ready_soc_pct:.0f} % by {prefs.ready_by:%H:%M}"
    if prefs.opt_out_if_not_ready:
        return Decision(Opt.OUT, shortfall)
    return replace(decision, reason=f"{decision.reason} although it {shortfall}")


def in_force(plans: Sequence[tuple[Event, Decision]]) -> list[Command]:
    """The device's commands: where events overlap, the one that takes precedence
    (lower priority number, 0 = none = lowest, then earlier start) governs; an
    opted-out event governs nothing."""
    commands: list[Command] = []
    covered: list[tuple[datetime, datetime]] = []
    for event, decision in sorted(plans, key=lambda plan: plan[0].precedence()):
        for command in decision.commands:
            commands += [replace(command, start=s, end=e)
                         for s, e in _outside(command.start, command.end, covered)]
        if decision.opt is Opt.IN:
            covered.append((event.start, event.end))
    return commands


def _outside(start: datetime, end: datetime,
             covered: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    pieces = [(start, end)]
    for c_start, c_end in covered:
        pieces = [piece for s, e in pieces
                  for piece in ((s, min(e, c_start)), (max(s, c_end), e)) if piece[0] < piece[1]]
    return pieces


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


def _storm_active(conditions: Conditions, now: datetime, event: Event) -> bool:
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
