"""`vtn serve`, `vtn enrol`, `vtn event`: run the VTN and feed it VENs and events."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import signal
import socket
import sys
from pathlib import Path

from certs.pki import CertError, file_fingerprint, fingerprint
from flexadr import logs
from flexadr.clock import SystemClock
from vtn import audit, config, event_control
from vtn.commands import operate
from vtn.operator_input import InputError, VenRequest, parse
from vtn.planning import PlanningSchedule
from vtn.service import Vtn
from vtn.store import Store, Ven

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="run the VTN (OpenADR 2.0b over mutual TLS)",
                                  description="Run the VTN until interrupted (Ctrl-C / SIGTERM).")
    serve.add_argument("--config", type=Path, required=True, help="VTN config file (TOML)")
    logs.add_format_option(serve)
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
    edge = settings.openadr31
    for key, host, port in (("port", settings.server.host, settings.server.port),
                            ("admin_port", settings.server.admin_host, settings.server.admin_port),
                            ("openadr31.port", edge and edge.host, edge and edge.port)):
        if port is not None:
            _require_free(args.config, key, host, port)
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
        try:
            with contextlib.redirect_stdout(io.StringIO()):   # openleadr's banner; we log it
                await vtn.start()
        except OSError as err:       # lost a race for a port checked free above
            await vtn.stop()
            raise config.ConfigError(
                f"{args.config}: cannot listen: {err.strerror or err}") from None
        log.info("VTN certificate fingerprint %s (the VENs' vtn_fingerprint)",
                 fingerprint(settings.server.cert.read_bytes()))
        openadr31 = None
        if edge is not None:
            from vtn import openadr31 as edge_31
            openadr31 = await edge_31.start(vtn.store, SystemClock(), edge)
            log.info("OpenADR 3.1 edge listening on http://%s:%s", edge.host, edge.port)
        planner = None
        if settings.planner is not None:
            vtn.planner_settings = settings.planner
            planner = PlanningSchedule(vtn.store, settings.planner, SystemClock())
            planner.start()
        await stop.wait()
        log.info("stopping")
        if planner is not None:
            planner.stop()
        if openadr31 is not None:
            await openadr31.stop()
        await vtn.stop()

    asyncio.run(run())
    return 0


def _require_free(source: Path, key: str, host: str, port: int) -> None:
    """Fail before starting anything (and before any banner) if the port is taken."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as err:
        raise config.ConfigError(f"{source}: {key}: cannot resolve host {host!r}: "
                                 f"{err.strerror}") from None
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as aiohttp binds
        try:
            probe.bind((host, port))
        except OSError as err:
            raise config.ConfigError(f"{source}: {key}: cannot listen on {host}:{port}: "
                                     f"{err.strerror}") from None


def _enrol(args: argparse.Namespace) -> int:
    try:
        request = parse(VenRequest, {"ven_name": args.name, "program_id": args.program,
                                     "device_kind": args.kind})
        event_control.load_program(request.program_id)
        cert_fingerprint = file_fingerprint(args.cert)
    except InputError as err:
        return operate.refused(err)
    except CertError as err:      # no such file, not a PEM certificate
        print(err, file=sys.stderr)
        return 2
    settings = config.load(args.config)
    store = Store(settings.database_url)
    if store.ven(args.name) is not None:
        print(f"VEN {args.name} is already enrolled")
        return 1
    with store.transaction():
        ven = store.enrol(Ven(ven_id=args.name, ven_name=args.name,
                              fingerprint=cert_fingerprint, program_id=args.program,
                              device_kind=args.kind))
        with store.session() as session:
            audit.record(session, actor=audit.cli_actor().name, action="ven.enrol",
                         subject_type="ven", subject_id=ven.ven_id, before=None,
                         after=audit.snapshot(ven))
    print(f"enrolled {args.name} ({args.kind}, {args.program})")
    return 0
