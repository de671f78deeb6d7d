"""Signed polls per second and VTN CPU per poll: our VTN beside stock openleadr, one run.

    .venv/bin/python -m bench.poll --vens 1000 --concurrency 32 --seconds 10 [--key rsa]
        [--modes keep-alive fresh resumed]

Each server runs in a process of its own, pinned to CPU 0; the load generator runs
here, pinned to CPU 1 (on a machine with one core both share it: the CPU figures
stay right, polls/s does not). N enrolled VENs, each with its own certificate and
connection (mutual TLS), C polls in flight, per connection mode: keep-alive, a fresh
TLS connection per poll, or a new connection per poll resuming the TLS session.

What the generator does, so that one Python core can drive the VTN's: it **pre-signs**
the polls and only sends them while it measures. It works in phases: sign a batch of
oadrPoll messages (each with a fresh nonce and the current timestamp, so all are
inside the VTN's 30 s replay window when sent; the servers idle meanwhile, unmeasured),
then send the batch for at most --phase-s seconds over raw asyncio streams (one
pre-encoded HTTP/1.1 request per poll, no aiohttp client), until --seconds of sending
are measured. **Every** answer's HTTP status and OpenADR responseCode is counted
(answers_by_status); the XML signature of every --verify-every-th answer is verified
against the VTN's certificate. Polls left unsent at the end of a phase are dropped.

The servers:

- **flexadr**: `vtn.service.Vtn` on a SQLite store (every VEN enrolled and registered,
  empty poll queues: the answer is an empty oadrResponse), asking for a poll every
  --poll-s (default 1 s: with 1,000 VENs and ~1,000 polls/s each VEN polls about on
  time, so the poll-rate limit admits every poll and last-seen is written as with
  real polling, at most once per interval per VEN);
- **stock**: `openleadr.OpenADRServer` with a `ven_lookup` from a dict and an `on_poll`
  handler that returns nothing: the least a stock VTN does per poll;
- **floor**: the primitives every signed poll needs on this stack (TLS, the DTD-free
  parse, the XSD check, the signature check, a signed oadrResponse) on a bare asyncio
  protocol, with no store, replay check, VEN lookup or HTTP framework. No VTN can do
  less and stay in the profile, so stock / floor bounds what any Python VTN built on
  lxml, cryptography and the ssl module can reach against stock on this machine.

VTN CPU per poll is the server process's user + system time over the sending windows
divided by the polls answered; vtn_cpu_share near 1.0 means the server was CPU-bound
(its polls/s is then its capacity on that core). One JSON line per (server, connection
mode), then a summary line with the ratios.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing as mp
import os
import platform
import re
import ssl
import sys
import tempfile
import time
from datetime import timedelta
from functools import partial
from pathlib import Path

import aiohttp
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs.pki import create_ca, issue
from certs.pki import fingerprint as cert_fingerprint
from flexadr import oadr_xml, tls
from flexadr.signing import BadSignature, MessageSigner, OtherShape, verify_fast

PATH = "/OpenADR2/Simple/2.0b/OadrPoll"
MODES = {"keep-alive": "keep-alive", "fresh": "fresh TLS per poll",
         "resumed": "new connection per poll, TLS session resumed"}
VTN_ID = "BENCH_VTN"
LABELS = {"flexadr": "flexadr", "stock": "stock openleadr", "floor": "floor"}


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
                  registered: bool = True, poll_s: float = 60.0) -> None:
    """Our VTN on a fresh SQLite store, every VEN enrolled (and registered), asking for a
    poll every `poll_s` (its poll-rate limit and last-seen writes follow from it)."""
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
                       root / "ca.crt", poll_interval=timedelta(seconds=poll_s),
                       # the generator's VENs idle while it signs the next batch
                       idle_connection=timedelta(hours=1))
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


class _FloorProtocol(asyncio.Protocol):
    """The floor's connection: HTTP/1.1 requests with a Content-Length, as the generator
    sends them, and nothing a real server must also handle (no chunks, limits, timeouts)."""

    def __init__(self, answer):
        self.answer, self.buffer, self.transport = answer, b"", None

    def connection_made(self, transport) -> None:
        self.transport = transport
        ssl_object = transport.get_extra_info("ssl_object")
        self.peer_der = ssl_object.getpeercert(binary_form=True)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            length = int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
            if len(self.buffer) < end + 4 + length:
                return
            body, self.buffer = self.buffer[end + 4:end + 4 + length], self.buffer[end + 4 + length:]
            text = self.answer(body, self.peer_der).encode()
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(text), text))


def serve_floor(root: Path, vens: list[str], port: int, ready, stop) -> None:
    """The primitives' floor of a signed poll on this stack: TLS, DTD-free parse, XSD check,
    signature check (C14N, digests, one public-key verify) and a signed oadrResponse, on a
    bare asyncio protocol; no store, no replay check, no VEN lookup, no HTTP framework."""
    _pin(0)
    _quiet()
    from flexadr import xsd

    signer = MessageSigner.from_files(root / "vtn.crt", root / "vtn.key")

    def answer(body: bytes, peer_der: bytes) -> str:
        tree = oadr_xml.parse(body)
        xsd.check(tree)
        verify_fast(tree, peer_der)
        ven_id = tree.findtext(".//{http://docs.oasis-open.org/ns/energyinterop/201110}venID")
        return signer("oadrResponse", ven_id=ven_id, response={
            "response_code": 200, "response_description": "OK", "request_id": ""})

    context = tls.server_context("default", [tls.CertKey(root / "vtn.crt", root / "vtn.key")],
                                 root / "ca.crt")
    _run_until(_FloorServer(answer, port, context), ready, stop, start=lambda s: s.start())


class _FloorServer:
    """The floor's listener, started and stopped as `_run_until` does the others."""

    def __init__(self, answer, port: int, context):
        self.answer, self.port, self.context, self.server = answer, port, context, None

    async def start(self) -> None:
        self.server = await asyncio.get_running_loop().create_server(
            lambda: _FloorProtocol(self.answer), "127.0.0.1", self.port, ssl=self.context)

    async def stop(self) -> None:
        self.server.close()


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
    """One VEN of the generator: its own certificate, signer and connection (aiohttp), signing
    each poll as it sends it: bench/register.py and bench/scaleout.py use it."""

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


