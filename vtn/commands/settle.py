"""`vtn settle`: performance and payments of one program's season, as JSON,
CSV or an HTML report, from CSV files or (later) the VTN database."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vtn.settlement import RateClass, settle
from vtn.settlement.csvio import SettlementInputError, read_input
from vtn.settlement.output import to_csv, to_json, write_atomically
from vtn.settlement.params import PARAMS, params_for
from vtn.settlement.store_adapter import StoreDataError, query_season

EXIT_INPUT = 2


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "settle", help="settle a program's season: performance, payments, report",
        description="Settle one program's season from interval data files (or the VTN "
                    "database) and write JSON, CSV or a self-contained HTML report.")
    p.add_argument("--program", required=True, choices=sorted(PARAMS))
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--events", metavar="EVENTS.csv", help="event_id,start,end[,kind]")
    src.add_argument("--season", type=int, metavar="YEAR", help="read the season from the VTN database")
    p.add_argument("--telemetry", metavar="TELEMETRY.csv",
                   help="participant,interval_start,interval_end,kw[,plugged_in,soc_pct,battery_kw]")
    p.add_argument("--participants", metavar="PARTICIPANTS.csv",
                   help="participant[,rate_class,enrolled,installed,lifetime_paid_usd,capacity_kwh,"
                        "enrolled_kw]; telemetry of anyone else is an error")
    p.add_argument("--opt-outs", metavar="OPT_OUTS.csv", help="participant,event_id")
    p.add_argument("--rate-class", choices=[str(r) for r in RateClass], default=RateClass.RESIDENTIAL,
                   help="rate class of participants without one (default: residential)")
    p.add_argument("--config", type=Path, metavar="VTN.toml",
                   help="with --season: the VTN config file naming the database")
    p.add_argument("--database", metavar="URL", help="with --season: database URL (overrides --config)")
    p.add_argument("--format", choices=["json", "csv", "html"], default="json")
    p.add_argument("--out", metavar="FILE", help="write here (atomically) instead of stdout")
    p.set_defaults(func=run)


class UsageError(ValueError):
    pass


def run(args: argparse.Namespace) -> int:
    params = params_for(args.program)
    try:
        data = _load(args, params)
        result = settle(args.program, data, default_rate_class=RateClass(args.rate_class),
                        fleet=args.format == "html")
    except (SettlementInputError, StoreDataError) as err:
        print(f"vtn settle: bad input:\n{err}", file=sys.stderr)
        return EXIT_INPUT
    except ValueError as err:     # usage, config, events spanning two seasons, no events
        print(f"vtn settle: {err}", file=sys.stderr)
        return EXIT_INPUT
    text = render(args.format, result)
    if not args.out:
        sys.stdout.write(text)
        return 0
    try:
        write_atomically(args.out, text)
    except OSError as err:
        print(f"vtn settle: cannot write {args.out}: {err.strerror or err}", file=sys.stderr)
        return 1
    return 0


def _load(args: argparse.Namespace, params):
    if args.events:
        if not args.telemetry:
            raise UsageError("--events needs --telemetry")
        return read_input(args.events, args.telemetry, participants=args.participants,
                          opt_outs=args.opt_outs, event_data_only=params.event_data_only,
                          tz=params.timezone)
    if args.telemetry or args.participants or args.opt_outs:
        raise UsageError("--telemetry, --participants and --opt-outs go with --events; "
                         "--season reads them from the database")
    return query_season(_store(args), params, args.season)


def _store(args: argparse.Namespace):
    from vtn.store import Store
    if args.database:
        return Store(args.database)
    if args.config:
        from vtn.config import load
        return Store(load(args.config).database_url)
    raise UsageError("--season needs --database URL or --config VTN.toml")


def render(fmt: str, result) -> str:
    if fmt == "json":
        return to_json(result)
    if fmt == "csv":
        return to_csv(result)
    from vtn.settlement.html_report import to_html
    return to_html(result)
