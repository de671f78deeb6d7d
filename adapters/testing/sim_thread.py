"""The device simulators' own thread and event loop.

A real charger or inverter runs on its own CPU: its physics, meter reports and
answers do not wait for the controller's event loop. Simulators that share the
loop of a busy process (the replay: a fleet of agents, a VTN, signed messages)
are late by that loop's lag in everything they do, which compressed time makes
large (at 96 s per day one wall second is 15 device minutes). On their own
loop they are late only by what the machine itself lags.

Everything a simulator does runs on this loop; another thread reaches it
through `run` (a coroutine, awaited from that thread's loop) or `call` (a plain
function, blocking the caller until the simulator's loop has run it), so the
physics is only ever touched by one thread.
"""
from __future__ import annotations

import asyncio
import threading
from typing import Any, Awaitable, Callable, TypeVar

T = TypeVar("T")


class SimThread:
    def __init__(self, name: str = "device-simulators"):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    async def run(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run the coroutine `make()` on the simulators' loop and wait for it here."""
        async def on_sim_loop() -> T:
            return await make()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(on_sim_loop(), self.loop))

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the simulators' loop (at once when it is not running)."""
        if not self.loop.is_running() or threading.current_thread() is self._thread:
            return fn(*args)
        async def on_sim_loop() -> T:
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(on_sim_loop(), self.loop).result()

    async def stop(self) -> None:
        """Stop the loop once its simulators have stopped; the thread ends."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self._thread.join)
        self.loop.close()
