"""The plugin interface between a VEN agent and a device.

Nothing here knows about OpenADR: a VEN turns events into these commands, an
adapter turns them into its device's protocol. Power sign convention: `kw` is
power INTO the device (charging > 0, discharging < 0), like a meter on the
device's own circuit. Energy registers only ever grow, like a real meter.
"""
from __future__ import annotations

import abc
import asyncio
import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any, AsyncIterator, Mapping

from flexadr.clock import Clock


class Capability(enum.StrEnum):
    CHARGE_DELAY = "charge_delay"
    DISCHARGE = "discharge"
    TELEMETRY = "telemetry"


@dataclass(frozen=True)
class ChargeDelay:
    """Charge at most `max_kw` inside [start, end) (0: not at all); resume normal
    charging afterwards. A capacity cap (LOAD_CONTROL) is a delay with max_kw > 0."""
    start: datetime
    end: datetime
    max_kw: float = 0.0


@dataclass(frozen=True)
class Discharge:
    """Discharge at up to `max_kw` inside [start, end), never below `min_soc_pct`."""
    start: datetime
    end: datetime
    max_kw: float
    min_soc_pct: float


@dataclass(frozen=True)
class Charge:
    """Charge at full power inside [start, end) up to `target_soc_pct` (storm preparation)."""
    start: datetime
    end: datetime
    target_soc_pct: float = 100.0


Command = ChargeDelay | Discharge | Charge


@dataclass(frozen=True)
class Reading:
    at: datetime
    kw: float
    kwh_imported: float
    kwh_exported: float
    soc_pct: float
    plugged_in: bool
    online: bool = True


class AdapterError(Exception):
    """A device that timed out, refused a command or went away."""


class DeviceTimeout(AdapterError):
    """The device did not answer within the adapter's bound; it may still be there."""


class CommandRefused(AdapterError):
    """The device answered and said no (rejected, unsupported, out of range)."""


class DeviceDisconnected(AdapterError):
    """The device is not connected (never came, or the link dropped)."""


class Adapter(abc.ABC):
    """One device. Constructed with its config mapping and the agent's clock."""

    capabilities: frozenset[Capability] = frozenset()

    def __init__(self, config: Mapping[str, Any], clock: Clock):
        self.config = dict(config)
        self.clock = clock

    async def start(self) -> None:
        """Connect to the device. Default: nothing to connect."""

    async def stop(self) -> None:
        """Disconnect. Default: nothing to release."""

    @abc.abstractmethod
    async def apply(self, command: Command) -> None:
        """Hand a command to the device; it executes on the command's own window."""

    @abc.abstractmethod
    async def clear(self) -> None:
        """Drop every command; the device returns to its owner's normal behaviour."""

    @abc.abstractmethod
    async def read(self) -> Reading:
        """The device's state now."""

    async def readings(self, interval_s: float) -> AsyncIterator[Reading]:
        """A reading every `interval_s` seconds until the consumer stops iterating.

        Default: poll read(). Push-telemetry adapters may override to yield as
        the device reports. Errors propagate so the caller can mark the device
        offline and retry; the stream ends with them.
        """
        while True:
            yield await self.read()
            await asyncio.sleep(interval_s)
