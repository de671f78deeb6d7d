"""A real window of history, all four programs, replayed end to end in minutes.

The planner decides each day at its notice deadline from the ISO-NE forecast,
the storm alerts and the declared emergencies known then; the VTN publishes
each program's events with its notice (standing Clean Peak windows every day,
a flex alert when an emergency is declared), mails notices to a local SMTP
sink, and a mixed fleet of VEN agents on simulated devices takes part over
signed OpenADR 2.0b with mutual TLS (some of them through the real OCPP, SunSpec and
telematics adapters to their device simulators, flexadr/replay_devices.py). Time is compressed (`day_s` wall seconds
per day, see `replay_scenario.Timeline`); at the end each program is settled
over the window, once from the VTN's telemetry and once from device truth.
"""
from __future__ import annotations

import asyncio
import email
import email.policy
import shutil
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Callable

from adapters.base import AdapterError, Reading
from adapters.sim import SimAdapter
from certs.pki import ensure_dev_pki
from flexadr import data as shipped, replay_scenario as scenario
from flexadr.clock import Clock, SystemClock
from flexadr.demo import _free_port
from flexadr.replay_devices import Simulators
from flexadr.replay_plan import ReplayPlanner, load_programs, planner_sources
from flexadr.replay_scenario import NEW_YORK, TELEMETRY, Member, Timeline
from schedules.model import Dispatch, Program
from schedules.planner import EventKind, PlannedEvent
from ven.agent import AgentConfig, VenAgent
from ven.fleet import Fleet
from ven.policy import OwnerPrefs
from ven.storm_watch import StormWatchConfig
from vtn.lifecycle import publish
from vtn.notify import EmailNotifier
from vtn.planning import publish_due, withdraw_for_exclusions
from vtn.service import Vtn, VtnConfig
from vtn.store import CANCELLED, Event, Participant, Store, Ven

SETPOINT_KW = 50.0       # per device; the agent caps it at the inverter and the energy above the floor
FLEX_ALERT = "flex_alert"
LOAD_FILE = "isone_hourly_load_2015-07_2019-12.csv"
PEAK_WEEK = date(2018, 8, 27)


@dataclass
class ReplayOptions:
    first_day: date = PEAK_WEEK
    days: int = 7
    vens: int = 100
    seed: int = 0
    # Wall seconds per replayed day, a multiple of 96 (96 puts a 15-minute interval on one
    # wall second: OpenADR durations travel in whole seconds, none shorter survives the
    # wire). Every VEN sends a signed report per interval: 288 keeps 100 of them, their
    # polls and the VTN within two cores.
    day_s: float = 288.0
    poll_s: float = 4.0
    workdir: Path = Path("var/replay")
    load_csv: Path | None = None
    database_url: str | None = None
    # Some members on the real OCPP, SunSpec and telematics adapters and their device
    # simulators (replay_scenario.ADAPTERS); False: every member on `sim`.
    real_adapters: bool = True

    @property
    def last_day(self) -> date:
        return self.first_day + timedelta(days=self.days - 1)


@dataclass
class ReplayResult:
    options: ReplayOptions
    timeline: Timeline
    store: Store
    members: list[Member]
    agents: dict[str, VenAgent]
    devices: dict                         # VEN name -> device truth (sim device or DeviceTruth)
    programs: dict[str, Program]
    kinds: dict[str, str]                 # event_id -> dispatch | test | standing | flex_alert
    planned: dict[str, PlannedEvent]      # event_id -> the planner's event (history time)
    storm: scenario.Alert
    emergency: scenario.Emergency
    silent: str                           # VEN name of the device that went silent
    silent_from: datetime                 # wall time
    owner_opt_outs: list[tuple[str, str]] = field(default_factory=list)   # (ven, event_id)
    mails: list = field(default_factory=list)
    decisions: list = field(default_factory=list)
    progress: list[str] = field(default_factory=list)


class FallsSilent(SimAdapter):
    """The sim device, whose link goes dead at `silent_from`: it keeps its state and
    its commands, but the agent's reads fail from then on (a dead modem)."""

    def __init__(self, config, clock: Clock, silent_from: datetime):
        super().__init__(config, clock)
        self.silent_from = silent_from

    async def read(self) -> Reading:
        if self.clock.now() >= self.silent_from:
            raise AdapterError("device does not answer")
        return await super().read()


