"""`vtn`: run and operate the Virtual Top Node.

Each subcommand lives in its own module under `vtn/commands/` and exposes
`register(subparsers)`; add a module name to COMMANDS to add a subcommand.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS = [
    "vtn.commands.serve",
    "vtn.commands.operate",
    "vtn.commands.settle",
    "vtn.commands.programs",
    "vtn.commands.backtest",
    "vtn.commands.replay",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vtn",
        description="flexadr VTN: publishes demand-response events over OpenADR 2.0b, "
                    "collects opt-outs and telemetry, settles performance.")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-v info, -vv debug)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from vtn.config import ConfigError
    from vtn.store.migrate import SchemaNotManaged
    try:
        return args.func(args) or 0
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        return 2
    except SchemaNotManaged as err:
        print(f"database error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
