"""An EV charger behind a smart relay: charge delay = relay open over the window.

The relay is in-memory here so the example runs anywhere; a real package
would talk to the relay's API in `start`, `_set_relay` and `read`.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

from adapters.base import Adapter, Capability, ChargeDelay, Command, CommandRefused, Reading
from flexadr.clock import Clock


class RelayChargerAdapter(Adapter):
    capabilities = frozenset({Capability.CHARGE_DELAY, Capability.TELEMETRY})

    def __init__(self, config: Mapping[str, Any], clock: Clock):
        super().__init__(config, clock)
        self.charger_kw = float(self.config.get("charger_kw", 7.2))
        self.delays: list[ChargeDelay] = []
        self.kwh_imported = 0.0
        self._last = clock.now()

    # The relay "device": closed unless a delay window covers now.
    def relay_closed(self, at: datetime) -> bool:
        return not any(d.start <= at < d.end for d in self.delays)

    def power_kw(self) -> float:
        return self.charger_kw if self.relay_closed(self.clock.now()) else 0.0

    def soc_pct(self) -> float:
        return 0.0  # a relay knows nothing about the car's battery

    async def apply(self, command: Command) -> None:
        if not isinstance(command, ChargeDelay):
            raise CommandRefused("a relay can only stop charging")
        self._meter()
        self.delays.append(command)

    async def clear(self) -> None:
        self._meter()
        self.delays.clear()

    async def read(self) -> Reading:
        self._meter()
        return Reading(at=self._last, kw=self.power_kw(), kwh_imported=self.kwh_imported,
                       kwh_exported=0.0, soc_pct=0.0, plugged_in=True)

    def _meter(self) -> None:
        # Integrate energy at the power that held since the last look (fine for a demo).
        now = self.clock.now()
        kw = self.charger_kw if self.relay_closed(self._last) else 0.0
        self.kwh_imported += kw * (now - self._last).total_seconds() / 3600
        self._last = now
