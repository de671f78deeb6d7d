"""`vtn serve`: run the VTN (one process, or N workers on one PostgreSQL database)."""
from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Callable

from certs.pki import fingerprint
from flexadr import logs
from flexadr.clock import SystemClock
from vtn import config
from vtn.leadership import Leadership
from vtn.planning import PlanningSchedule
from vtn.service import Vtn
from vtn.store import Store

log = logging.getLogger(__name__)
RESPAWN_S = 1.0     # before a dead worker is started again
STOP_S = 30.0       # a worker's time to stop after SIGTERM, then SIGKILL


def register(subparsers) -> None:
    serve = subparsers.add_parser("serve", help="run the VTN (OpenADR 2.0b over mutual TLS)",
                                  description="Run the VTN until interrupted (Ctrl-C / SIGTERM).")
    serve.add_argument("--config", type=Path, required=True, help="VTN config file (TOML)")
    serve.add_argument("--workers", type=_positive, metavar="N",
                       help="worker processes on one PostgreSQL database (default: the "
                            "config's `workers`, 1)")
    logs.add_format_option(serve)
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    settings = config.load(args.config)
    workers = args.workers or settings.workers
    if workers > 1 and not settings.database_url.startswith(("postgresql", "postgres")):
        raise config.ConfigError(f"{args.config}: workers = {workers} needs a PostgreSQL "
                                 f"database (SQLite has one writer: run one process)")
    if workers > 1 and settings.server.xmpp is not None:
        # Every worker would log in as the same full JID: the server keeps one session.
        raise config.ConfigError(f"{args.config}: workers = {workers} with [xmpp]: the XMPP "
                                 f"transport runs in one process (workers = 1)")
    edge = settings.openadr31
    for key, host, port in (("port", settings.server.host, settings.server.port),
                            ("admin_port", settings.server.admin_host, settings.server.admin_port),
                            ("openadr31.port", edge and edge.host, edge and edge.port)):
        if port is not None:
            _require_free(args.config, key, host, port)
    if workers == 1:
        asyncio.run(_run_worker(settings, args.config, reuse_port=False))
        return 0
    _prepare_database(settings)
    return _supervise(workers, lambda: asyncio.run(
        _run_worker(settings, args.config, reuse_port=True)))


def _prepare_database(settings: config.VtnSettings) -> None:
    """Once, before the workers start: they would race to migrate and to add program rows."""
    store = Store(settings.database_url)
    if settings.openadr31 is not None:
        from schedules import model
        from vtn.programs import ensure_program
        for program_id in model.load_all():
            ensure_program(store, program_id)
    store.close()


def _notifier(settings: config.VtnSettings):
    if settings.smtp is None:
        return None
    from vtn.notify import ChannelNotifier, EmailNotifier, WebhookNotifier
    return ChannelNotifier(email=EmailNotifier(settings.smtp.host, settings.smtp.port,
                                               settings.smtp.sender),
                           webhook=WebhookNotifier(
                               allow_private=settings.server.webhook_allow_private))


async def _run_worker(settings: config.VtnSettings, source: Path, reuse_port: bool) -> None:
    """One VTN process: the OpenADR listeners, and the singleton loops while it leads."""
    edge = settings.openadr31
    store = Store(settings.database_url, migrate_schema=not reuse_port,
                  pool_size=settings.database_pool_size)
    planner = (PlanningSchedule(store, settings.planner, SystemClock())
               if settings.planner is not None else None)
    leadership = Leadership(settings.database_url)
    vtn = Vtn(settings.server, store, SystemClock(), notifier=_notifier(settings),
              leadership=leadership)
    vtn.planner_settings = settings.planner      # the console's Tomorrow page

    async def first_round() -> None:
        await vtn.tick()
        if planner is not None:
            await planner.tick()
    leadership.on_gain = first_round
    if planner is not None:
        planner.leadership = leadership
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await vtn.start(run_ticker=True, reuse_port=reuse_port)
    except OSError as err:       # lost a race for a port checked free above
        await vtn.stop()
        raise config.ConfigError(f"{source}: cannot listen: {err.strerror or err}") from None
    log.info("VTN certificate fingerprint %s (the VENs' vtn_fingerprint)",
             fingerprint(settings.server.cert.read_bytes()))
    openadr31 = None
    if edge is not None:
        from vtn import openadr31 as edge_31
        openadr31 = await edge_31.start(store, SystemClock(), edge, reuse_port=reuse_port)
        log.info("OpenADR 3.1 edge listening on http://%s:%s", edge.host, edge.port)
    if planner is not None:
        planner.start()
    await leadership.start()
    await stop.wait()
    log.info("stopping")
    await leadership.stop()
    if planner is not None:
        planner.stop()
    if openadr31 is not None:
        await openadr31.stop()
    await vtn.stop()


def _supervise(count: int, work: Callable[[], None]) -> int:
    """Run `work` in `count` forked worker processes until SIGTERM/SIGINT; a worker that
    dies is started again (after RESPAWN_S: a crash loop must not spin)."""
    context = multiprocessing.get_context("fork")
    stopping = False

    def stop(_signum, _frame) -> None:
        nonlocal stopping
        stopping = True
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stop)

    def spawn(index: int):
        process = context.Process(target=_worker_main, args=(work,), name=f"vtn-worker-{index}")
        process.start()
        log.info("worker %d started (pid %d)", index, process.pid)
        return process
    processes = {index: spawn(index) for index in range(count)}
    while not stopping:
        multiprocessing.connection.wait([p.sentinel for p in processes.values()], timeout=1)
        for index, process in list(processes.items()):
            if process.is_alive() or stopping:
                continue
            log.error("worker %d (pid %d) exited with %s; starting it again", index,
                      process.pid, process.exitcode)
            time.sleep(RESPAWN_S)
            processes[index] = spawn(index)
    for process in processes.values():
        if process.is_alive():
            os.kill(process.pid, signal.SIGTERM)
    for process in processes.values():
        process.join(STOP_S)
        if process.is_alive():
            process.kill()
    return 0


def _worker_main(work: Callable[[], None]) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):     # the parent's handlers do not apply here
        signal.signal(sig, signal.SIG_DFL)
    try:
        work()
    except config.ConfigError as err:
        print(f"vtn: {err}", file=sys.stderr)
        sys.exit(2)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers within 1..64")
    return value


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
