"""Storm watch next to the devices: NWS alerts -> the agents' storm-warning condition.

A program's storm rule with action `no_discharge_charge_full` (BYOD: "while a
severe storm warning is active, utility control is suspended, no discharge is
allowed, and batteries charge to 100 %") must act even when the VTN is
unreachable - storms are when networks fail - so each VEN process reads the
alerts for its own zones: api.weather.gov (`/alerts/active?zone=MAZ014`,
GeoJSON) or a CAP ATOM feed, by URL or file, every few minutes.

The pure part is `schedules.storms` (alerts -> exclusions -> `warning_until`);
this module only fetches and tells the agents. A feed that fails keeps the
last condition (a warning still ends at its stated end).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import aiohttp
from lxml import etree

from flexadr.clock import Clock
from schedules import storms
from schedules.model import Program, StormAction

if TYPE_CHECKING:
    from ven.agent import VenAgent

log = logging.getLogger(__name__)

# api.weather.gov asks every client to identify itself.
USER_AGENT = "flexadr-ven (https://github.com/flexadr/flexadr)"
FETCH_TIMEOUT = aiohttp.ClientTimeout(total=20)


@dataclass(frozen=True)
class StormWatchConfig:
    program: str                              # the program whose storm rules apply
    source: str                               # https:// URL or a file path
    every: timedelta = timedelta(minutes=5)


def watch_rules(program: Program) -> bool:
    return any(rule.action is StormAction.NO_DISCHARGE_CHARGE_FULL for rule in program.storms)


class StormWatch:
    """Keeps the storm-warning condition of `agents` in step with one alert source."""

    def __init__(self, agents: Iterable[VenAgent], program: Program, source: str,
                 clock: Clock, every: timedelta = timedelta(minutes=5)):
        self.agents = list(agents)
        self.program = program
        self.source = source
        self.clock = clock
        self.every = every
        self.until: datetime | None = None

    async def _fetch(self) -> bytes:
        if not self.source.startswith(("http://", "https://")):
            return await asyncio.to_thread(Path(self.source).read_bytes)
        headers = {"User-Agent": USER_AGENT, "Accept": "application/geo+json, application/xml"}
        async with aiohttp.ClientSession(timeout=FETCH_TIMEOUT, headers=headers) as session:
            async with session.get(self.source) as response:
                response.raise_for_status()
                return await response.read()

    async def check(self) -> datetime | None:
        """Read the alerts once and pass a changed storm watch on to the agents."""
        try:
            alerts = storms.parse_alerts(await self._fetch())
        except (OSError, aiohttp.ClientError, asyncio.TimeoutError) as err:
            log.warning("storm watch: %s unreachable (%s); keeping the last state", self.source, err)
            return self.until
        except (etree.XMLSyntaxError, ValueError) as err:
            log.warning("storm watch: %s is not an alert feed (%s); keeping the last state",
                        self.source, err)
            return self.until
        until = storms.warning_until(storms.exclusions(self.program, alerts), self.clock.now())
        if until != self.until:
            log.warning("storm watch (%s): %s", self.program.id,
                        f"in force until {until.isoformat()}" if until else "ended")
            self.until = until
            for agent in self.agents:
                await agent.set_conditions(islanded=agent.conditions.islanded,
                                           storm_warning_until=until)
        return until

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.every.total_seconds())
