"""`vtn serve`, `vtn enrol`, `vtn event`: run the VTN and feed it VENs and events."""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from certs.pki import fingerprint
from flexadr.clock import SystemClock
from vtn import config, event_control
from vtn.commands import operate
from vtn.operator_input import InputError, VenRequest, parse
from vtn.planning import PlanningSchedule
from vtn.service import Vtn
from vtn.store import Store, Ven


def register(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="run the VTN (OpenADR 2.0b over mutual TLS)",
                                  description="Run the VTN until interrupted (Ctrl-C / SIGTERM).")
    serve.add_argument("--config", type=Path, required=True, help="VTN config file (TOML)")
    serve.set_defaults(func=_serve)

    enrol = subparsers.add_parser("enrol", help="enrol a VEN by its certificate",
                                  description="Enrol a VEN: only enrolled certificates may register.")
    enrol.add_argument("--config", type=Path, required=True, help="VTN config file (TOML)")
    enrol.add_argument("name", help="the VEN's name (venName) and venID")
    enrol.add_argument("cert", type=Path, help="the VEN's certificate (PEM)")
    enrol.add_argument("--program", required=True, help="program id, e.g. connected_solutions")
    enrol.add_argument("--kind", required=True, help="device kind, e.g. battery, ev_v2g, ev_managed")
    enrol.set_defaults(func=_enrol)

    event = subparsers.add_parser("event", help="publish an event now",
                                  description="Publish an event of a program to all its VENs.")
    event.add_argument("--config", type=Path, required=True, help="VTN config file (TOML)")
    event.add_argument("--program", required=True, help="program id or program file")
    event.add_argument("--start", required=True,
                       help="start, ISO 8601 with offset, e.g. 2026-07-01T16:00:00-04:00")
    operate.add_event_arguments(event)
    event.set_defaults(func=operate.events_create)   # the same checks as `vtn events create`


def _serve(args: argparse.Namespace) -> int:
    settings = config.load(args.config)
    notifier = None
    if settings.smtp is not None:
        from vtn.notify import ChannelNotifier, EmailNotifier, WebhookNotifier
        notifier = ChannelNotifier(email=EmailNotifier(settings.smtp.host, settings.smtp.port,
                                                       settings.smtp.sender),
                                   webhook=WebhookNotifier(
                                       allow_private=settings.server.webhook_allow_private))
    vtn = Vtn(settings.server, Store(settings.database_url), SystemClock(), notifier=notifier)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await vtn.start()
        planner = None
        if settings.planner is not None:
            planner = PlanningSchedule(vtn.store, settings.planner, SystemClock())
            planner.start()
        await stop.wait()
        if planner is not None:
            planner.stop()
        await vtn.stop()

    asyncio.run(run())
    return 0


def _enrol(args: argparse.Namespace) -> int:
    try:
        request = parse(VenRequest, {"ven_name": args.name, "program_id": args.program,
                                     "device_kind": args.kind})
        event_control.load_program(request.program_id)
        cert_fingerprint = fingerprint(args.cert.read_bytes())
    except InputError as err:
        return operate.refused(err)
    except OSError as err:
        print(f"{args.cert}: {err.strerror}", file=sys.stderr)
        return 2
    except ValueError as err:     # not a PEM certificate
        print(f"{args.cert}: not a PEM certificate: {err}", file=sys.stderr)
        return 2
    settings = config.load(args.config)
    store = Store(settings.database_url)
    if store.ven(args.name) is not None:
        print(f"VEN {args.name} is already enrolled")
        return 1
    store.enrol(Ven(ven_id=args.name, ven_name=args.name, fingerprint=cert_fingerprint,
                    program_id=args.program, device_kind=args.kind))
    print(f"enrolled {args.name} ({args.kind}, {args.program})")
    return 0