class PresignedVen:
    """One VEN of this generator: its own certificate, TLS context and connection (asyncio
    streams: a fraction of aiohttp's client CPU), sending polls signed beforehand."""

    def __init__(self, root: Path, name: str, resume: bool = False):
        cert, key = root / "vens" / f"{name}.crt", root / "vens" / f"{name}.key"
        self.name = name
        self.sign = MessageSigner(cert.read_bytes(), key.read_bytes())
        # resume: each new connection offers the last one's TLS session (as our VEN does).
        self.context = (tls.client_context("default", tls.CertKey(cert, key), root / "ca.crt")
                        if resume else ssl.create_default_context(cafile=str(root / "ca.crt")))
        if not resume:
            self.context.load_cert_chain(str(cert), str(key))
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.polls: list[bytes] = []     # pre-signed requests, sent in order

    def presign(self, count: int, port: int, keep_alive: bool) -> None:
        """`count` oadrPoll requests, each with a fresh nonce and the current timestamp."""
        connection = b"keep-alive" if keep_alive else b"close"
        for _ in range(count):
            body = self.sign("oadrPoll", ven_id=self.name).encode()
            self.polls.append(b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: %s\r\n"
                              b"Content-Type: application/xml\r\nContent-Length: %d\r\n\r\n%s"
                              % (PATH.encode(), port, connection, len(body), body))

    async def exchange(self, port: int, request: bytes, keep_alive: bool) -> tuple[int, bytes]:
        """Send one request; the HTTP status and the body of the answer."""
        if self.streams is not None and self.streams[0].at_eof():
            await self.close()      # closed by the server while idle
        if self.streams is None:
            self.streams = await asyncio.open_connection("127.0.0.1", port, ssl=self.context)
        reader, writer = self.streams
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
        body = await reader.readexactly(length)
        if not keep_alive:
            await self.close()
        return int(head[9:12]), body

    async def close(self) -> None:
        if self.streams is not None:
            writer, self.streams = self.streams[1], None
            writer.close()
            try:
                await asyncio.wait_for(writer.wait_closed(), 2)
            except (OSError, asyncio.TimeoutError, ssl.SSLError):
                pass