class Inbox:
    """The SMTP sink's handler (aiosmtpd): keeps every message."""

    def __init__(self) -> None:
        self.messages: list = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


def history_span(options: ReplayOptions) -> tuple[datetime, datetime]:
    """From before the first notice deadline (13:00 the day before) to after the last
    event (21:00 on the last day)."""
    start = datetime.combine(options.first_day - timedelta(days=1), time(12, 0), NEW_YORK)
    end = datetime.combine(options.last_day, time(22, 0), NEW_YORK)
    return start.astimezone(scenario.UTC), end.astimezone(scenario.UTC)


# No program rows in the store: the VTN would take their telemetry interval (program time)
# as wall time; without one it asks for its configured, compressed interval.
def _enrol(store: Store, members: list[Member], pki) -> None:
    for m in members:
        store.add_participant(Participant(participant_id=m.name, name=m.name, household_id=m.name,
                                          email=f"{m.name}@example.org", channel="email"))
        store.enrol(Ven(ven_id=m.name, ven_name=m.name, fingerprint=pki.vens[m.name].fingerprint,
                        program_id=m.program_id, device_kind=m.device["kind"],
                        participant_id=m.name))


def _agent_config(m: Member, pki, port: int, scale: float, state: Path, alerts: Path,
                  adapter_config: dict) -> AgentConfig:
    watch = (StormWatchConfig(m.program_id, str(alerts), every=TELEMETRY / scale / 2)
             if m.program_id == "byod_vpp" else None)
    return AgentConfig(
        ven_name=m.name, vtn_url=f"https://127.0.0.1:{port}/OpenADR2/Simple/2.0b",
        cert=pki.vens[m.name].cert, key=pki.vens[m.name].key, ca_file=pki.ca.cert,
        vtn_fingerprint=pki.vtn.fingerprint, adapter=m.adapter, adapter_config=adapter_config,
        capacity_kwh=m.device["capacity_kwh"],
        max_discharge_kw=m.device.get("max_discharge_kw", 0.0),
        max_charge_kw=m.device["max_charge_kw"], cycle_cap_per_year=m.cycle_cap_per_year,
        prefs=OwnerPrefs(min_soc_pct=m.min_soc_pct, ready_by=m.ready_by,
                         ready_soc_pct=m.ready_soc_pct),
        # One sample per interval: the most slack a busy event loop gets before it loses one.
        time_scale=scale, sample_period=TELEMETRY, telemetry_interval=TELEMETRY,
        state_url=f"sqlite:///{state / 'vens.sqlite'}", storm_watch=watch)


def _wall_exclusions(planner: ReplayPlanner, timeline: Timeline) -> dict:
    return {pid: tuple(replace(e, start_utc=timeline.to_wall(e.start_utc),
                               end_utc=timeline.to_wall(e.end_utc),
                               known_utc=timeline.to_wall(e.known_utc)) for e in periods)
            for pid, periods in planner.exclusions.items()}


