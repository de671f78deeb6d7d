"""`vtn replay`: a real window of history, all four programs, end to end in compressed time."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from datetime import date
from pathlib import Path

from flexadr import data

EXIT_INPUT = 2


EXAMPLES = """examples:
  vtn replay                                        # the week of 2018-08-27, 100 VENs (about 40 min)
  vtn replay --start 2018-08-29 --days 1            # the peak day alone
  vtn replay --start 2018-08-29 --days 1 --vens 12 --day-seconds 96   # a small fleet, fast
  vtn replay --sim-only                             # every device on the sim adapter

Part of the fleet runs the real OCPP 1.6 / 2.0.1 / 2.1 (V2X), SunSpec and telematics
adapters against their device simulators; docs/replay.md has the mix and measured figures."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "replay", help="replay a window of history end to end: planner, VTN, fleet, settlement",
        description="Replay a window of ISO-NE history in compressed time on the embedded "
                    "store: the planner decides each day at its notice deadline, the VTN "
                    "publishes every program's events (notices to a local SMTP sink), a mixed "
                    "fleet of VEN agents takes part over signed OpenADR 2.0b with mutual TLS "
                    "(through real device adapters to their simulators, and the sim adapter), "
                    "and each program is settled over the window.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--start", type=date.fromisoformat, default=date(2018, 8, 27), metavar="DATE",
                   help="first day of the window (default 2018-08-27: the week of the 2018 peak)")
    p.add_argument("--days", type=int, default=7, help="days in the window (default 7)")
    p.add_argument("--vens", type=int, default=100, help="VEN agents (default 100; at least 9)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fleet and its owners")
    p.add_argument("--day-seconds", type=float, default=288.0, metavar="S",
                   help="wall seconds per replayed day, a multiple of 96 (default 288: a "
                        "15-minute interval in 3 s; 96 is the fastest, for small fleets)")
    p.add_argument("--poll-seconds", type=float, default=4.0, metavar="S",
                   help="how often each VEN polls the VTN, wall seconds (default 4)")
    p.add_argument("--load", type=data.argument, metavar="CSV",
                   help="ISO-NE hourly load + day-ahead forecast, a path or data:NAME "
                        "(default: the shipped data:isone_hourly_load_2015-07_2019-12.csv)")
    p.add_argument("--sim-only", action="store_true",
                   help="every device on the sim adapter (default: some managed cars on OCPP "
                        "1.6 / 2.0.1 chargers and a car cloud, some V2X cars and V2G pickups "
                        "on OCPP 2.1 chargers, some BYOD batteries on a SunSpec inverter, "
                        "through the real adapters to their simulators)")
    p.add_argument("--workdir", type=Path, default=Path("var/replay"),
                   help="dev PKI, SQLite stores and the replay's data files (default var/replay)")
    p.add_argument("--database", metavar="URL", help="VTN store (default: SQLite under --workdir)")
    p.set_defaults(func=run)


def _problem(args: argparse.Namespace) -> str | None:
    from flexadr.replay import LOAD_FILE
    from flexadr.replay_scenario import MIX
    if args.days < 1:
        return "--days must be at least 1"
    if args.vens < len(MIX) + 1:
        return f"--vens must be at least {len(MIX) + 1} (one VEN of each kind and the depot)"
    if args.poll_seconds <= 0:
        return "--poll-seconds must be positive"
    if args.day_seconds <= 0 or args.day_seconds % 96:
        return "--day-seconds must be a positive multiple of 96 (whole wall seconds per interval)"
    try:
        load = args.load or data.path(LOAD_FILE)
    except data.DataNotFound as err:
        return f"{err}: give --load"
    return _outside_data(load, args.start, args.days)


def _outside_data(load: Path, first: date, days: int) -> str | None:
    """The planner needs the forecast of every day of the window, and the day before."""
    from datetime import datetime, timedelta, timezone

    from schedules.sources import DataFileError, read_isone_csv
    try:
        series = read_isone_csv(load).load
    except DataFileError as err:
        return str(err).splitlines()[0]
    if not len(series.t):
        return f"{load} holds no hours"
    start, end = (datetime.fromtimestamp(int(t), tz=timezone.utc).date()
                  for t in (series.t[0], series.t[-1]))
    if first - timedelta(days=1) < start or first + timedelta(days=days) > end:
        return f"the window {first} + {days} days is outside {load.name} ({start} to {end})"
    return None


def run(args: argparse.Namespace) -> int:
    problem = _problem(args)
    if problem:
        print(f"vtn replay: {problem}", file=sys.stderr)
        return EXIT_INPUT
    from flexadr import replay_report
    from flexadr.replay import ReplayOptions, LOAD_FILE, run_replay
    from schedules.sources import DataFileError

    quiet = args.verbose == 0
    # openleadr logs every message and the pollers' shutdown; keep them for -v.
    logging.getLogger("openleadr").setLevel(logging.CRITICAL if quiet else logging.INFO)
    logging.getLogger("apscheduler").setLevel(logging.CRITICAL if quiet else logging.INFO)
    options = ReplayOptions(first_day=args.start, days=args.days, vens=args.vens, seed=args.seed,
                            day_s=args.day_seconds, poll_s=args.poll_seconds, workdir=args.workdir, load_csv=args.load,
                            database_url=args.database, real_adapters=not args.sim_only)
    began = time.monotonic()
    try:
        result = asyncio.run(run_replay(options, show=lambda line: print(line, flush=True)))
    except (DataFileError, ValueError) as err:
        print(f"vtn replay: {err}", file=sys.stderr)
        return EXIT_INPUT
    settlements = {pid: replay_report.settle_program(result, pid) for pid in result.programs
                   if replay_report.settled_events(result, pid)}
    peak = replay_report.annual_peak(result, args.load or data.path(LOAD_FILE))
    print()
    print(f"{args.start} + {args.days} days, {len(result.members)} VENs, seed {args.seed}: "
          f"fleet kW = average over each program's events of the fleet's event kW "
          f"(discharge: out of the devices; managed charging: charging kW)")
    print(replay_report.report(result, settlements, peak))
    print(f"wall time {time.monotonic() - began:.0f} s")
    result.store.close()
    return 0
