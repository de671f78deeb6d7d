"""The VEN's HTTP session: requests share one connection, kept past the poll interval the
VTN asked for (the next poll reuses it) and closed once idle for longer."""
import asyncio
import time
from datetime import datetime, timedelta, timezone

from ven.openadr20b.client import FlexClient


class CountingServer:
    """A minimal HTTP/1.1 server that answers every request with an empty 200 and
    records when each connection was opened and closed by the client."""

    def __init__(self) -> None:
        self.opened = 0
        self.closed = asyncio.Event()
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.opened += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), 0)
                await reader.readexactly(length)
                self.requests += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed.set()
        finally:
            writer.close()


async def test_polls_share_one_connection_kept_past_the_poll_interval_then_closed():
    server = CountingServer()
    port = await server.start()
    client = FlexClient(ven_name="ven-1", vtn_url=f"http://127.0.0.1:{port}/OpenADR2/Simple/2.0b",
                        show_fingerprint=False)

    async def poll():
        await client._perform_request("OadrPoll", client._create_message("oadrPoll", ven_id="v"))
    try:
        for _ in range(3):
            await poll()
        assert server.requests == 3 and server.opened == 1
        client.poll_frequency = timedelta(seconds=0.5)    # as the registration says
        await poll()
        # Idle longer than the 1 s after which it used to be closed: the next poll reuses it.
        await asyncio.sleep(1.5)
        assert not server.closed.is_set()
        await poll()
        assert server.requests == 5 and server.opened == 1
        # Idle for longer than the poll interval + IDLE_PAST_POLL (5 s): closed, at aiohttp's
        # next clean-up (scheduled with the 15 s of before the registration).
        async with asyncio.timeout(30):
            await server.closed.wait()
    finally:
        await client.client_session.close()
        server.server.close()


async def test_a_poll_due_while_the_event_loop_was_busy_runs_late_instead_of_being_skipped():
    client = FlexClient(ven_name="ven-1", vtn_url="http://127.0.0.1:1/OpenADR2/Simple/2.0b",
                        show_fingerprint=False)
    polls = []
    client.scheduler.add_job(lambda: polls.append(time.monotonic()), trigger="interval",
                             seconds=300, next_run_time=datetime.now(timezone.utc)
                             + timedelta(seconds=0.2))
    client.scheduler.start()
    try:
        time.sleep(2)                 # the loop is busy past the poll time and the 1 s grace
        await asyncio.sleep(0.5)
        assert len(polls) == 1
    finally:
        client.scheduler.shutdown(wait=False)
