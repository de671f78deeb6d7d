"""Many VEN agents in one process."""
from __future__ import annotations

import asyncio
import gc
import logging
from dataclasses import astuple
from typing import Awaitable, Callable, Iterable

from adapters import registry
from adapters.base import Adapter
from flexadr.clock import Clock
from schedules import model
from ven.agent import AgentConfig, VenAgent
from ven.storm_watch import StormWatch
from ven.store import LocalDatabase

log = logging.getLogger(__name__)
DRAIN_RETRY_S = 2.0


class Fleet:
    def __init__(self, configs: Iterable[AgentConfig], clock: Clock, max_concurrent_starts: int = 50,
                 database: LocalDatabase | None = None):
        configs = list(configs)
        # One local database for the whole fleet: one engine, one file.
        database = database or LocalDatabase(configs[0].state_url)
        # Resolve each adapter name once: an entry-point lookup scans every installed
        # distribution (~3 ms), which is half a minute for 10,000 agents.
        classes: dict[str, type[Adapter]] = {}
        self.agents = []
        for config in configs:
            if config.adapter not in classes:
                classes[config.adapter] = registry.load(config.adapter)
            adapter = classes[config.adapter](config.adapter_config, clock)
            self.agents.append(VenAgent(config, clock, adapter=adapter, database=database))
        self._starts = asyncio.Semaphore(max_concurrent_starts)
        self.storm_watches = self._storm_watches(clock)
        self._watch_tasks: list[asyncio.Task] = []

    def _storm_watches(self, clock: Clock) -> list[StormWatch]:
        """One watch per alert source, shared by the agents that name it."""
        groups: dict[tuple, list[VenAgent]] = {}
        for agent in self.agents:
            if agent.config.storm_watch is not None:
                groups.setdefault(astuple(agent.config.storm_watch), []).append(agent)
        return [StormWatch(agents, model.load(program), source, clock, every)
                for (program, source, every), agents in groups.items()]

    async def _gated(self, start: Awaitable[None]) -> None:
        async with self._starts:
            await start

    async def start(self, devices_up: Callable[[], Awaitable[None]] | None = None) -> None:
        """Every agent's device side first, then `devices_up()` (devices that dial in to
        their adapter, an OCPP charger, can connect while the process is idle), then
        the agents run and register, a burst of signed messages."""
        await asyncio.gather(*(self._gated(agent.start_device()) for agent in self.agents))
        if devices_up is not None:
            await devices_up()
        await asyncio.gather(*(self._gated(agent.start_running()) for agent in self.agents))
        registered = sum(agent.registered for agent in self.agents)
        log.info("fleet: %d of %d agents registered", registered, len(self.agents))
        # Thousands of agents hold millions of long-lived objects, and every full collection
        # walked them all (pauses up to 1.3 s at 5,000 agents, delaying the polls due in
        # them). Frozen, they are left out of the collector's scans from here on.
        gc.freeze()
        self._watch_tasks = [asyncio.create_task(watch.run(), name=f"storm-watch-{i}")
                             for i, watch in enumerate(self.storm_watches)]

    async def drain(self, timeout_s: float) -> int:
        """Stop recording and wait (at most timeout_s) until every outbox is sent; returns
        how many intervals are still unsent."""
        for agent in self.agents:
            agent.stop_recording()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            waiting = [agent for agent in self.agents if agent.store.backlog()]
            if not waiting or loop.time() >= deadline:
                return sum(agent.store.backlog() for agent in waiting)
            for agent in waiting:      # cut a long back-off short: the drain is bounded
                agent.link.outbox_changed()
            await asyncio.sleep(DRAIN_RETRY_S)

    async def stop(self) -> None:
        for task in self._watch_tasks:
            task.cancel()
        await asyncio.gather(*self._watch_tasks, return_exceptions=True)
        await asyncio.gather(*(agent.stop() for agent in self.agents), return_exceptions=True)
