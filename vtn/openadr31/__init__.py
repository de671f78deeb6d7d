"""The OpenADR 3.1 edge of the VTN: a REST/JSON API (openadr3.yaml 3.1.0) over the VTN store.

A sibling of the 2.0b edge (vtn/service.py, openleadr): neither imports the other. Both
stand on the protocol-neutral core: the store (vtn/store), the event lifecycle
(vtn/lifecycle.py) and the program files (schedules/). See docs/openadr3.md.

`vtn serve` runs it on its own port: `server = await start(store, clock, settings)` ...
`await server.stop()`; `install(app, ...)` puts the API on an aiohttp app of one's own.
"""
from __future__ import annotations

from aiohttp import web

from flexadr.clock import Clock
from schedules import model
from vtn.openadr31.app import Api
from vtn.openadr31.notify import Notifier
from vtn.openadr31.problems import problem_middleware
from vtn.openadr31.settings import Settings
from vtn.programs import ensure_program
from vtn.store import Store

__all__ = ["Server", "Settings", "build_app", "install", "start"]
MAX_BODY_BYTES = 1024 * 1024
# aiohttp answers a longer request line itself, in text/plain, before any problem body; a
# 3.1 query (targets=...&targets=...) may well pass its 8 KiB default.
MAX_LINE_BYTES = 64 * 1024


def install(app: web.Application, store: Store, clock: Clock, settings: Settings) -> Api:
    """Add the 3.1 API (routes, problem bodies) to `app`; the program files become rows."""
    for program_id in model.load_all():
        ensure_program(store, program_id)
    api = Api(store, clock, settings)
    app.middlewares.append(problem_middleware)
    app.add_routes(api.routes())
    return api


def build_app(store: Store, clock: Clock, settings: Settings) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    install(app, store, clock, settings)
    return app


class Server:
    """The 3.1 API listening on settings.host:settings.port, and its notifier."""

    def __init__(self, store: Store, clock: Clock, settings: Settings):
        self.settings = settings
        self.notifier = Notifier(store, clock, settings)
        self.runner = web.AppRunner(build_app(store, clock, settings), access_log=None,
                                    max_line_size=MAX_LINE_BYTES,
                                    max_field_size=MAX_LINE_BYTES)

    async def start(self, reuse_port: bool = False) -> None:
        await self.runner.setup()
        await web.TCPSite(self.runner, self.settings.host, self.settings.port,
                          reuse_port=reuse_port).start()
        await self.notifier.start()

    async def stop(self) -> None:
        await self.notifier.stop()
        await self.runner.cleanup()


async def start(store: Store, clock: Clock, settings: Settings,
                reuse_port: bool = False) -> Server:
    server = Server(store, clock, settings)
    await server.start(reuse_port)
    return server
