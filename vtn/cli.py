"""`vtn`: run and operate the Virtual Top Node.

Each subcommand lives in its own module under `vtn/commands/` and exposes
`register(subparsers)`; add a module name to COMMANDS to add a subcommand.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from flexadr import logs

COMMANDS = [
    "vtn.commands.serve",
    "vtn.commands.enrol",
    "vtn.commands.operate",
    "vtn.commands.status",
    "vtn.commands.certs",
    "vtn.commands.doctor",
    "vtn.commands.settle",
    "vtn.commands.programs",
    "vtn.commands.backtest",
    "vtn.commands.oadr3",
    "vtn.commands.replay",
    "vtn.commands.planner",
    "vtn.commands.users",
    "vtn.commands.data",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vtn",
        description="flexadr VTN: publishes demand-response events over OpenADR 2.0b, "
                    "collects opt-outs and telemetry, settles performance.")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-v debug, -vv also library debug)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.verbose, getattr(args, "log_format", "text"))
    from vtn.config import ConfigError
    from sqlalchemy.exc import OperationalError

    from vtn.store.migrate import SchemaNotManaged
    try:
        return args.func(args) or 0
    except ConfigError as err:
        print(f"vtn: {err}", file=sys.stderr)
        return 2
    except SchemaNotManaged as err:
        print(f"vtn: database error: {err}", file=sys.stderr)
        return 2
    except OperationalError as err:      # unreachable server, bad password, unwritable file
        print(f"vtn: database error: {str(err.orig).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