class Replay:
    """The run: set up, drive the planner and the scenario on every tick, tear down."""

    def __init__(self, options: ReplayOptions, clock: Clock,
                 show: Callable[[str], None] | None = None):
        self.options, self.clock, self.show = options, clock, show or (lambda line: None)
        self.scale = 86400.0 / options.day_s
        self.programs = load_programs()
        self.kinds: dict[str, str] = {}
        self.planned: dict[str, PlannedEvent] = {}
        self._opting: list[asyncio.Task] = []

    def _files(self, data: Path) -> tuple[Path, Path, Path]:
        opts = self.options
        # The storm the evening before the peak: after that day's notice deadlines.
        self.storm = scenario.storm(_peak_day(opts) - timedelta(days=1))
        self.emergency = scenario.emergency(_peak_day(opts))
        alerts, emergencies = data / "alerts.xml", data / "emergencies.csv"
        alerts.write_text(scenario.cap_feed([self.storm]))
        emergencies.write_text(scenario.emergencies_csv([self.emergency]))
        wall_alerts = data / "alerts-wall.xml"
        wall_alerts.write_text(scenario.cap_feed([]))      # rewritten once the timeline is set
        return alerts, emergencies, wall_alerts

    async def run(self) -> ReplayResult:
        from aiosmtpd.controller import Controller

        opts = self.options
        workdir = opts.workdir
        shutil.rmtree(workdir / "state", ignore_errors=True)
        state, inputs = workdir / "state", workdir / "data"
        state.mkdir(parents=True, exist_ok=True)
        inputs.mkdir(parents=True, exist_ok=True)
        alerts, emergencies, wall_alerts = self._files(inputs)
        load_csv = opts.load_csv or shipped.path(LOAD_FILE)
        self.show(f"planning the season up to {opts.first_day} from {load_csv.name} ...")
        planner = ReplayPlanner(self.programs, planner_sources(load_csv, alerts, emergencies),
                                opts.first_day, opts.last_day)
        members = scenario.fleet(opts.vens, opts.seed, opts.real_adapters)
        pki = ensure_dev_pki(workdir / "pki", [m.name for m in members])
        store = Store(opts.database_url or f"sqlite:///{state / 'vtn.sqlite'}")
        _enrol(store, members, pki)
        inbox = Inbox()
        smtp = Controller(inbox, hostname="127.0.0.1", port=_free_port())
        smtp.start()
        port = _free_port()
        vtn = Vtn(VtnConfig(vtn_id="FLEXADR_REPLAY_VTN", host="127.0.0.1", port=port,
                            cert=pki.vtn.cert, key=pki.vtn.key, ca_file=pki.ca.cert,
                            poll_interval=timedelta(seconds=opts.poll_s),
                            telemetry_interval=TELEMETRY / self.scale),
                  store, self.clock,
                  notifier=EmailNotifier("127.0.0.1", smtp.port, "vtn@utility.example"))
        simulators = Simulators(members, self.clock, self.scale)
        await simulators.start_servers()
        fleet = Fleet([_agent_config(m, pki, port, self.scale, state, wall_alerts,
                                     simulators.adapter_config(m))
                       for m in members], self.clock)
        agents = {a.config.ven_name: a for a in fleet.agents}
        silent = scenario.silent_member(members).name
        await vtn.start()
        try:
            # The chargers dial in before the agents register: a fleet registering keeps
            # this loop busy past a websocket handshake's bound.
            await fleet.start(devices_up=lambda: simulators.connect_chargers(agents))
            h_start, h_end = history_span(opts)
            timeline = Timeline.starting(h_start, self.clock.now(), opts.day_s,
                                         lead=timedelta(seconds=2))
            silent_from = timeline.to_wall(datetime.combine(_peak_day(opts), time(10, 0),
                                                            NEW_YORK))
            agent = agents[silent]
            agent.adapter = FallsSilent(agent.adapter.config, self.clock, silent_from)
            wall_alerts.write_text(scenario.cap_feed([self.storm], timeline.to_wall))
            devices = simulators.devices(agents)
            for device in devices.values():
                device.set_plugged_in(True, timeline.wall_start)
            result = ReplayResult(opts, timeline, store, members, agents, devices, self.programs,
                                  self.kinds, self.planned, self.storm, self.emergency,
                                  silent, silent_from)
            await self._drive(timeline, planner, store, result, h_end)
            # Let the last reporting intervals reach the VTN.
            await asyncio.sleep(3 * TELEMETRY.total_seconds() / self.scale + 1)
        finally:
            await fleet.stop()
            await simulators.stop()
            await vtn.stop()
            smtp.stop()
        result.mails = inbox.messages
        result.decisions = planner.decisions
        return result

    def _publish(self, store: Store, timeline: Timeline, planned: PlannedEvent,
                 kind: str, pending: bool = True) -> Event | None:
        program = self.programs[planned.program_id]
        start, end = timeline.to_wall(planned.start_utc), timeline.to_wall(planned.end_utc)
        if end <= self.clock.now():
            return None
        targets = [ven.ven_id for ven in store.vens(program.id)]
        event = publish(store, program, start, end, targets, self.clock,
                        setpoint_kw=SETPOINT_KW if program.dispatch is Dispatch.DISCHARGE else None,
                        test_event=planned.test_event, planned=pending,
                        follow_up=program.followup / self.scale if program.followup else None)
        self.kinds[event.event_id] = kind
        self.planned[event.event_id] = planned
        return event

    async def _drive(self, timeline: Timeline, planner: ReplayPlanner, store: Store,
                     result: ReplayResult, h_end: datetime) -> None:
        tick = TELEMETRY / self.scale
        for planned in planner.standing():
            self._publish(store, timeline, planned, EventKind.STANDING.value)
        exclusions = _wall_exclusions(planner, timeline)
        opting = scenario.opt_out_plan(result.members, self.options.seed)
        trips = scenario.commutes(result.members, self.options.first_day, self.options.last_day,
                                  self.options.seed)
        flex_sent = False
        next_line = timeline.history_start
        end = timeline.to_wall(h_end)
        while (now := self.clock.now()) < end:
            history = timeline.to_history(now)
            for planned in planner.due(history):
                self._publish(store, timeline, planned, planned.kind.value)
            for event in withdraw_for_exclusions(store, exclusions, self.clock):
                if event.status == CANCELLED and event.event_id in self.planned:
                    planner.cancelled(self.planned[event.event_id])
            publish_due(store, self.programs, self.clock)
            if not flex_sent and history >= self.emergency.declared:
                flex_sent = True
                self._flex_alert(store, timeline)
            await self._owner_opt_outs(result, opting, now)
            trips = _drive_cars(trips, result.devices, history, now)
            if history >= next_line:
                line = self._progress_line(history, store, result)
                result.progress.append(line)
                self.show(line)
                next_line += timedelta(hours=3)
            await asyncio.sleep(max(0.0, (now + tick - self.clock.now()).total_seconds()))
        await asyncio.gather(*self._opting)

    def _flex_alert(self, store: Store, timeline: Timeline) -> None:
        e = self.emergency
        alert = PlannedEvent(program_id="byod_vpp", day=e.start.astimezone(NEW_YORK).date(),
                             start_utc=e.start, end_utc=e.end, kind=EventKind.DISPATCH,
                             decided_utc=e.declared, notice_utc=e.declared,
                             reason=f"declared emergency {e.type}: {e.description}")
        self._publish(store, timeline, alert, FLEX_ALERT, pending=False)

    async def _owner_opt_outs(self, result: ReplayResult, opting: set[str], now: datetime) -> None:
        """Each opting owner leaves the first dispatch event of theirs that is under way
        (half an hour in: the owner changed their mind)."""
        done = {ven for ven, _ in result.owner_opt_outs}
        for name in sorted(opting - done):
            agent = result.agents[name]
            for event_id, kind in self.kinds.items():
                stored = agent.store.event(event_id)
                if kind != EventKind.DISPATCH.value or stored is None or stored.opt != "optIn":
                    continue
                if stored.start + TELEMETRY * 2 / self.scale <= now < stored.end:
                    # Not awaited here: telling a busy VTN takes seconds of wall time,
                    # hours of the replay, and the clock must not wait for it.
                    self._opting.append(asyncio.create_task(agent.opt_out(event_id)))
                    result.owner_opt_outs.append((name, event_id))
                    break

    def _progress_line(self, history: datetime, store: Store, result: ReplayResult) -> str:
        local = history.astimezone(NEW_YORK)
        counts = {pid: 0 for pid in self.programs}
        for event_id, planned in self.planned.items():
            event = store.event(event_id)
            if event.status != CANCELLED and self.kinds[event_id] != EventKind.STANDING.value:
                counts[planned.program_id] += 1
        kw = sum(device.power_kw() for device in result.devices.values())
        events = " ".join(f"{pid.split('_')[0]} {n}" for pid, n in counts.items())
        return f"{local:%a %Y-%m-%d %H:%M} | events: {events} | fleet kW {kw:+9.1f} (into devices)"


def _drive_cars(trips: list[scenario.Trip], devices: dict, history: datetime,
                wall_now: datetime) -> list[scenario.Trip]:
    """Unplug the cars whose trip has begun, plug in (with less charge) those back home;
    the trips still to finish."""
    left = []
    for trip in trips:
        device = devices[trip.ven]
        if history >= trip.returns:
            device.set_plugged_in(True, wall_now)
            device.soc_pct = max(device.soc_pct - trip.soc_used_pct, 5.0)
            continue
        if history >= trip.leaves and device.plugged_in:
            device.set_plugged_in(False, wall_now)
        left.append(trip)
    return left


def _peak_day(options: ReplayOptions) -> date:
    """The window's annual-peak day when it holds 2018-08-29, else its middle day."""
    peak = date(2018, 8, 29)
    if options.first_day <= peak <= options.last_day:
        return peak
    return options.first_day + timedelta(days=options.days // 2)


async def run_replay(options: ReplayOptions, clock: Clock | None = None,
                     show: Callable[[str], None] | None = None) -> ReplayResult:
    return await Replay(options, clock or SystemClock(), show).run()
