"""`sim`: a physics simulator of EVs and home batteries.

State of charge moves with power and time, charging and discharging lose
energy to efficiency, nothing goes below its floor, and a charge-delayed car
resumes charging when the delay ends. `time_scale` compresses time for demos:
with time_scale=120 one wall-clock second moves two minutes of energy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Mapping

from adapters.base import Adapter, Capability, Charge, ChargeDelay, Command, Discharge, Reading
from flexadr.clock import Clock

KINDS = {
    "ev_managed": frozenset({Capability.CHARGE_DELAY, Capability.TELEMETRY}),
    "ev_v2g": frozenset({Capability.CHARGE_DELAY, Capability.DISCHARGE, Capability.TELEMETRY}),
    "battery": frozenset({Capability.DISCHARGE, Capability.TELEMETRY}),
}
_EPS_PCT = 1e-9


@dataclass
class DeviceSpec:
    kind: str
    capacity_kwh: float
    soc_pct: float
    max_charge_kw: float
    max_discharge_kw: float = 0.0
    floor_pct: float = 0.0
    # Where normal (unmanaged) charging stops; None = the device idles when not commanded.
    charge_target_pct: float | None = 90.0
    plugged_in: bool = True
    efficiency: float = 0.95
    time_scale: float = 1.0
    # When set, the car is plugged in exactly inside these [start, end) windows
    # (datetimes or ISO strings) and `plugged_in` is ignored.
    plug_windows: list[tuple[datetime, datetime]] | None = None

    def __post_init__(self) -> None:
        if self.plug_windows is not None:
            self.plug_windows = [(_utc(start), _utc(end)) for start, end in self.plug_windows]
            if any(start >= end for start, end in self.plug_windows):
                raise ValueError("every plug window must start before it ends")
        if self.kind not in KINDS:
            raise ValueError(f"unknown device kind {self.kind!r}; known: {', '.join(KINDS)}")
        if not 0 <= self.soc_pct <= 100:
            raise ValueError(f"soc_pct must be within 0-100, got {self.soc_pct}")
        if self.capacity_kwh <= 0 or not 0 < self.efficiency <= 1:
            raise ValueError("capacity_kwh must be > 0 and efficiency within (0, 1]")


def _utc(when: datetime | str) -> datetime:
    when = datetime.fromisoformat(when) if isinstance(when, str) else when
    if when.tzinfo is None:
        raise ValueError(f"plug window times need a timezone: {when!r}")
    return when.astimezone(timezone.utc)


@dataclass
class Segment:
    start: datetime
    end: datetime
    kw: float


def extend(history: list[Segment], start: datetime, end: datetime, kw: float) -> None:
    """Add [start, end) at `kw` to a device's history, merged into the last stretch
    when it continues it at the same power."""
    last = history[-1] if history else None
    if last is not None and last.kw == kw and last.end == start:
        last.end = end
    else:
        history.append(Segment(start, end, kw))


def mean_kw(history: list[Segment], start: datetime, end: datetime) -> float:
    """Time-weighted mean power of a history over [start, end)."""
    total = 0.0
    for seg in history:
        overlap = (min(seg.end, end) - max(seg.start, start)).total_seconds()
        if overlap > 0:
            total += seg.kw * overlap
    return total / (end - start).total_seconds()


@dataclass
class SimulatedDevice:
    """Integrates the device piecewise-exactly between breakpoints."""
    spec: DeviceSpec
    now: datetime
    soc_pct: float = field(init=False)
    kwh_imported: float = field(default=0.0, init=False)
    kwh_exported: float = field(default=0.0, init=False)
    commands: list[Command] = field(default_factory=list, init=False)
    history: list[Segment] = field(default_factory=list, init=False)

    def __post_init__(self) -> None:
        self.soc_pct = self.spec.soc_pct
        scheduled = self._scheduled_plug(self.now)
        self.plugged_in = self.spec.plugged_in if scheduled is None else scheduled

    def _scheduled_plug(self, at: datetime) -> bool | None:
        windows = self.spec.plug_windows
        if windows is None:
            return None
        return any(start <= at < end for start, end in windows)

    def _plug_edges(self) -> list[datetime]:
        return [t for window in self.spec.plug_windows or () for t in window]

    # --- control -----------------------------------------------------------
    def apply(self, command: Command) -> None:
        self.commands.append(command)

    def clear(self) -> None:
        self.commands.clear()

    def set_plugged_in(self, plugged_in: bool, at: datetime) -> None:
        self.advance(at)
        self.plugged_in = plugged_in

    # --- physics -----------------------------------------------------------
    def _active(self, at: datetime) -> Command | None:
        active = [c for c in self.commands if c.start <= at < c.end]
        return active[-1] if active else None

    def _power_and_limit(self, at: datetime) -> tuple[float, float | None]:
        """Power now and the state of charge at which that power must stop."""
        if not self.plugged_in:
            return 0.0, None
        command = self._active(at)
        if isinstance(command, Discharge):
            floor = max(command.min_soc_pct, self.spec.floor_pct)
            if self.soc_pct <= floor + _EPS_PCT:
                return 0.0, None
            return -min(command.max_kw, self.spec.max_discharge_kw), floor
        if isinstance(command, ChargeDelay) and command.max_kw <= 0:
            return 0.0, None
        target = self.spec.charge_target_pct
        if isinstance(command, Charge):
            target = command.target_soc_pct
        if target is None or self.soc_pct >= target - _EPS_PCT:
            return 0.0, None
        if isinstance(command, ChargeDelay):
            return min(command.max_kw, self.spec.max_charge_kw), target
        return self.spec.max_charge_kw, target

    def _soc_rate_pct_per_s(self, kw: float) -> float:
        stored_kw = kw * self.spec.efficiency if kw > 0 else kw / self.spec.efficiency
        return stored_kw * self.spec.time_scale / 3600 / self.spec.capacity_kwh * 100

    def _next_edge(self, after: datetime, until: datetime) -> datetime:
        edges = [t for c in self.commands for t in (c.start, c.end)] + self._plug_edges()
        return min((t for t in edges if after < t < until), default=until)

    def advance(self, until: datetime) -> None:
        while self.now < until:
            kw, limit = self._power_and_limit(self.now)
            step_end = self._next_edge(self.now, until)
            rate = self._soc_rate_pct_per_s(kw)
            if limit is not None and rate != 0:
                to_limit_s = (limit - self.soc_pct) / rate
                step_end = min(step_end, self.now + timedelta(seconds=max(to_limit_s, 0)))
            seconds = (step_end - self.now).total_seconds()
            if seconds <= 0:
                # Limit reached exactly now: pin the state so the next pass sees it.
                self.soc_pct = limit if limit is not None else self.soc_pct
                step_end = min(self.now + timedelta(microseconds=1), until)
                seconds = (step_end - self.now).total_seconds()
                kw, rate = 0.0, 0.0
            self._record(step_end, kw, rate * seconds)
            if step_end in self._plug_edges():
                # The car arrives or leaves on schedule; set_plugged_in overrides until the next edge.
                self.plugged_in = bool(self._scheduled_plug(step_end))

    def _record(self, end: datetime, kw: float, soc_delta_pct: float) -> None:
        hours = (end - self.now).total_seconds() * self.spec.time_scale / 3600
        if kw > 0:
            self.kwh_imported += kw * hours
        else:
            self.kwh_exported += -kw * hours
        self.soc_pct = min(100.0, max(0.0, self.soc_pct + soc_delta_pct))
        extend(self.history, self.now, end, kw)
        self.now = end

    def power_kw(self) -> float:
        return self._power_and_limit(self.now)[0]

    def mean_kw(self, start: datetime, end: datetime) -> float:
        """What the device actually did: time-weighted mean power over [start, end)."""
        self.advance(end)
        return mean_kw(self.history, start, end)


class SimAdapter(Adapter):
    """Adapter over a SimulatedDevice; its config is a DeviceSpec as a mapping."""

    def __init__(self, config: Mapping[str, Any], clock: Clock):
        super().__init__(config, clock)
        self.device = SimulatedDevice(DeviceSpec(**self.config), clock.now())
        self.capabilities = KINDS[self.device.spec.kind]

    async def apply(self, command: Command) -> None:
        self.device.advance(self.clock.now())
        self.device.apply(command)

    async def clear(self) -> None:
        self.device.advance(self.clock.now())
        self.device.clear()

    async def read(self) -> Reading:
        device = self.device
        device.advance(self.clock.now())
        return Reading(
            at=device.now,
            kw=device.power_kw(),
            kwh_imported=device.kwh_imported,
            kwh_exported=device.kwh_exported,
            soc_pct=device.soc_pct,
            plugged_in=device.plugged_in,
        )
