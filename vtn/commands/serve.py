"""`vtn serve`: run the VTN."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import logging
import signal
import socket
from pathlib import Path

from certs.pki import fingerprint
from flexadr import logs
from flexadr.clock import SystemClock
from vtn import config
from vtn.planning import PlanningSchedule
from vtn.service import Vtn
from vtn.store import Store

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="run the VTN (OpenADR 2.0b over mutual TLS)",
                                  description="Run the VTN until interrupted (Ctrl-C / SIGTERM).")
    serve.add_argument("--config", type=Path, required=True, help="VTN config file (TOML)")
    logs.add_format_option(serve)
    serve.set_defaults(func=_serve)


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