_CODE = re.compile(rb"<ei:responseCode>(\d+)</ei:responseCode>")


class Tally:
    """Every answer's HTTP status and OpenADR code; every `verify_every`-th answer's
    signature checked against the VTN certificate."""

    def __init__(self, vtn_der: bytes, verify_every: int):
        self.vtn_der, self.verify_every = vtn_der, verify_every
        self.answers = 0
        self.codes: dict[str, int] = {}
        self.verified = self.bad_signatures = 0
        self.latencies: list[float] = []

    def count(self, status: int, body: bytes, seconds: float) -> None:
        found = _CODE.search(body)
        key = f"{status}/{found.group(1).decode() if found else '-'}"
        self.codes[key] = self.codes.get(key, 0) + 1
        self.latencies.append(seconds)
        self.answers += 1
        if self.answers % self.verify_every == 0:
            try:
                verify_fast(oadr_xml.parse(body), self.vtn_der)
                self.verified += 1
            except (BadSignature, OtherShape, oadr_xml.Malformed):
                self.bad_signatures += 1

    @property
    def good(self) -> int:
        return self.codes.get("200/200", 0)


async def _send(vens: list[PresignedVen], port: int, keep_alive: bool, until: float, tally: Tally) -> None:
    """One in-flight slot: its VENs' pre-signed polls in turn, until they run out or `until`."""
    while time.perf_counter() < until:
        sent = False
        for ven in vens:
            if not ven.polls or time.perf_counter() >= until:
                continue
            began = time.perf_counter()
            status, body = await ven.exchange(port, ven.polls.pop(), keep_alive)
            tally.count(status, body, time.perf_counter() - began)
            sent = True
        if not sent:
            return


