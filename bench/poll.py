"""Signed polls per second and VTN CPU per poll: our VTN beside stock openleadr, one run.

    .venv/bin/python -m bench.poll --vens 200 --concurrency 16 --seconds 10 [--key rsa]

Each server runs in a process of its own, pinned to CPU 0; the load generator runs
here, pinned to CPU 1 (on a machine with one core both share it: the CPU figures
stay right, polls/s does not). The generator signs oadrPoll messages for N enrolled
VENs with mutual TLS (each VEN its own certificate and connection), C requests in flight, first over keep-alive connections, then
with a fresh TLS connection per poll. The servers:

- **flexadr**: `vtn.service.Vtn` on a SQLite store (every VEN enrolled and registered,
  empty poll queues: the answer is an empty oadrResponse);
- **stock**: `openleadr.OpenADRServer` with a `ven_lookup` from a dict and an `on_poll`
  handler that returns nothing: the least a stock VTN does per poll.

VTN CPU per poll is the server process's user + system time over the window divided
by the polls answered. One JSON line per (server, connection mode), then a summary
line with the ratios.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import ssl
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import aiohttp

from certs.pki import create_ca, issue
from certs.pki import fingerprint as cert_fingerprint
from flexadr.signing import MessageSigner

PATH = "/OpenADR2/Simple/2.0b/OadrPoll"
VTN_ID = "BENCH_VTN"


def _pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {cpu})


def _quiet() -> None:
    import logging
    logging.disable(logging.WARNING)


def _free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_flexadr(root: Path, vens: list[str], port: int, ready, stop,
                  registered: bool = True) -> None:
    """Our VTN on a fresh SQLite store, every VEN enrolled (and registered)."""
    _pin(0)
    _quiet()
    from flexadr.clock import SystemClock
    from vtn.service import Vtn, VtnConfig
    from vtn.store import Store, Ven

    store = Store(f"sqlite:///{root / ('bench.sqlite' if registered else 'register.sqlite')}")
    for name in vens:
        cert = (root / "vens" / f"{name}.crt").read_bytes()
        store.enrol(Ven(ven_id=name, ven_name=name, fingerprint=cert_fingerprint(cert),
                        program_id="connected_solutions", device_kind="battery"))
        if registered:
            store.set_registration(name, f"reg-{name}", SystemClock().now())
    config = VtnConfig(VTN_ID, "127.0.0.1", port, root / "vtn.crt", root / "vtn.key",
                       root / "ca.crt", poll_interval=timedelta(seconds=60))
    _run_until(Vtn(config, store, SystemClock()), ready, stop, start=lambda vtn: vtn.start(False))


def serve_stock(root: Path, vens: list[str], port: int, ready, stop) -> None:
    _pin(0)
    _quiet()
    from openleadr import OpenADRServer

    lookup = {name: {"ven_id": name, "ven_name": name, "registration_id": f"reg-{name}",
                     "fingerprint": cert_fingerprint((root / "vens" / f"{name}.crt").read_bytes())}
              for name in vens}
    server = OpenADRServer(vtn_id=VTN_ID, cert=str(root / "vtn.crt"), key=str(root / "vtn.key"),
                           http_cert=str(root / "vtn.crt"), http_key=str(root / "vtn.key"),
                           http_ca_file=str(root / "ca.crt"), http_host="127.0.0.1",
                           http_port=port, ven_lookup=lambda ven_id: lookup.get(ven_id),
                           show_fingerprint=False)
    server.add_handler("on_poll", lambda ven_id: None)
    _run_until(server, ready, stop, start=lambda s: s.run())


def _run_until(server, ready, stop, start) -> None:
    async def main() -> None:
        await start(server)
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        await server.stop()
    asyncio.run(main())


def _process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Ven:
    """One VEN of the generator: its own certificate, signer and connection."""

    def __init__(self, root: Path, name: str, keep_alive: bool):
        cert, key = root / "vens" / f"{name}.crt", root / "vens" / f"{name}.key"
        self.name = name
        self.sign = MessageSigner(cert.read_bytes(), key.read_bytes())
        context = ssl.create_default_context(cafile=str(root / "ca.crt"))
        context.load_cert_chain(str(cert), str(key))
        # The VTN checks the TLS certificate against the venID: one connection per VEN.
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(
            ssl=context, limit=1, force_close=not keep_alive))

    async def poll(self, url: str) -> bool:
        body = self.sign("oadrPoll", ven_id=self.name)
        async with self.session.post(url, data=body,
                                     headers={"Content-Type": "application/xml"}) as response:
            text = await response.text()
        return response.status == 200 and ">200<" in text


async def load(port: int, root: Path, names: list[str], concurrency: int, seconds: float,
               keep_alive: bool, pid: int) -> dict:
    """Signed polls for `seconds`, `concurrency` in flight; figures of the window."""
    vens = [Ven(root, name, keep_alive) for name in names]
    url = f"https://127.0.0.1:{port}{PATH}"
    latencies: list[float] = []
    errors = 0

    async def worker(mine: list[Ven], until: float) -> None:
        nonlocal errors
        while time.perf_counter() < until:
            for ven in mine:
                began = time.perf_counter()
                errors += not await ven.poll(url)
                latencies.append(time.perf_counter() - began)

    try:
        # Warm-up: every VEN connects (and, with keep-alive, keeps its connection).
        await asyncio.gather(*(ven.poll(url) for ven in vens))
        latencies.clear()
        cpu_before, began = _process_cpu_s(pid), time.perf_counter()
        until = began + seconds
        await asyncio.gather(*(worker(vens[i::concurrency], until) for i in range(concurrency)))
        elapsed, cpu = time.perf_counter() - began, _process_cpu_s(pid) - cpu_before
    finally:
        await asyncio.gather(*(ven.session.close() for ven in vens))
    latencies.sort()
    polls = len(latencies)
    return {"polls": polls, "errors": errors, "polls_per_s": round(polls / elapsed, 1),
            "vtn_cpu_ms_per_poll": round(1000 * cpu / max(polls, 1), 3),
            "p50_ms": round(1000 * latencies[polls // 2], 2) if polls else None,
            "p99_ms": round(1000 * latencies[int(polls * 0.99)], 2) if polls else None}


def make_pki(root: Path, vens: list[str], key_type: str) -> None:
    ca = create_ca(root, key_type=key_type)
    vtn = issue(ca, root, "vtn", server=True, key_type=key_type)
    assert vtn.cert == root / "vtn.crt"
    for name in vens:
        issue(ca, root / "vens", name, key_type=key_type)


def run_in_process(label: str, target, root: Path, vens: list[str], measure):
    """Start server `target` in a process of its own (CPU 0), run measure(port, pid) here
    (CPU 1), stop the server; measure's result."""
    ctx = mp.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    port = _free_port()
    process = ctx.Process(target=target, args=(root, vens, port, ready, stop), daemon=True)
    process.start()
    try:
        if not ready.wait(120):
            raise SystemExit(f"error: the {label} server did not start within 120 s")
        _pin(1)
        return measure(port, process.pid)
    finally:
        stop.set()
        process.join(10)


