"""The sim adapter's device peer: the simulated device itself, advanced to now."""
from __future__ import annotations

from adapters.sim import SimulatedDevice
from flexadr.clock import Clock


class SimPeer:
    def __init__(self, device: SimulatedDevice, clock: Clock):
        self.device = device
        self.clock = clock

    def power_kw(self) -> float:
        self.device.advance(self.clock.now())
        return self.device.power_kw()

    def soc_pct(self) -> float:
        self.device.advance(self.clock.now())
        return self.device.soc_pct
