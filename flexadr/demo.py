"""The main job: a VTN and a fleet of simulated VENs run one event end to end.

Everything is real except the devices: a development PKI, mutual TLS, signed
OpenADR 2.0b messages, the SQLite store, openleadr clients and server. Time is
compressed: each program's shortest event is played in `event_s` seconds, and
the simulated devices move energy as fast as that compression says.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import shutil
import socket
import sys
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Callable

from adapters.sim import SimAdapter
from certs.pki import ensure_dev_pki
from flexadr import logs
from flexadr.clock import Clock, SystemClock, ceil_to
from schedules import model
from schedules.model import Dispatch, Program
from ven.agent import AgentConfig, VenAgent
from ven.fleet import Fleet
from ven.policy import OwnerPrefs
from vtn.lifecycle import publish
from vtn.settlement.intervals import Series, window_average
from vtn.settlement.model import TelemetryInterval
from vtn.service import Vtn, VtnConfig
from vtn.store import Event, Store, Ven

log = logging.getLogger("flexadr.demo")

# Device kind -> (program, simulated device spec). Realistic sizes: a 75 kWh EV
# on a 7.2 kW charger, a Ford F-150 Lightning on a bidirectional charger, a
# 13.5 kWh home battery with a 5 kW inverter.
KINDS = {
    "ev_managed": ("managed_charging", dict(capacity_kwh=75.0, soc_pct=35.0, max_charge_kw=7.2,
                                            charge_target_pct=90.0)),
    "ev_v2g": ("connected_solutions", dict(capacity_kwh=98.0, soc_pct=60.0, max_charge_kw=11.5,
                                           max_discharge_kw=9.6, charge_target_pct=90.0)),
    "battery": ("connected_solutions", dict(capacity_kwh=13.5, soc_pct=80.0, max_charge_kw=5.0,
                                            max_discharge_kw=5.0, charge_target_pct=None)),
}
DISCHARGE_SETPOINT_KW = 10.0


@dataclass
class DemoOptions:
    vens: int = 21
    lead_s: float = 25.0
    event_s: float = 60.0
    report_s: int = 5
    poll_s: int = 2
    workdir: Path = Path("var/demo")
    unplugged: int = 1          # how many managed-charging cars are unplugged
    database_url: str | None = None   # default: an SQLite file under workdir/state


@dataclass
class Row:
    ven_id: str
    device_kind: str
    program_id: str
    opt: str
    reported_kw: float   # from the VTN's telemetry, in the program's sense
    device_kw: float     # what the simulated device actually did, same sense


@dataclass
class DemoResult:
    store: Store
    events: list[Event]
    agents: list[VenAgent]
    rows: list[Row] = field(default_factory=list)


def fleet_plan(count: int, unplugged: int) -> list[tuple[str, str, dict]]:
    """(ven name, device kind, device spec) for `count` VENs, the three kinds in turn."""
    kinds = list(KINDS)
    plan, unplugged_left = [], unplugged
    for i in range(count):
        kind = kinds[i % len(kinds)]
        spec = dict(KINDS[kind][1], kind=kind)
        spec["soc_pct"] = spec["soc_pct"] + 5 * (i // len(kinds) % 4)   # a spread of states
        if kind == "ev_managed" and unplugged_left > 0:
            spec["plugged_in"] = False
            unplugged_left -= 1
        plan.append((f"ven-{i + 1:03d}-{kind.replace('_', '-')}", kind, spec))
    return plan


def time_scale(program: Program, event_s: float) -> float:
    return program.durations[0].total_seconds() / event_s


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _sense(program: Program) -> float:
    """Telemetry kW is power into the device; discharge programs count power out."""
    return -1.0 if program.dispatch is Dispatch.DISCHARGE else 1.0


async def run_demo(options: DemoOptions, clock: Clock | None = None,
                   instrument: Callable[[VenAgent], None] | None = None) -> DemoResult:
    clock = clock or SystemClock()
    workdir = options.workdir
    shutil.rmtree(workdir / "state", ignore_errors=True)
    plan = fleet_plan(options.vens, options.unplugged)
    programs = {pid: model.load(pid) for pid in {KINDS[kind][0] for _, kind, _ in plan}}
    pki = ensure_dev_pki(workdir / "pki", [name for name, _, _ in plan])
    (workdir / "state").mkdir(parents=True, exist_ok=True)
    store = Store(options.database_url or f"sqlite:///{workdir / 'state' / 'vtn.sqlite'}")

    for name, kind, _ in plan:
        store.enrol(Ven(ven_id=name, ven_name=name, fingerprint=pki.vens[name].fingerprint,
                        program_id=KINDS[kind][0], device_kind=kind))
    log.info("PKI under %s, %d VENs enrolled", pki.root, len(plan))
    port = _free_port()
    vtn = Vtn(VtnConfig(vtn_id="FLEXADR_DEMO_VTN", host="127.0.0.1", port=port,
                        cert=pki.vtn.cert, key=pki.vtn.key, ca_file=pki.ca.cert,
                        poll_interval=timedelta(seconds=options.poll_s),
                        telemetry_interval=timedelta(seconds=options.report_s)),
              store, clock)
    configs = []
    for name, kind, spec in plan:
        program = programs[KINDS[kind][0]]
        scale = time_scale(program, options.event_s)
        configs.append(AgentConfig(
            ven_name=name, vtn_url=f"https://127.0.0.1:{port}/OpenADR2/Simple/2.0b",
            cert=pki.vens[name].cert, key=pki.vens[name].key, ca_file=pki.ca.cert,
            vtn_fingerprint=pki.vtn.fingerprint, adapter="sim",
            adapter_config=dict(spec, time_scale=scale),
            capacity_kwh=spec["capacity_kwh"], max_discharge_kw=spec.get("max_discharge_kw", 0.0),
            max_charge_kw=spec["max_charge_kw"],
            prefs=OwnerPrefs(min_soc_pct=program.min_soc_pct), time_scale=scale,
            state_url=f"sqlite:///{workdir / 'state' / 'vens.sqlite'}"))
    fleet = Fleet(configs, clock)
    for agent in fleet.agents:
        if instrument:
            instrument(agent)
    result = DemoResult(store=store, events=[], agents=fleet.agents)
    with contextlib.redirect_stdout(io.StringIO()):       # openleadr's banner
        await vtn.start()
    log.info("VTN listening on https://127.0.0.1:%d; starting %d VEN agents", port, len(plan))
    try:
        await fleet.start()
        registered = sum(agent.registered for agent in fleet.agents)
        log.info("%d of %d VENs registered", registered, len(fleet.agents))
        start = ceil_to(clock.now() + timedelta(seconds=options.lead_s),
                        timedelta(seconds=options.report_s))
        end = start + timedelta(seconds=options.event_s)
        for program in programs.values():
            targets = [ven.ven_id for ven in store.vens(program.id)]
            result.events.append(publish(store, program, start, end, targets, clock,
                                         setpoint_kw=DISCHARGE_SETPOINT_KW))
        log.info("event published to %d VENs: %s to %s UTC (%s)", len(fleet.agents),
                 f"{start:%H:%M:%S}", f"{end:%H:%M:%S}", ", ".join(sorted(programs)))
        await _sleep_until(clock, start)
        log.info("event running for %g s", options.event_s)
        # Let the last reporting interval after the event reach the VTN.
        await _sleep_until(clock, end + timedelta(seconds=2 * options.report_s + 1))
        log.info("event over; telemetry in, stopping")
        result.rows = performance_rows(store, result.events, fleet.agents, programs)
    finally:
        await fleet.stop()
        await vtn.stop()
    return result


async def _sleep_until(clock: Clock, when) -> None:
    remaining = (when - clock.now()).total_seconds()
    if remaining > 0:
        await asyncio.sleep(remaining)


def performance_rows(store: Store, events: list[Event], agents: list[VenAgent],
                     programs: dict[str, Program]) -> list[Row]:
    devices = {agent.config.ven_name: agent.adapter for agent in agents}
    rows = []
    for event in events:
        program = programs[event.program_id]
        for target in store.targets(event.event_id):
            ven = store.ven(target.ven_id)
            points = store.telemetry(ven.ven_id, event.start_utc, event.end_utc)
            series = Series(TelemetryInterval(ven.ven_id, p.interval_start, p.interval_end, p.kw)
                            for p in points if p.kw is not None)
            reported = window_average(series, event.start_utc, event.end_utc).kw
            device = devices[ven.ven_name]
            actual = (device.device.mean_kw(event.start_utc, event.end_utc)
                      if isinstance(device, SimAdapter) else float("nan"))
            rows.append(Row(ven.ven_id, ven.device_kind, program.id, target.opt_type or "none",
                            _sense(program) * reported, _sense(program) * actual))
    return sorted(rows, key=lambda row: (row.program_id, row.ven_id))


def format_table(rows: list[Row]) -> str:
    header = f"{'VEN':<24} {'device':<11} {'program':<20} {'opt':<7} {'avg kW':>8} {'device kW':>10}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(f"{row.ven_id:<24} {row.device_kind:<11} {row.program_id:<20} {row.opt:<7} "
                     f"{row.reported_kw:>8.2f} {row.device_kw:>10.2f}")
    lines.append("-" * len(header))
    for program_id in sorted({row.program_id for row in rows}):
        mine = [row for row in rows if row.program_id == program_id]
        lines.append(f"{'TOTAL ' + program_id:<65} {sum(r.reported_kw for r in mine):>8.2f} "
                     f"{sum(r.device_kw for r in mine):>10.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="flexadr-demo",
        description="Run a VTN and a fleet of simulated VENs through one demand-response event "
                    "over signed OpenADR 2.0b with mutual TLS, then print each VEN's performance.")
    parser.add_argument("--vens", type=int, default=21, help="number of VEN agents (default 21)")
    parser.add_argument("--lead", type=float, default=25.0,
                        help="seconds from registration to event start (default 25)")
    parser.add_argument("--event", type=float, default=60.0,
                        help="event length in seconds; the program's event is compressed into it")
    parser.add_argument("--workdir", type=Path, default=Path("var/demo"),
                        help="where the dev PKI and the SQLite store go (default var/demo)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="also the VTN's and VENs' logs (-vv: their debug, -vvv: libraries')")
    args = parser.parse_args(argv)
    if args.event <= 0 or args.event % DemoOptions.report_s:
        # The event must cover whole reporting intervals, or its edges would be averaged
        # with time outside it.
        parser.error(f"--event must be a positive multiple of {DemoOptions.report_s} seconds")
    # By default the demo's progress lines and the table; -v adds what `vtn serve` and
    # `ven fleet` log by default (registrations, opts, state changes), -vv their -v.
    logs.setup(max(args.verbose - 1, 0), stream=sys.stdout)
    if args.verbose == 0:
        for name in logs.OURS:
            logging.getLogger(name).setLevel(logging.WARNING)
        log.setLevel(logging.INFO)
    options = DemoOptions(vens=args.vens, lead_s=args.lead, event_s=args.event,
                          workdir=args.workdir)
    result = asyncio.run(run_demo(options))
    print()
    print("Event performance: average kW over the FULL event (discharge programs: kW out; "
          "managed charging: charging kW, 0 = fully delayed)")
    print(format_table(result.rows))
    registered = sum(agent.registered for agent in result.agents)
    if registered != len(result.agents):
        print(f"only {registered} of {len(result.agents)} VENs registered", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
