"""`ven`: run VEN agents next to devices."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from flexadr import logs
from flexadr.clock import SystemClock
from ven import config
from ven.fleet import Fleet

log = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ven",
        description="flexadr VEN agents: register with a VTN over OpenADR 2.0b or 3.1, turn its events "
                    "into device commands through an adapter, report telemetry.")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-v debug, -vv also library debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run one agent", description="Run one VEN agent until interrupted.")
    run.add_argument("--config", type=Path, required=True, help="agent config file (TOML)")
    logs.add_format_option(run)
    run.set_defaults(load=lambda args: [config.load_agent(args.config)])
    fleet = sub.add_parser("fleet", help="run many agents in one process",
                           description="Run every [[ven]] of a fleet file in one process.")
    fleet.add_argument("--config", type=Path, required=True, help="fleet config file (TOML)")
    logs.add_format_option(fleet)
    fleet.set_defaults(load=lambda args: config.load_fleet(args.config))
    adapters = sub.add_parser("adapters", help="list installed device adapters")
    adapters.set_defaults(load=None)
    return parser


async def _run(configs) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    fleet = None
    try:
        fleet = Fleet(configs, SystemClock())
        await fleet.start()
    except (OSError, LookupError, ValueError, TypeError) as err:
        # a device port taken, an adapter not installed or its config wrong: one line;
        # -v shows where
        log.debug("start-up failed", exc_info=True)
        if fleet is not None:
            await fleet.stop()
        raise StartFailed(str(err)) from None
    await stop.wait()
    log.info("stopping")
    await fleet.stop()


class StartFailed(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.setup(args.verbose, getattr(args, "log_format", "text"))
    if args.load is None:
        from adapters import registry
        for name, target in sorted(registry.available().items()):
            print(f"{name:<16} {target}")
        return 0
    try:
        configs = args.load(args)
        asyncio.run(_run(configs))
    except config.ConfigError as err:
        print(f"ven: {err}", file=sys.stderr)
        return 2
    except StartFailed as err:
        print(f"ven: {args.config}: cannot start: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
