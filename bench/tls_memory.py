"""Resident memory per idle keep-alive TLS connection on the server side: asyncio's
default read buffer (256 KiB per connection) beside ours (flexadr.tls.TLS_READ_BUFFER),
in one run.

    .venv/bin/python -m bench.tls_memory --connections 2000

A VTN keeps each VEN's connection open between polls (`idle_connection_s`), so this is
what a node's memory grows by per VEN. For each buffer size a server process with our
mutual-TLS server context answers one 3 KB request (a signed poll's size) with 2 KB
on each of N connections, which then stay open; the server's RSS growth over N is the
figure. Prints one JSON line with the core count and command line.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import tempfile
from asyncio import sslproto
from pathlib import Path

from bench.fleet import raise_fd_limit, rss_mib
from certs.pki import ensure_dev_pki
from flexadr.tls import TLS_READ_BUFFER, CertKey, client_context, server_context

ASYNCIO_DEFAULT = sslproto.SSLProtocol.max_size
REQUEST, ANSWER = b"p" * 3000, b"r" * 2000


def serve(pki_root: str, buffer: int, ready, done) -> None:
    raise_fd_limit()
    pki = ensure_dev_pki(Path(pki_root), ["ven"])

    open_connections = set()

    async def answer(reader, writer) -> None:
        open_connections.add(writer)
        try:
            while await reader.read(65536):
                writer.write(ANSWER)
                await writer.drain()
        finally:
            open_connections.discard(writer)

    async def main() -> None:
        context = server_context("default", [CertKey(pki.vtn.cert, pki.vtn.key)], pki.ca.cert)
        sslproto.SSLProtocol.max_size = buffer       # after our context set its own
        server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context, backlog=1024)
        ready.send((server.sockets[0].getsockname()[1], rss_mib()))
        await asyncio.get_running_loop().run_in_executor(None, done.recv)
        ready.send(rss_mib())
        async with asyncio.timeout(60):      # the client closes every connection
            while open_connections:
                await asyncio.sleep(0.1)
    asyncio.run(main())


async def connect_all(port: int, pki, connections: int) -> list:
    context = client_context("default", CertKey(pki.vens["ven"].cert, pki.vens["ven"].key),
                             pki.ca.cert, check_hostname=False)
    open_ = []
    for _ in range(connections):
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context)
        writer.write(REQUEST)
        await writer.drain()
        await reader.readexactly(len(ANSWER))
        open_.append(writer)
    return open_


def measure(pki_root: str, buffer: int, connections: int) -> dict:
    ctx = mp.get_context("spawn")
    ready_rx, ready_tx = ctx.Pipe(duplex=False)
    done_rx, done_tx = ctx.Pipe(duplex=False)
    server = ctx.Process(target=serve, args=(pki_root, buffer, ready_tx, done_rx))
    server.start()
    port, before = ready_rx.recv()
    pki = ensure_dev_pki(Path(pki_root), ["ven"])

    async def run() -> None:
        writers = await connect_all(port, pki, connections)
        done_tx.send("measure")
        await asyncio.get_running_loop().run_in_executor(None, ready_rx.poll, 60)
        for writer in writers:
            writer.close()
    asyncio.run(run())
    after = ready_rx.recv()
    server.join(30)
    return {"read_buffer_kib": buffer // 1024, "server_rss_growth_mib": round(after - before, 1),
            "kib_per_connection": round((after - before) * 1024 / connections, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="example: python -m bench.tls_memory --connections 2000")
    parser.add_argument("--connections", type=int, default=2000)
    args = parser.parse_args(argv)
    raise_fd_limit()
    with tempfile.TemporaryDirectory() as root:
        ensure_dev_pki(Path(root) / "pki", ["ven"])
        pki_root = str(Path(root) / "pki")
        ours = measure(pki_root, TLS_READ_BUFFER, args.connections)
        baseline = measure(pki_root, ASYNCIO_DEFAULT, args.connections)
    print(json.dumps({"bench": "tls_memory", "cores": os.cpu_count(), "argv": sys.argv[1:],
                      "connections": args.connections, "ours": ours,
                      "asyncio_default": baseline}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
