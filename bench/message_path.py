"""Server CPU per signed oadrPoll, over mutual TLS: stock openleadr vs the flexadr VTN.

In one run, for each server in turn (a stock openleadr OpenADRServer with a ven_lookup,
then flexadr's Vtn on a temporary SQLite store), a child process signs and posts M
oadrPoll messages as one registered VEN (ECDSA P-256, one keep-alive TLS session) and the
server's process CPU time (time.process_time, all threads) is divided by M. An empty poll
queue, so the figure is the message path: parsing, XSD, signature, replay check, dispatch,
answer rendering and signing, HTTP and TLS.

    .venv/bin/python -m bench.message_path --messages 500 --rounds 3

Run it with PYTHONPATH pointing at another checkout to measure that tree's VTN (the
stock figure is the same code either way).
"""
from __future__ import annotations

import argparse
import asyncio
import platform
import ssl
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

VEN = "ven-bench"


async def _client(url: str, cert: str, key: str, ca: str, messages: int) -> None:
    import aiohttp

    from flexadr.signing import MessageSigner
    signer = MessageSigner.from_files(cert, key)
    context = ssl.create_default_context(cafile=ca)
    context.load_cert_chain(cert, key)
    async with aiohttp.ClientSession(headers={"content-type": "application/xml"}) as session:
        for _ in range(messages):
            async with session.post(f"{url}/OadrPoll", data=signer("oadrPoll", ven_id=VEN),
                                    ssl=context) as response:
                text = await response.text()
                if response.status != 200 or "<ei:responseCode>200<" not in text:
                    raise SystemExit(f"poll refused: {response.status} {text[:300]}")


async def _measure(url: str, pki, messages: int) -> float:
    """Server CPU seconds per message while the child process polls."""
    paths = pki.vens[VEN]
    command = [sys.executable, __file__, "--client", url, str(paths.cert),
               str(paths.key), str(pki.ca.cert), str(messages)]
    before = time.process_time()
    child = await asyncio.create_subprocess_exec(*command)
    if await child.wait() != 0:
        raise SystemExit("the polling client failed")
    return (time.process_time() - before) / messages


async def _stock(pki, port: int, messages: int) -> float:
    from openleadr import OpenADRServer
    registration = {"ven_id": VEN, "ven_name": VEN, "fingerprint": pki.vens[VEN].fingerprint,
                    "registration_id": "reg-1"}
    server = OpenADRServer(vtn_id="BENCH", cert=str(pki.vtn.cert), key=str(pki.vtn.key),
                           http_cert=str(pki.vtn.cert), http_key=str(pki.vtn.key),
                           http_ca_file=str(pki.ca.cert), http_host="127.0.0.1", http_port=port,
                           ven_lookup=lambda ven_id: registration if ven_id == VEN else None,
                           show_fingerprint=False)
    await server.run()
    try:
        return await _measure(f"https://127.0.0.1:{port}/OpenADR2/Simple/2.0b", pki, messages)
    finally:
        await server.stop()


async def _flexadr(pki, port: int, messages: int, workdir: Path) -> float:
    from flexadr.clock import SystemClock
    from vtn.service import Vtn, VtnConfig
    from vtn.store import Store, Ven
    workdir.mkdir(parents=True, exist_ok=True)
    store = Store(f"sqlite:///{workdir / 'bench.sqlite'}")
    store.enrol(Ven(ven_id=VEN, ven_name=VEN, fingerprint=pki.vens[VEN].fingerprint,
                    program_id="connected_solutions", device_kind="battery"))
    store.set_registration(VEN, "reg-1", datetime.now(timezone.utc))
    vtn = Vtn(VtnConfig("BENCH", "127.0.0.1", port, pki.vtn.cert, pki.vtn.key, pki.ca.cert,
                        poll_interval=timedelta(seconds=10)), store, SystemClock())
    await vtn.start(run_ticker=False)
    try:
        return await _measure(f"https://127.0.0.1:{port}/OpenADR2/Simple/2.0b", pki, messages)
    finally:
        await vtn.stop()
        store.close()


async def _run(messages: int, rounds: int) -> None:
    import logging

    from certs.pki import ensure_dev_pki
    from flexadr.demo import _free_port
    logging.getLogger("openleadr").setLevel(logging.ERROR)
    workdir = Path(tempfile.mkdtemp())
    pki = ensure_dev_pki(workdir / "pki", [VEN])
    stock, ours = [], []
    for round_ in range(rounds):     # alternated; the least CPU of each is the least disturbed
        stock.append(await _stock(pki, _free_port(), messages))
        ours.append(await _flexadr(pki, _free_port(), messages, workdir / str(round_)))
    stock, ours = min(stock), min(ours)
    print(f"Python {platform.python_version()}, {messages} signed oadrPoll per server, ECDSA P-256, "
          f"best of {rounds} rounds, server CPU per message (process_time):")
    print(f"  stock openleadr 0.5.36 OpenADRServer: {stock * 1000:6.2f} ms")
    print(f"  flexadr Vtn ({Path(__import__('vtn').__file__).parent.parent}): {ours * 1000:6.2f} ms")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        url, cert, key, ca, messages = sys.argv[2:7]
        asyncio.run(_client(url, cert, key, ca, int(messages)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(_run(args.messages, args.rounds))


if __name__ == "__main__":
    main()