def run_server(label: str, target, root: Path, vens: list[str], args) -> list[dict]:
    def measure(port: int, pid: int) -> list[dict]:
        rows = []
        for keep_alive in [mode == "keep-alive" for mode in args.modes]:
            figures = asyncio.run(load(port, root, vens, args.concurrency, args.seconds,
                                       keep_alive, pid))
            rows.append({"bench": "poll", "server": label, "key": args.key,
                         "connection": "keep-alive" if keep_alive else "fresh TLS per poll",
                         "vens": len(vens), "concurrency": args.concurrency, **figures})
            print(json.dumps(rows[-1]), flush=True)
        return rows
    return run_in_process(label, target, root, vens, measure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Signed oadrPoll throughput and VTN CPU per poll, ours beside stock openleadr.",
        epilog="example: python -m bench.poll --vens 200 --concurrency 16 --seconds 10 --key ecdsa")
    parser.add_argument("--vens", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--key", choices=("ecdsa", "rsa"), default="ecdsa")
    parser.add_argument("--modes", nargs="+", choices=("keep-alive", "fresh"),
                        default=["keep-alive", "fresh"], help="connection modes to run")
    parser.add_argument("--only", choices=("flexadr", "stock"),
                        help="one server only (e.g. to profile it); no ratios then")
    args = parser.parse_args(argv)
    if args.vens < 1 or args.concurrency < 1 or args.seconds <= 0:
        print("error: --vens, --concurrency and --seconds must be positive", file=sys.stderr)
        return 2
    vens = [f"ven-{i:05d}" for i in range(args.vens)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_pki(root, vens, args.key)
        ours = run_server("flexadr", serve_flexadr, root, vens, args) \
            if args.only != "stock" else []
        stock = run_server("stock openleadr", serve_stock, root, vens, args) \
            if args.only != "flexadr" else []
    summary = {"bench": "poll", "summary": True, "cores": os.cpu_count(),
               "python": platform.python_version(), "argv": sys.argv[1:]}
    for our, theirs in zip(ours, stock):
        key = our["connection"]
        summary[f"{key}: polls/s ratio ours/stock"] = round(
            our["polls_per_s"] / max(theirs["polls_per_s"], 1e-9), 2)
        summary[f"{key}: cpu/poll ratio ours/stock"] = round(
            our["vtn_cpu_ms_per_poll"] / max(theirs["vtn_cpu_ms_per_poll"], 1e-9), 2)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
