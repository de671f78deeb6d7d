"""Event fan-out latency to N VENs in push mode beside N pull VENs, one run, one VTN.

    .venv/bin/python -m bench.fanout_push --vens 1000 --poll-s 10

The VTN (`vtn.service.Vtn` on SQLite) runs in a process of its own pinned to CPU 0,
with N push VENs and N pull VENs enrolled and registered. The fleet runs here, pinned
to CPU 1: each push VEN is an aiohttp endpoint with its own certificate and port that
answers a pushed oadrDistributeEvent with a signed oadrCreatedEvent; each pull VEN
polls (signed oadrPoll, its own keep-alive connection) every `--poll-s` at a random
phase, and answers the event with oadrCreatedEvent. One event targeting all 2N VENs
is then published into the database from this process (as `vtn events create` would);
latency is from that commit to the event's arrival at each VEN.

Pull at a 60 s poll would take a run of minutes, so pull runs at `--poll-s` and the
60 s figures are derived per VEN: its wait for its next poll scaled to a 60 s period,
plus the service time it measured. Push includes each VEN's first TLS handshake with
the VTN (no warm-up). The fleet does not verify the VTN's signatures (the VTN's CPU is
what is measured). Each process's share of its core over the window is printed
(`vtn_core_share`, `fleet_core_share`): near 1, that process was the limit; the fleet's is
the load generator's. Figures are noisy on a shared machine. One JSON line.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import random
import socket
import ssl
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web
from lxml import etree

from bench.poll import VTN_ID, _free_port, _pin, _process_cpu_s, _quiet, _run_until, make_pki
from certs.pki import fingerprint as cert_fingerprint
from flexadr.signing import MessageSigner
from vtn.push import PushSettings

PATH = "/OpenADR2/Simple/2.0b"
EI = "{http://docs.oasis-open.org/ns/energyinterop/201110}"
PYLD = "{http://docs.oasis-open.org/ns/energyinterop/201110/payloads}"
PULL_60 = 60.0


def serve(root: Path, push: dict[str, int], pull: list[str], port: int, poll_s: float,
          in_flight: int, ready, stop) -> None:
    _pin(0)
    _quiet()
    from datetime import timedelta

    from flexadr.clock import SystemClock
    from vtn import push as push_model
    from vtn.service import Vtn, VtnConfig
    from vtn.store import Store, Ven

    store = Store(f"sqlite:///{root / 'bench.sqlite'}")
    now = SystemClock().now()
    for name in [*push, *pull]:
        cert = (root / "vens" / f"{name}.crt").read_bytes()
        store.enrol(Ven(ven_id=name, ven_name=name, fingerprint=cert_fingerprint(cert),
                        program_id="connected_solutions", device_kind="battery"))
        store.set_registration(name, f"reg-{name}", now)
    for name, ven_port in push.items():
        push_model.register(store, name, f"https://127.0.0.1:{ven_port}{PATH}", now)
    config = VtnConfig(VTN_ID, "127.0.0.1", port, root / "vtn.crt", root / "vtn.key",
                       root / "ca.crt", poll_interval=timedelta(seconds=poll_s),
                       push_settings=push_model.PushSettings(in_flight=in_flight))
    _run_until(Vtn(config, store, SystemClock()), ready, stop, start=lambda vtn: vtn.start(False))


def _tls(root: Path, name: str, purpose: ssl.Purpose) -> ssl.SSLContext:
    context = ssl.create_default_context(purpose, cafile=str(root / "ca.crt"))
    if purpose is ssl.Purpose.CLIENT_AUTH:
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.check_hostname = False
    context.load_cert_chain(str(root / "vens" / f"{name}.crt"), str(root / "vens" / f"{name}.key"))
    return context


def _signer(root: Path, name: str) -> MessageSigner:
    return MessageSigner.from_files(root / "vens" / f"{name}.crt", root / "vens" / f"{name}.key")


def _created_event(sign: MessageSigner, name: str, tree: etree._Element) -> str | None:
    """The signed optIn answer to an oadrDistributeEvent; None if it carries no event."""
    event_id = tree.findtext(f".//{EI}eventID")
    if event_id is None:
        return None
    request_id = tree.findtext(f".//{PYLD}requestID") or ""
    modification = int(tree.findtext(f".//{EI}modificationNumber") or 0)
    response = {"response_code": 200, "response_description": "OK", "request_id": request_id}
    return sign("oadrCreatedEvent", ven_id=name, response=response, event_responses=[
        dict(response, event_id=event_id, modification_number=modification, opt_type="optIn")])


def _listening(count: int) -> list[socket.socket]:
    """Bound sockets held from the start, so no port is handed out twice."""
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        sockets.append(sock)
    return sockets


class PushFleet:
    """N push endpoints in one process: one port and certificate per VEN."""

    def __init__(self, root: Path, push: dict[str, int], sockets: list[socket.socket]):
        self.root, self.push, self.sockets = root, push, sockets
        self.by_port = {port: name for name, port in push.items()}
        self.signers = {name: _signer(root, name) for name in push}
        self.arrived: dict[str, float] = {}
        self.posts = 0          # more than arrived: sent again (a POST past its timeout)
        self.runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(f"{PATH}/EiEvent", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        for name, sock in zip(self.push, self.sockets):
            await web.SockSite(self.runner, sock,
                               ssl_context=_tls(self.root, name, ssl.Purpose.CLIENT_AUTH)).start()

    async def handle(self, request: web.Request) -> web.Response:
        name = self.by_port[request.transport.get_extra_info("sockname")[1]]
        tree = etree.fromstring(await request.read())
        self.posts += 1
        self.arrived.setdefault(name, time.time())
        answer = _created_event(self.signers[name], name, tree)
        return web.Response(text=answer or "", content_type="application/xml")

    async def stop(self) -> None:
        await self.runner.cleanup()


class Poller:
    """One pull VEN: polls every `period` from `phase`, answers the event once."""

    def __init__(self, root: Path, name: str, url: str, period: float, phase: float):
        self.name, self.url, self.period, self.phase = name, url, period, phase
        self.sign = _signer(root, name)
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(
            ssl=_tls(root, name, ssl.Purpose.SERVER_AUTH), limit=1))
        self.polled_at: list[float] = []
        self.arrived: float | None = None
        self.poll_began: float | None = None     # the poll that brought the event

    async def run(self, t0: float, until: float) -> None:
        k = 0
        while (when := t0 + self.phase + k * self.period) < until:
            await asyncio.sleep(max(0.0, when - time.time()))
            await self.poll()
            k += 1

    async def poll(self) -> None:
        began = time.time()
        async with self.session.post(f"{self.url}/OadrPoll", data=self.sign("oadrPoll", ven_id=self.name),
                                     headers={"content-type": "application/xml"}) as reply:
            body = await reply.read()
        self.polled_at.append(began)
        if self.arrived is not None or b"oadrDistributeEvent" not in body:
            return
        answer = _created_event(self.sign, self.name, etree.fromstring(body))
        if answer is None:
            return
        self.arrived, self.poll_began = time.time(), began
        async with self.session.post(f"{self.url}/EiEvent", data=answer,
                                     headers={"content-type": "application/xml"}) as reply:
            await reply.read()


def _quantiles(values: list[float]) -> dict:
    if not values:
        return {"delivered": 0}
    values = sorted(values)
    at = lambda q: round(values[min(len(values) - 1, int(q * len(values)))], 3)   # noqa: E731
    return {"delivered": len(values), "first_s": round(values[0], 3), "p50_s": at(0.5), "p95_s": at(0.95), "max_s": round(values[-1], 3)}


async def fan_out(root: Path, push: dict[str, int], sockets: list[socket.socket], pull: list[str],
                  port: int, poll_s: float, max_wait_s: float, pid: int) -> dict:
    url = f"https://127.0.0.1:{port}{PATH}"
    fleet = PushFleet(root, push, sockets)
    await fleet.start()
    rng = random.Random(7)
    pollers = [Poller(root, name, url, poll_s, rng.uniform(0, poll_s)) for name in pull]
    t0 = time.time()
    horizon = t0 + 2 * poll_s + 1 + max_wait_s + poll_s
    tasks = [asyncio.create_task(p.run(t0, horizon)) for p in pollers]
    try:
        await asyncio.sleep(poll_s + 1)          # every pull VEN has polled (warm connection)
        idle_cpu, idle_began = _process_cpu_s(pid), time.time()
        await asyncio.sleep(poll_s)              # the VTN's CPU for polling alone
        idle_rate = (_process_cpu_s(pid) - idle_cpu) / (time.time() - idle_began)
        from flexadr.clock import SystemClock
        from schedules import model
        from vtn import lifecycle
        from vtn.store import Store
        from datetime import datetime, timedelta, timezone
        store = Store(f"sqlite:///{root / 'bench.sqlite'}", migrate_schema=False)
        start = datetime.now(timezone.utc) + timedelta(hours=2)
        cpu_before, fleet_cpu_before = _process_cpu_s(pid), _process_cpu_s(os.getpid())
        lifecycle.publish(store, model.load("connected_solutions"), start, start + timedelta(hours=1),
                          [*push, *pull], SystemClock(), setpoint_kw=5)
        published = time.time()
        deadline = published + max_wait_s
        while time.time() < deadline and (len(fleet.arrived) < len(push)
                                          or any(p.arrived is None for p in pollers)):
            await asyncio.sleep(0.1)
        vtn_cpu = _process_cpu_s(pid) - cpu_before
        fleet_cpu = _process_cpu_s(os.getpid()) - fleet_cpu_before
        elapsed = time.time() - published
        store.close()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*(p.session.close() for p in pollers))
        await fleet.stop()
    push_latency = [at - published for at in fleet.arrived.values()]
    pull_latency, pull_60 = [], []
    for p in pollers:
        if p.arrived is None:
            continue
        pull_latency.append(p.arrived - published)
        # A poll already under way at publication waits nothing for its period.
        wait, service = max(0.0, p.poll_began - published), p.arrived - max(p.poll_began, published)
        pull_60.append(wait * PULL_60 / poll_s + service)
    polls = sum(1 for p in pollers for at in p.polled_at if published <= at <= published + elapsed)
    return {"push": dict(posts=fleet.posts, **_quantiles(push_latency)),
            "pull": dict(poll_s=poll_s, **_quantiles(pull_latency)),
            "pull_at_60s_equivalent": _quantiles(pull_60),
            "window_s": round(elapsed, 1), "vtn_cpu_s_in_window": round(vtn_cpu, 2),
            # Near 1: that process had its whole core and was the limit (the fleet's is
            # the load generator's: its push endpoints' TLS handshakes and signatures).
            "vtn_core_share": round(vtn_cpu / elapsed, 2),
            "fleet_core_share": round(fleet_cpu / elapsed, 2),
            "vtn_cpu_s_for_polling_alone": round(idle_rate * elapsed, 2),
            "vtn_cpu_ms_per_ven_delivered": round(
                1000 * (vtn_cpu - idle_rate * elapsed) / max(1, len(push_latency) + len(pull_latency)), 1),
            "polls_in_window": polls}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Event fan-out latency, push VENs beside pull VENs, one VTN, one run.",
        epilog="example: python -m bench.fanout_push --vens 1000 --poll-s 10")
    parser.add_argument("--vens", type=int, default=1000, help="VENs of each exchange model")
    parser.add_argument("--pull-vens", type=int, default=None,
                        help="pull VENs, if not --vens (0: push alone, for its CPU cost)")
    parser.add_argument("--poll-s", type=float, default=10.0, help="the pull VENs' poll period")
    parser.add_argument("--in-flight", type=int, default=PushSettings().in_flight,
                        help="push VENs delivered to at once (vtn.toml [push] in_flight)")
    parser.add_argument("--max-wait-s", type=float, default=120.0,
                        help="stop waiting for deliveries this long after publication")
    args = parser.parse_args(argv)
    if args.vens < 1 or (args.pull_vens or 0) < 0 or not 1 <= args.poll_s <= PULL_60 \
            or args.max_wait_s <= args.poll_s or args.in_flight < 1:
        print("error: --vens and --in-flight must be positive, --pull-vens not negative, "
              "--poll-s within 1..60 and --max-wait-s above --poll-s", file=sys.stderr)
        return 2
    sockets = _listening(args.vens)
    push = {f"push-{i:05d}": sock.getsockname()[1] for i, sock in enumerate(sockets)}
    pull = [f"pull-{i:05d}" for i in range(args.vens if args.pull_vens is None else args.pull_vens)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_pki(root, [*push, *pull], "ecdsa")
        ctx = mp.get_context("spawn")
        ready, stop = ctx.Event(), ctx.Event()
        port = _free_port()
        process = ctx.Process(target=serve, args=(root, push, pull, port, args.poll_s, args.in_flight,
                                                     ready, stop),
                              daemon=True)
        process.start()
        try:
            if not ready.wait(120):
                print("error: the VTN did not start within 120 s", file=sys.stderr)
                return 1
            _pin(1)
            figures = asyncio.run(fan_out(root, push, sockets, pull, port, args.poll_s,
                                          args.max_wait_s, process.pid))
        finally:
            stop.set()
            process.join(15)
    print(json.dumps({"bench": "fanout_push", "push_vens": len(push), "pull_vens": len(pull),
                      "in_flight": args.in_flight,
                      **figures,
                      "load_average_1m": round(os.getloadavg()[0], 1), "cores": os.cpu_count(), "python": platform.python_version(),
                      "argv": sys.argv[1:]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
