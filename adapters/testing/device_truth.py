"""What a device simulator really did, in the `sim` device's terms.

A report that checks an adapter's telemetry against the truth (the replay's
"reported kW match device truth") reads the same things from every device:
`spec`, `history` segments, `power_kw()`, `mean_kw(start, end)`, `soc_pct`,
`plugged_in` and `set_plugged_in(...)` (a simulator also `lowest_soc_pct`). For a
`sim` device those come from `adapters.sim.SimulatedDevice`; for the OCPP chargers and the SunSpec inverter
they come from here, out of the simulator's own physics (`BatteryPhysics`),
never from what the adapter read over its protocol.

A simulator on its own thread (`SimThread`) is read and moved through
`on_device`, which runs a function on the simulator's loop, so the physics is
never touched by two threads at once.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable, Protocol

from adapters.sim import DeviceSpec, Segment, mean_kw
from adapters.testing.ev_physics import BatteryPhysics
from flexadr.clock import Clock


class Simulator(Protocol):
    battery: BatteryPhysics
    clock: Clock

    def advance(self, now: datetime) -> None: ...
    def set_plugged_in(self, plugged_in: bool) -> None: ...


def _here(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


@dataclass
class DeviceTruth:
    spec: DeviceSpec
    simulator: Simulator
    on_device: Callable[..., Any] = _here

    @property
    def history(self) -> list[Segment]:
        return self.on_device(lambda: list(self.simulator.battery.history))

    @property
    def plugged_in(self) -> bool:
        return self.simulator.battery.plugged_in

    @property
    def soc_pct(self) -> float:
        return self.simulator.battery.soc_pct

    @soc_pct.setter
    def soc_pct(self, pct: float) -> None:
        """The car comes back from a trip with less charge (the physics has no driving)."""
        self.on_device(self._arrive_with, pct)

    def _arrive_with(self, pct: float) -> None:
        self.simulator.battery.soc_pct = pct
        self.simulator.advance(self.simulator.clock.now())

    @property
    def lowest_soc_pct(self) -> float:
        """The lowest state of charge the physics passed through (a floor's check)."""
        return self.on_device(lambda: self.simulator.battery.lowest_soc_pct)

    def power_kw(self) -> float:
        return self.on_device(self._power_now)

    def _power_now(self) -> float:
        self.simulator.advance(self.simulator.clock.now())
        return self.simulator.battery.kw

    def mean_kw(self, start: datetime, end: datetime) -> float:
        """Time-weighted mean power over [start, end), as far as the physics has run."""
        return mean_kw(self.history, start, end)

    def set_plugged_in(self, plugged_in: bool, at: datetime) -> None:
        # The simulator takes its own clock's now: the replay calls this at `at`.
        self.on_device(self.simulator.set_plugged_in, plugged_in)