async def load(port: int, root: Path, names: list[str], args, mode: str, pid: int) -> dict:
    """Signed polls for `args.seconds` of sending, `args.concurrency` in flight.

    In phases: pre-sign a batch (the VTN idles; not measured), then send it for at most
    `args.phase_s` and measure the VTN's CPU and the answers of that sending only."""
    keep_alive = mode == "keep-alive"
    vens = [PresignedVen(root, name, resume=mode == "resumed") for name in names]
    tally = Tally(x509.load_pem_x509_certificate((root / "vtn.crt").read_bytes())
                  .public_bytes(serialization.Encoding.DER), args.verify_every)
    slots = [vens[i::args.concurrency] for i in range(args.concurrency)]
    try:
        # Warm-up, not measured: every VEN connects (and, with keep-alive, stays connected).
        for ven in vens:
            ven.presign(1, port, keep_alive)
        warm = time.perf_counter()
        await asyncio.gather(*(_send(slot, port, keep_alive, math.inf, Tally(b"", 1 << 30))
                               for slot in slots))
        rate = len(vens) / (time.perf_counter() - warm)
        sent_s = cpu_s = 0.0
        while sent_s < args.seconds:
            phase = min(args.phase_s, args.seconds - sent_s)
            per_ven = math.ceil(rate * phase * 1.5 / len(vens))
            for ven in vens:
                ven.polls.clear()
                ven.presign(per_ven, port, keep_alive)
            answers, cpu_before, began = tally.answers, _process_cpu_s(pid), time.perf_counter()
            await asyncio.gather(*(_send(slot, port, keep_alive, began + phase, tally)
                                   for slot in slots))
            elapsed = time.perf_counter() - began
            sent_s, cpu_s = sent_s + elapsed, cpu_s + _process_cpu_s(pid) - cpu_before
            rate = max((tally.answers - answers) / elapsed, 1.0)
    finally:
        await asyncio.gather(*(ven.close() for ven in vens))
    latencies = sorted(tally.latencies)
    polls = len(latencies)
    return {"polls": polls, "answered_200": tally.good, "answers_by_status": tally.codes,
            "signatures_verified": tally.verified, "bad_signatures": tally.bad_signatures,
            "polls_per_s": round(polls / sent_s, 1),
            "vtn_cpu_ms_per_poll": round(1000 * cpu_s / max(polls, 1), 3),
            "vtn_cpu_share": round(cpu_s / sent_s, 2),
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
        for mode in args.modes:
            figures = asyncio.run(load(port, root, vens, args, mode, pid))
            rows.append({"bench": "poll", "server": label, "key": args.key,
                         "connection": MODES[mode],
                         "vens": len(vens), "concurrency": args.concurrency, **figures})
            print(json.dumps(rows[-1]), flush=True)
        return rows
    return run_in_process(label, target, root, vens, measure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Signed oadrPoll throughput and VTN CPU per poll, ours beside stock openleadr.",
        epilog="example: python -m bench.poll --vens 1000 --concurrency 32 --seconds 10 --key ecdsa")
    parser.add_argument("--vens", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=32, help="polls in flight")
    parser.add_argument("--seconds", type=float, default=10.0, help="sending time measured")
    parser.add_argument("--phase-s", type=float, default=2.5,
                        help="longest sending phase; polls are pre-signed before each")
    parser.add_argument("--verify-every", type=int, default=50,
                        help="check the signature of every Nth answer (all are counted)")
    parser.add_argument("--poll-s", type=float, default=1.0,
                        help="the poll interval our VTN asks for (its rate limit and "
                             "last-seen writes follow it); about N VENs / polls per s")
    parser.add_argument("--key", choices=("ecdsa", "rsa"), default="ecdsa")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=["keep-alive", "fresh"],
                        help="connection modes to run: " + "; ".join(
                            f"{mode}: {meaning}" for mode, meaning in MODES.items()))
    parser.add_argument("--only", choices=LABELS,
                        help="one server only (e.g. to profile it); no ratios then")
    args = parser.parse_args(argv)
    if min(args.vens, args.concurrency, args.verify_every) < 1 or \
            min(args.seconds, args.phase_s, args.poll_s) <= 0:
        print("error: --vens, --concurrency, --seconds, --phase-s, --verify-every and --poll-s "
              "must be positive", file=sys.stderr)
        return 2
    vens = [f"ven-{i:05d}" for i in range(args.vens)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_pki(root, vens, args.key)
        targets = {"flexadr": partial(serve_flexadr, poll_s=args.poll_s),
                   "stock": serve_stock, "floor": serve_floor}
        rows = {name: run_server(LABELS[name], target, root, vens, args)
                for name, target in targets.items() if args.only in (None, name)}
    summary = {"bench": "poll", "summary": True, "cores": os.cpu_count(),
               "python": platform.python_version(), "argv": sys.argv[1:]}
    for name in ("flexadr", "floor"):
        for row, stock in zip(rows.get(name, []), rows.get("stock", [])):
            key, who = row["connection"], "ours" if name == "flexadr" else "floor"
            summary[f"{key}: polls/s ratio {who}/stock"] = round(
                row["polls_per_s"] / max(stock["polls_per_s"], 1e-9), 2)
            summary[f"{key}: cpu/poll ratio {who}/stock"] = round(
                row["vtn_cpu_ms_per_poll"] / max(stock["vtn_cpu_ms_per_poll"], 1e-9), 2)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
