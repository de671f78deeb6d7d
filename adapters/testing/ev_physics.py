"""Battery physics shared by the device simulators (chargers, inverter).

Power is piecewise constant between ticks: each `step(now, limit_kw)` first
integrates the power chosen at the previous step up to `now`, then chooses
the power for the next interval from the limit the device's protocol gives.
`time_scale` compresses time so a test sees a battery drain in seconds.
Every integrated stretch is kept in `history` (the device's own truth, merged
while the power stays the same), and an unplugged device moves nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from adapters.sim import Segment, extend


@dataclass
class BatteryPhysics:
    capacity_kwh: float
    soc_pct: float
    max_charge_kw: float
    max_discharge_kw: float = 0.0
    # Unmanaged charging stops here; None = idle unless told to move.
    charge_target_pct: float | None = 90.0
    efficiency: float = 0.95
    time_scale: float = 1.0
    plugged_in: bool = True
    kw: float = field(default=0.0, init=False)
    kwh_imported: float = field(default=0.0, init=False)
    kwh_exported: float = field(default=0.0, init=False)
    history: list[Segment] = field(default_factory=list, init=False)
    lowest_soc_pct: float = field(default=100.0, init=False)   # over every stretch integrated
    _last: datetime | None = field(default=None, init=False)
    _stop_pct: float | None = field(default=None, init=False)

    @property
    def stepped_at(self) -> datetime | None:
        """When the physics last ran (None: not yet)."""
        return self._last

    def step(self, now: datetime, setpoint_kw: float | None, floor_pct: float = 0.0,
             target_pct: float | None = None) -> None:
        """Integrate to `now`, then follow `setpoint_kw`.

        setpoint_kw None = unmanaged (charge to target); >= 0 caps charging
        at that power; < 0 asks for export at that power, down to floor_pct.
        `target_pct` replaces the owner's charge target (a commanded charge).
        """
        self._integrate(now)
        self.kw, self._stop_pct = self._choose_kw(setpoint_kw, floor_pct, target_pct)

    def _integrate(self, now: datetime) -> None:
        if self._last is None:
            self._last = now
        if now <= self._last:
            return           # already there (time never runs back for the physics)
        stop = self._when_limit_reached(now)
        if stop is not None:
            # The battery management system stops at its reserve or target on time,
            # not at the next step: the rest of the stretch is idle.
            self._move(stop)
            self.soc_pct, self.kw = self._stop_pct, 0.0
        self._move(now)

    def _stored_kw(self) -> float:
        return self.kw * self.efficiency if self.kw > 0 else self.kw / self.efficiency

    def _when_limit_reached(self, now: datetime) -> datetime | None:
        if self.kw == 0 or self._stop_pct is None:
            return None
        pct_per_s = self._stored_kw() * self.time_scale / 3600 / self.capacity_kwh * 100
        seconds = max(0.0, (self._stop_pct - self.soc_pct) / pct_per_s)
        stop = self._last + timedelta(seconds=seconds)
        return stop if stop < now else None

    def _move(self, now: datetime) -> None:
        hours = (now - self._last).total_seconds() * self.time_scale / 3600
        self.lowest_soc_pct = min(self.lowest_soc_pct, self.soc_pct)
        self.soc_pct = min(100.0, max(0.0, self.soc_pct + self._stored_kw() * hours / self.capacity_kwh * 100))
        self.lowest_soc_pct = min(self.lowest_soc_pct, self.soc_pct)
        if self.kw > 0:
            self.kwh_imported += self.kw * hours
        else:
            self.kwh_exported += -self.kw * hours
        extend(self.history, self._last, now, self.kw)
        self._last = now

    def _choose_kw(self, setpoint_kw: float | None, floor_pct: float,
                   target_pct: float | None) -> tuple[float, float | None]:
        """The power to run at and the state of charge where it must stop."""
        if not self.plugged_in:
            return 0.0, None
        if setpoint_kw is not None and setpoint_kw < 0:
            # A real battery management system stops at its reserve, whatever it is told.
            if self.soc_pct <= floor_pct:
                return 0.0, None
            return -min(-setpoint_kw, self.max_discharge_kw), floor_pct
        target = self.charge_target_pct if target_pct is None else target_pct
        if target is None or self.soc_pct >= target:
            return 0.0, None
        cap_kw = self.max_charge_kw if setpoint_kw is None else min(setpoint_kw, self.max_charge_kw)
        return max(cap_kw, 0.0), target
