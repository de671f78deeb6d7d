"""`vtn planner decisions`: why the planner called each program day, or did not.

Every planning run keeps its latest decision per program and day in the store
(vtn.planning), with what it saw at its data cut-off: the forecast peak, its rank
among the season's days so far, the threshold, events left, exclusions hit.

    vtn planner decisions --config vtn.toml
    vtn planner decisions --config vtn.toml --program connected_solutions --since 2026-07-01
"""
from __future__ import annotations

import argparse
from datetime import date

from schedules import model
from vtn.commands.operate import _config_arg, store_of


def register(subparsers) -> None:
    planner = subparsers.add_parser("planner", help="what the planner decided and why",
                                    description=__doc__,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = planner.add_subparsers(dest="action", required=True, metavar="ACTION")
    decisions = sub.add_parser("decisions", help="each program day: called or not, and why")
    _config_arg(decisions)
    decisions.add_argument("--program", help="only this program id")
    decisions.add_argument("--since", type=date.fromisoformat, metavar="YYYY-MM-DD",
                           help="only days from this local date on")
    decisions.set_defaults(func=_decisions)


def _decisions(args) -> int:
    _, store = store_of(args)
    print(f"{'day':<10} {'program':<22} {'decided (local)':<16} {'event':<36} {'peak MW':>8} "
          f"{'thresh':>7} {'rank':>4} {'left':>4}  reason")
    zones: dict[str, object] = {}
    for row in store.decisions(program_id=args.program, since=args.since):
        tz = zones.setdefault(row.program_id, model.load(row.program_id).timezone)
        why = row.reason + (f" [exclusions: {row.exclusions}]" if row.exclusions else "")
        print(f"{row.day.isoformat():<10} {row.program_id:<22} "
              f"{row.decided_utc.astimezone(tz).strftime('%Y-%m-%d %H:%M'):<16} "
              f"{row.event_id or '-':<36} {_number(row.forecast_peak_mw):>8} "
              f"{_number(row.threshold_mw):>7} {_number(row.rank):>4} "
              f"{_number(row.budget_left):>4}  {why}")
    return 0


def _number(value) -> str:
    return "-" if value is None else f"{value:.0f}"
