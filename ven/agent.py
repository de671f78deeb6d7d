"""One VEN agent: a protocol link to its VTN, one device adapter, the dispatch
policy, and a local store that keeps accepted events and unsent telemetry.

The core here is protocol-neutral. Its link (`Link`) is the 2.0b edge
(ven/openadr20b/, openleadr) or the 3.1 edge (ven/openadr31/, REST), chosen by
`protocol`; each hands events in as ven.events.Event and sends the same outbox.

- Events come in through the link and are kept whole (every
  signal's interval schedule, priority, targets, tolerance); events for other
  VENs or resources are ignored. The policy turns each interval into device
  commands on that interval's window, overlapping events resolve by priority,
  and the agent re-plans at every interval boundary. Accepted events are
  stored, so a restarted agent resumes the interval in force even if the VTN
  is unreachable.
- A sampling loop reads the adapter every `sample_period`, closes reporting
  intervals into the outbox, and re-plans when the device is (un)plugged.
- The link's uplink sends the outbox (2.0b: TELEMETRY_USAGE, TELEMETRY_STATUS; 3.1:
  USAGE, DEMAND, STORAGE_CHARGE_LEVEL reports) and deletes only what the VTN
  acknowledged.
All periods are program time; `time_scale` > 1 compresses them (demos, tests).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from adapters import registry
from adapters.base import Adapter, AdapterError, Charge, Command, CommandRefused, Reading
from flexadr.clock import Clock, floor_to
from ven import events
from ven.events import CANCELLED, RESOURCE_ID, Event, Identity
from ven.policy import (Conditions, Decision, DeviceProfile, Opt, OwnerPrefs, decide, in_force,
                        storm_preparation)
from ven.storm_watch import StormWatchConfig
from ven.store import AcceptedEvent, LocalDatabase, LocalStore, OutboxInterval, \
    commands_from_json, commands_to_json
from ven.telemetry import IntervalRecorder, next_sample_tick

if TYPE_CHECKING:
    from ven.openadr20b.push_server import PushListen
    from ven.openadr20b.xmpp_link import XmppExchange
    from ven.openadr31.settings import Oadr31Settings

log = logging.getLogger(__name__)

READ_TIMEOUT = timedelta(seconds=10)
SHORTEST_INTERVAL = timedelta(seconds=1)
SAMPLE_LEAD = 0.01                              # of the sample period
MAX_DEVICE_BACKOFF = timedelta(minutes=15)     # program time


@dataclass(frozen=True, kw_only=True)
class AgentConfig:
    ven_name: str
    vtn_url: str                        # 2.0b: the EiEvent base URL ("" over XMPP); 3.1: the API's
    cert: Path | None = None            # 2.0b: mutual TLS; 3.1: only if the VTN asks for it
    key: Path | None = None
    ca_file: Path | None = None         # the CA that signed the VTN's certificate
    vtn_fingerprint: str | None = None
    protocol: str = "2.0b"
    oadr31: "Oadr31Settings | None" = None     # 3.1: credentials, webhook, re-read period
    adapter: str
    adapter_config: dict[str, Any]
    capacity_kwh: float
    max_discharge_kw: float = 0.0
    max_charge_kw: float = 0.0
    efficiency: float = 0.95
    cycle_cap_per_year: float | None = None
    prefs: OwnerPrefs = field(default_factory=OwnerPrefs)
    time_scale: float = 1.0
    sample_period: timedelta = timedelta(seconds=60)
    telemetry_interval: timedelta = timedelta(minutes=15)
    state_url: str = "sqlite:///ven-state.sqlite"
    storm_watch: StormWatchConfig | None = None    # NWS alerts read next to the device
    group_ids: tuple[str, ...] = ()                 # eiTarget groups this VEN belongs to
    party_ids: tuple[str, ...] = ()
    push: "PushListen | None" = None     # 2.0b push exchange model; None: pull (oadrPoll)
    xmpp: "XmppExchange | None" = None   # 2.0b over XMPP (instead of push or pull)


def _wall(period: timedelta, time_scale: float) -> timedelta:
    return timedelta(seconds=period.total_seconds() / time_scale)


class Core(Protocol):
    """What a link calls on its agent."""
    clock: Clock

    async def on_event(self, event: Event) -> Opt: ...
    def report_every(self, interval: timedelta) -> None: ...


class Link(Protocol):
    """A protocol edge: registration, events in, opts and the outbox out."""
    @property
    def ven_id(self) -> str | None: ...
    @property
    def registered(self) -> bool: ...
    async def start(self) -> None: ...       # returns at once; keeps trying in the background
    async def stop(self) -> None: ...
    def outbox_changed(self) -> None: ...
    async def tell_opt(self, event_id: str, modification_number: int, opt: Opt,
                       override: bool) -> None: ...


def link_for(config: AgentConfig, store: LocalStore, core: Core) -> Link:
    # Imported here: an agent loads only its own protocol's edge.
    if config.protocol == "3.1":
        from ven.openadr31.link import Link31
        return Link31(config, store, core)
    from ven.openadr20b.link import Link20b
    return Link20b(config, store, core)


class VenAgent:
    def __init__(self, config: AgentConfig, clock: Clock, adapter: Adapter | None = None,
                 database: LocalDatabase | None = None):
        self.config = config
        self.clock = clock
        self.adapter = adapter or registry.load(config.adapter)(config.adapter_config, clock)
        self.profile = DeviceProfile(capabilities=self.adapter.capabilities,
                                     capacity_kwh=config.capacity_kwh,
                                     max_discharge_kw=config.max_discharge_kw,
                                     max_charge_kw=config.max_charge_kw,
                                     efficiency=config.efficiency,
                                     cycle_cap_per_year=config.cycle_cap_per_year)
        self.store: LocalStore = (database or LocalDatabase(config.state_url)).for_ven(config.ven_name)
        self.decisions: dict[str, Decision] = {}
        self.link = link_for(config, self.store, self)
        self.recorder = self._recorder(config.telemetry_interval)
        self._plugged_in: bool | None = None
        self.device_online = True
        self._device_retry_at: datetime | None = None
        self._device_backoff: timedelta | None = None
        self.conditions = Conditions()
        self._schedule_changed = asyncio.Event()
        self._applied: list[Command] | None = None     # what the device holds; None: unknown
        self._tasks: list[asyncio.Task] = []
        self._background: set[asyncio.Task] = set()    # re-plans after device changes
        self._commanding = asyncio.Lock()

    # --- lifecycle -----------------------------------------------------------
    @property
    def ven_id(self) -> str | None:
        return self.link.ven_id

    @property
    def registered(self) -> bool:
        return self.link.registered

    @property
    def identity(self) -> Identity:
        return Identity(self.ven_id, (RESOURCE_ID,), self.config.group_ids, self.config.party_ids)

    async def start(self) -> None:
        """Start executing and recording at once; register (and keep trying) with the VTN."""
        await self.start_device()
        await self.start_running()

    async def start_device(self) -> None:
        """Open the device's side (an OCPP adapter listens for its charger from here)."""
        try:
            await self.adapter.start()
        except AdapterError as err:
            # Not fatal: the agent records the device offline and keeps trying.
            self._device_failed(err)

    async def start_running(self) -> None:
        """After `start_device`: resume stored events, sample, register with the VTN."""
        await self._restore_events()
        self._tasks = [asyncio.create_task(self._sample_loop(), name=f"{self.config.ven_name}-sample"),
                       asyncio.create_task(self._boundary_loop(),
                                           name=f"{self.config.ven_name}-boundaries")]
        await self.link.start()

    def stop_recording(self) -> None:
        """No more readings; the uplink keeps sending the outbox (a drain before a stop)."""
        self._tasks[0].cancel()

    async def stop(self) -> None:
        tasks = self._tasks + list(self._background)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.link.stop()
        await self.adapter.stop()

    # --- telemetry -----------------------------------------------------------

    def _interval_wall(self, interval: timedelta) -> timedelta:
        # 2.0b durations are whole seconds: in compressed time a shorter interval would go
        # out as PT0S, which the VTN rightly quarantines.
        return max(_wall(interval, self.config.time_scale), SHORTEST_INTERVAL)

    def _recorder(self, interval: timedelta) -> IntervalRecorder:
        interval_wall = self._interval_wall(interval)
        wanted = _wall(self.config.sample_period, self.config.time_scale)
        # Samples must fall exactly on interval boundaries: a whole number of
        # microseconds that divides the interval, as close to the wish as that allows.
        interval_us = interval_wall // timedelta(microseconds=1)
        samples = max(1, round(interval_wall / wanted))
        while interval_us % samples:
            samples -= 1
        return IntervalRecorder(interval_wall, interval_wall / samples, self.config.time_scale)

    def report_every(self, interval: timedelta) -> None:
        """Report at the interval (program time) the VTN asked for."""
        if self._interval_wall(interval) != self.recorder.interval:
            self.recorder = self._recorder(interval)

    @property
    def sample_period(self) -> timedelta:
        return self.recorder.sample_period

    async def _sample_loop(self) -> None:
        tick = None
        while True:
            period = self.sample_period
            if tick is not None and floor_to(tick, period) != tick:
                tick = None      # the VTN asked for another interval: start on its grid
            now = self.clock.now()
            tick = next_sample_tick(tick, now, period)
            # Read a hair before the tick: a command edge on it (a device without schedules
            # of its own switches when its adapter writes, a little after) is then seen
            # after this reading, which is wound forward to the tick at the power before.
            await asyncio.sleep(max(0.0, (tick - period * SAMPLE_LEAD - now).total_seconds()))
            try:
                await self.sample(tick)
            except Exception:    # one bad sample must not stop the agent recording
                log.exception("VEN %s: sampling failed", self.config.ven_name)

    async def sample(self, tick) -> None:
        was_online = self.device_online
        reading = await self._read()
        # For its tick, however late it was read: the recorder places the register at the
        # tick from this reading and the one before, so a busy moment costs no interval.
        closed = self.recorder.observe(tick, reading)
        if closed is not None:
            self.store.add_interval(OutboxInterval(
                interval_start=closed.start, interval_end=closed.end, kw=closed.kw,
                kwh=closed.kwh, soc_pct=closed.soc_pct, plugged_in=closed.plugged_in,
                online=closed.online))
            self.link.outbox_changed()
        if reading is not None and self._device_state_changed(reading, back_online=not was_online):
            # Not awaited: re-planning tells the VTN (signed round trips), and the next
            # sample must not wait for a busy VTN.
            self._spawn(self._replanning(reading))

    def _spawn(self, work) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)         # a reference until done, or the loop may drop it
        task.add_done_callback(self._background.discard)

    async def _read(self) -> Reading | None:
        """The device's state, or None while it does not answer (retried with backoff)."""
        if self._device_retry_at is not None and self.clock.now() < self._device_retry_at:
            return None
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation.
            async with asyncio.timeout(READ_TIMEOUT.total_seconds()):
                reading = await self.adapter.read()
        except (AdapterError, TimeoutError) as err:
            self._device_failed(err)
            return None
        if not self.device_online:
            log.warning("VEN %s: device answers again", self.config.ven_name)
        self.device_online, self._device_retry_at, self._device_backoff = True, None, None
        return reading

    def _device_failed(self, err: Exception) -> None:
        if self.device_online:
            log.warning("VEN %s: device did not answer: %r", self.config.ven_name, err)
        self.device_online = False
        first = _wall(self.config.sample_period, self.config.time_scale)
        ceiling = _wall(MAX_DEVICE_BACKOFF, self.config.time_scale)
        self._device_backoff = min(self._device_backoff * 2, ceiling) if self._device_backoff else first
        self._device_retry_at = self.clock.now() + self._device_backoff

    # --- events --------------------------------------------------------------
    async def on_event(self, event: Event) -> Opt:
        """An event from the link (new or changed): decide, store, command the device."""
        stored = self.store.event(event.event_id)
        if event.status == CANCELLED:
            return await self._cancelled(event, stored)
        if not self.identity.targeted_by(event.targets):
            log.info("VEN %s ignores event %s: it targets neither this VEN nor its resources",
                     self.config.ven_name, event.event_id)
            return Opt.OUT
        if stored is not None and stored.owner_opted_out:
            return Opt.OUT
        offset = events.start_offset(self.config.ven_name, event.event_id, event.start_after)
        executed = event.shifted(offset)
        reading = await self._read()
        if reading is None:
            decision, baseline_kw = Decision(Opt.OUT, "device not answering"), 0.0
        else:
            # delta / multiplier / offsets are relative to the load before the event's first copy.
            baseline_kw = stored.baseline_kw if stored is not None else reading.kw
            decision = self._policy(executed, reading, baseline_kw)
        self._save(event, offset, baseline_kw, decision)
        await self._reapply_all()
        return decision.opt

    async def _cancelled(self, event: Event, stored: AcceptedEvent | None) -> Opt:
        if stored is None:
            # A cancellation of an event this VEN never had (or already forgot): nothing to stop.
            log.info("VEN %s: event %s cancelled; it had no such event", self.config.ven_name,
                     event.event_id)
            return Opt.IN
        stored.opt, stored.reason, stored.commands_json = Opt.OUT.value, "cancelled", "[]"
        stored.cancelled = True
        self.store.save_event(stored)
        self.decisions[event.event_id] = Decision(Opt.OUT, "cancelled")
        await self._reapply_all()
        return Opt.IN

    def _policy(self, event: Event, reading: Reading, baseline_kw: float) -> Decision:
        baseline = self.store.exported_at_year_start(reading.at.year, reading.kwh_exported)
        conditions = Conditions(
            islanded=self.conditions.islanded,
            storm_warning_until=self.conditions.storm_warning_until,
            cycles_used=(reading.kwh_exported - baseline) / self.config.capacity_kwh)
        return decide(event, reading, self.profile, self.config.prefs, self.clock.now(),
                      self.config.time_scale, conditions, baseline_kw)

    def _save(self, event: Event, offset: timedelta, baseline_kw: float, decision: Decision,
              owner_opted_out: bool = False) -> None:
        executed = event.shifted(offset)
        self.decisions[event.event_id] = decision
        self.store.save_event(AcceptedEvent(
            event_id=event.event_id, modification_number=event.modification_number,
            start=executed.start, end=executed.end, event_json=events.to_json(event),
            start_offset_s=offset.total_seconds(), baseline_kw=baseline_kw,
            opt=decision.opt.value, reason=decision.reason, owner_opted_out=owner_opted_out,
            commands_json=commands_to_json(decision.commands)))
        self._schedule_changed.set()
        log.info("VEN %s event %s: %s (%s)", self.config.ven_name, event.event_id, decision.opt,
                 decision.reason)

    async def _reapply_all(self) -> None:
        """The device gets exactly the commands of the current decisions, the event
        that takes precedence governing where events overlap.

        An opted-out event carries no command, except the storm preparation charge,
        which a storm warning also brings without any event.
        """
        # One re-apply at a time (the boundaries, a device change and an event may all
        # ask at once): interleaved clears and applies would leave the device holding
        # neither set of commands, while `_applied` says it holds one.
        async with self._commanding:
            await self._apply_decisions()

    async def _apply_decisions(self) -> None:
        now = self.clock.now()
        commands = in_force([(_executed(stored), _decision(stored))
                             for stored in self.store.events_not_ended(now)])
        prepare = storm_preparation(self.conditions, self.profile, now)
        if prepare is not None and not any(isinstance(c, Charge) for c in commands):
            commands.append(prepare)
        commands = [c for c in commands if c.end > now]
        held = _from(now, self._applied) if self._applied is not None else None
        wanted = _from(now, commands)
        if held == wanted:
            return      # unchanged: clearing and re-applying would leave the device uncommanded a moment
        # Only new commands (a new event): add them. Clearing first would leave the device
        # uncommanded for the round trips of the clear and of every re-apply.
        adding = held is not None and all(c in wanted for c in held)
        try:
            self._applied = None
            if not adding:
                await self.adapter.clear()
            applied = []
            for command, ahead in zip(commands, wanted):
                if adding and ahead in held:
                    applied.append(command)
                elif await self._hand(command):
                    applied.append(command)
            # A refused command is not held: the next re-apply offers it again (the
            # device's answer may change, say once a car is plugged in).
            self._applied = applied
        except AdapterError as err:
            log.error("VEN %s: device took no commands: %r", self.config.ven_name, err)
            self._device_failed(err)      # re-planned and re-applied once it answers

    async def _hand(self, command: Command) -> bool:
        """Whether the device took `command`. A device that says no has answered:
        it is not silent, and its readings go on."""
        try:
            await self.adapter.apply(command)
        except CommandRefused as err:
            log.warning("VEN %s: device refused %s: %s", self.config.ven_name, command, err)
            return False
        return True

    async def _restore_events(self) -> None:
        for stored in self.store.events_not_ended(self.clock.now()):
            self.decisions[stored.event_id] = _decision(stored)
        if self.decisions:
            log.info("VEN %s resumes %d event(s) from its local store", self.config.ven_name,
                     len(self.decisions))
            await self._reapply_all()

    async def _boundary_loop(self) -> None:
        """Re-plan at every interval boundary: each interval starts from the device's state then."""
        while True:
            self._schedule_changed.clear()
            now = self.clock.now()
            upcoming = [t for stored in self.store.events_not_ended(now)
                        for t in _executed(stored).boundaries() if t > now]
            wait_s = (min(upcoming) - now).total_seconds() if upcoming else None
            try:
                async with asyncio.timeout(wait_s):
                    await self._schedule_changed.wait()
                continue                                  # the schedule changed: look again
            except TimeoutError:
                pass
            try:
                reading = await self._read()
                if reading is not None:
                    await self._replan(reading)
            except Exception:    # one failed re-plan must not stop the next boundaries
                log.exception("VEN %s: re-planning at an interval boundary failed",
                              self.config.ven_name)

    def _device_state_changed(self, reading: Reading, back_online: bool = False) -> bool:
        """Whether to re-plan the events still ahead: the car was (un)plugged or the
        device is back."""
        changed = self._plugged_in is not None and reading.plugged_in != self._plugged_in
        self._plugged_in = reading.plugged_in
        return changed or back_online

    async def _replanning(self, reading: Reading) -> None:
        try:
            await self._replan(reading)
        except Exception:    # a background task has nobody to raise to
            log.exception("VEN %s: re-planning after a device change failed", self.config.ven_name)

    async def set_conditions(self, islanded: bool = False,
                             storm_warning_until: datetime | None = None) -> None:
        """A grid outage or a storm warning began or ended: re-plan every event ahead."""
        self.conditions = Conditions(islanded=islanded, storm_warning_until=storm_warning_until)
        reading = await self._read()
        if reading is not None:
            await self._replan(reading)

    async def _replan(self, reading: Reading) -> None:
        changed: list[tuple[AcceptedEvent, Opt]] = []
        for stored in self.store.events_not_ended(self.clock.now()):
            if stored.owner_opted_out or stored.cancelled:
                continue
            event = events.from_json(stored.event_json)
            offset = timedelta(seconds=stored.start_offset_s)
            decision = self._policy(event.shifted(offset), reading, stored.baseline_kw)
            self._save(event, offset, stored.baseline_kw, decision)
            if decision.opt.value != stored.opt:
                changed.append((stored, decision.opt))
        # The device first: telling the VTN takes two signed round trips, and a car
        # plugged in mid-event would charge through them.
        await self._reapply_all()
        for stored, opt in changed:
            await self.link.tell_opt(stored.event_id, stored.modification_number, opt,
                                     override=False)

    async def opt_out(self, event_id: str, reason: str = "owner opted out") -> None:
        """The owner's opt-out: the device stops now and the VTN is told."""
        stored = self.store.event(event_id)
        if stored is None:
            raise KeyError(f"VEN {self.config.ven_name} has no event {event_id}")
        self._save(events.from_json(stored.event_json), timedelta(seconds=stored.start_offset_s),
                   stored.baseline_kw, Decision(Opt.OUT, reason), owner_opted_out=True)
        await self._reapply_all()
        await self.link.tell_opt(event_id, stored.modification_number, Opt.OUT, override=True)


def _from(now: datetime, commands: list[Command]) -> list[Command]:
    """What commands still ask of the device from `now` on: a re-decided command that
    only starts later than the one in force (the policy plans from now) is the same.
    Commands end after `now` (callers drop the others)."""
    return [replace(c, start=max(c.start, now)) for c in commands if c.end > now]


def _executed(stored: AcceptedEvent) -> Event:
    """A stored event as this VEN executes it: randomized start applied."""
    return events.from_json(stored.event_json).shifted(timedelta(seconds=stored.start_offset_s))


def _decision(stored: AcceptedEvent) -> Decision:
    return Decision(Opt(stored.opt), stored.reason, tuple(commands_from_json(stored.commands_json)))
