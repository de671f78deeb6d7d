"""Fan-out: time from publishing one event until N VENs have answered (oadrCreatedEvent
stored), ours beside stock openleadr in one run.

    .venv/bin/python -m bench.fanout --vens 1000 --poll-s 60 [--workers 2] [--only ours]
    .venv/bin/python -m bench.fanout --vens 10000 --poll-s 120 --register store --stock-vens 1000

- **ours**: `vtn serve --workers W` on a fresh PostgreSQL database, N of our VEN agents
  (ven.fleet.Fleet) in two fleet processes (bench.fleet_agents); the event is published
  with vtn.lifecycle.publish and an answer counts once the store has it
  (EventTarget.opt_type, stamped opt_at by the VTN);
- **stock**: one `openleadr.OpenADRServer` process (its own add_event per VEN, the
  answer counted in its event callback), N stock `OpenADRClient`s answering optIn, in
  two processes.

Every VEN polls every --poll-s seconds, so the last answer is due within one poll
interval (plus the time to handle the burst). `--register store`: the VENs are registered
through the VTN's store before the window and our agents take that registration up
(bench.fleet_agents' resume_poll_s) instead of registering, 10,000 of which would take
longer than the bench. Prints one JSON line, with where the time went (publish_s; per VEN
`delivered`: publish until the VTN handed the event out; `answer_after_delivery`), and
the fleet processes' memory and CPU per VEN-minute over the window.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.fleet import quiet_logs, raise_fd_limit
from bench.poll import _free_port, make_pki
from bench.scaleout import DEFAULT_URL, enrol, fresh_database, start_vtn

ROOT = Path(__file__).resolve().parent.parent
FLEETS = 2
START_CONCURRENCY = 20     # registrations in flight per fleet process
RESUME_CONCURRENCY = 200   # agents starting at once when they take up a stored registration
REGISTER_S = 1800.0        # every phase is bounded


def settle_s(args) -> float:
    """After the last registration, before publishing: the registrations' follow-up
    messages are done and every VEN polls in its rhythm (agents taking up a stored
    registration are in it from their start: their first polls are spread over one
    interval)."""
    return min(args.poll_s, 10 if args.register == "store" else 30)


def percentiles(delays: list[float]) -> dict:
    if not delays:
        return {"answered": 0}
    ordered = sorted(delays)
    pick = lambda q: round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)  # noqa: E731
    return {"answered": len(ordered), "p50_s": pick(0.5), "p95_s": pick(0.95),
            "last_s": round(ordered[-1], 2)}


# --- ours --------------------------------------------------------------------------------
class Fleets:
    """Our agents in FLEETS processes (bench.fleet_agents), their JSON lines read on threads."""

    def __init__(self, work: Path, root: Path, names: list[str], url: str, vtn_fingerprint: str,
                 resume_poll_s: int | None):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.processes, self.lines = [], []
        for index in range(FLEETS):
            spec = work / f"fleet-{index}.json"
            spec.write_text(json.dumps({"url": url, "pki_root": str(root),
                                        "names": names[index::FLEETS],
                                        "vtn_fingerprint": vtn_fingerprint,
                                        "state": str(work / f"vens-{index}.sqlite"),
                                        "kind": "battery", "resume_poll_s": resume_poll_s,
                                        "start_concurrency": RESUME_CONCURRENCY if resume_poll_s
                                        else START_CONCURRENCY,
                                        "drain_s": 0}))     # the telemetry is not counted here
            process = subprocess.Popen([sys.executable, "-m", "bench.fleet_agents", str(spec)],
                                       env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=(work / f"fleet-{index}.log").open("w"), text=True)
            lines: list[dict] = []
            threading.Thread(target=_read_lines, args=(process.stdout, lines), daemon=True).start()
            self.processes.append(process)
            self.lines.append(lines)

    def wait(self, count: int, timeout_s: float) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while any(len(lines) < count for lines in self.lines):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.processes):
                raise SystemExit("error: a fleet process failed or did not answer in time")
            time.sleep(0.5)
        return [lines[count - 1] for lines in self.lines]

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.stdin.write("drain\n")
                process.stdin.flush()
        for process in self.processes:
            try:
                process.wait(180)
            except subprocess.TimeoutExpired:
                process.kill()


def _read_lines(stream, lines: list[dict]) -> None:
    for line in stream:
        if line.startswith("{"):
            lines.append(json.loads(line))


def run_ours(work: Path, root: Path, names: list[str], args) -> dict:
    from certs.pki import fingerprint
    from flexadr.clock import SystemClock
    from schedules import model
    from vtn import lifecycle
    from vtn.store import Store
    url = fresh_database(args.database_url, "flexadr_bench_fanout")
    # --register agents: they register themselves; store: registered here, before the window
    enrol(url, root, names, registered=args.register == "store")
    store = Store(url)
    port = _free_port()
    serve = start_vtn(work, "vtn", root, url, args.workers, port, poll_s=args.poll_s)
    fleets = None
    try:
        began = time.perf_counter()
        fleets = Fleets(work, root, names, f"https://127.0.0.1:{port}/OpenADR2/Simple/2.0b",
                        fingerprint((root / "vtn.crt").read_bytes()),
                        args.poll_s if args.register == "store" else None)
        started = fleets.wait(1, REGISTER_S)
        registered = sum(line["registered"] for line in started)
        register_s = time.perf_counter() - began
        time.sleep(settle_s(args))
        program = model.load("connected_solutions")
        store.program(program.id)       # this process's first query (ORM set-up) is not timed
        start = datetime.now(timezone.utc) + timedelta(hours=2)
        published = datetime.now(timezone.utc)
        event = lifecycle.publish(store, program, start, start + timedelta(hours=1), names,
                                  SystemClock(), setpoint_kw=5)
        publish_s = (datetime.now(timezone.utc) - published).total_seconds()
        delays = _answers(store, event.event_id, published, len(names),
                          args.poll_s * 2 + 60)
        phases = _phases(store, event, published)
        window_s = time.perf_counter() - began - register_s
    finally:
        if fleets is not None:
            fleets.stop()
        serve.terminate()
        serve.wait(60)
    store.close()
    ended = [lines[-1] for lines in fleets.lines]
    fleet_cpu_s = sum(end["cpu_s"] - start["cpu_s"] for start, end in zip(started, ended))
    return {"server": f"flexadr, {args.workers} worker(s), PostgreSQL", "vens": len(names),
            "registration": "by the agents, measured" if args.register == "agents"
            else "through the store before the window (the agents take it up)",
            "registered": registered, "register_s": round(register_s, 1),
            "fleet_rss_mib": [end["rss_mib"] for end in ended],
            "fleet_gc": [{key: end[key] for key in ("gc_collections", "gc_max_pause_s",
                                                   "gc_total_pause_s")} for end in ended],
            "fleet_cpu_ms_per_ven_minute": round(
                1000 * fleet_cpu_s / len(names) / (window_s / 60), 2),
            "publish_s": round(publish_s, 2), **percentiles(delays), **phases}


def _phases(store, event, published: datetime) -> dict:
    """Where the time went, per VEN: publishing until the VTN handed the event out in
    a poll answer (OutboundMessage.delivered_at, the poll's arrival), and from then
    until its answer was stored (EventTarget.opt_at)."""
    from sqlmodel import select

    from vtn.store.models import EventTarget, OutboundMessage, Ven
    with store.session() as session:
        targeted = set(session.exec(select(EventTarget.ven_id)
                                    .where(EventTarget.event_id == event.event_id)).all())
        last_seen = dict(session.exec(select(Ven.ven_id, Ven.last_seen_at)).all())
        handed = dict(session.exec(select(OutboundMessage.ven_id, OutboundMessage.delivered_at)
                                   .where(OutboundMessage.created_at == event.created_at,
                                          OutboundMessage.delivered_at.is_not(None))).all())
        answered = dict(session.exec(select(EventTarget.ven_id, EventTarget.opt_at).where(
            EventTarget.event_id == event.event_id, EventTarget.opt_at.is_not(None))).all())
    delivered = percentiles([(at - published).total_seconds() for at in handed.values()])
    turnaround = percentiles([(answered[ven] - at).total_seconds()
                              for ven, at in handed.items() if ven in answered])
    # A VEN never handed the event out: did it stop polling (last seen before the
    # publication) or poll without being given it?
    missed = targeted - set(handed)
    seen = [(last_seen[ven] - published).total_seconds() for ven in missed if last_seen.get(ven)]
    return {"delivered": {k: v for k, v in delivered.items() if k != "answered"},
            "answer_after_delivery": {k: v for k, v in turnaround.items() if k != "answered"},
            "not_handed_out": len(missed),
            "handed_out_not_answered": len(set(handed) - set(answered)),
            "not_handed_out_last_seen_after_publish_s": sorted(round(s, 1) for s in seen)[:20]}


def _answers(store, event_id: str, published: datetime, total: int, timeout_s: float) -> list:
    from sqlmodel import select

    from vtn.store.models import EventTarget
    deadline = time.monotonic() + timeout_s
    while True:
        with store.session() as session:
            stamps = session.exec(select(EventTarget.opt_at).where(
                EventTarget.event_id == event_id, EventTarget.opt_at.is_not(None))).all()
        if len(stamps) >= total or time.monotonic() > deadline:
            return [(stamp - published).total_seconds() for stamp in stamps]
        time.sleep(1)


# --- stock openleadr ---------------------------------------------------------------------
def stock_server(root: Path, names: list[str], port: int, poll_s: int, commands, results) -> None:
    raise_fd_limit()
    quiet_logs()
    from certs.pki import fingerprint
    from openleadr import OpenADRServer
    lookup = {name: {"ven_id": name, "ven_name": name, "registration_id": f"reg-{name}",
                     "fingerprint": fingerprint((root / "vens" / f"{name}.crt").read_bytes())}
              for name in names}
    server = OpenADRServer(vtn_id="BENCH_VTN", cert=str(root / "vtn.crt"), key=str(root / "vtn.key"),
                           http_cert=str(root / "vtn.crt"), http_key=str(root / "vtn.key"),
                           http_ca_file=str(root / "ca.crt"), http_host="127.0.0.1",
                           http_port=port, ven_lookup=lambda ven_id: lookup.get(ven_id),
                           show_fingerprint=False,
                           requested_poll_freq=timedelta(seconds=poll_s))
    registered: set[str] = set()

    async def register(payload):
        registered.add(payload["ven_name"])
        return payload["ven_name"], f"reg-{payload['ven_name']}"
    server.add_handler("on_create_party_registration", register)
    answers: dict[str, float] = {}

    def answered(ven_id, event_id, opt_type):
        answers.setdefault(ven_id, time.time())

    async def main() -> None:
        with contextlib.redirect_stdout(io.StringIO()):     # openleadr's banner
            await server.run()
        results.send("listening")
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, commands.recv)          # "publish"
        published = time.time()
        start = datetime.now(timezone.utc) + timedelta(hours=2)
        for name in names:
            server.add_event(ven_id=name, signal_name="SIMPLE", signal_type="level",
                             intervals=[{"dtstart": start, "duration": timedelta(hours=1),
                                         "signal_payload": 1}],
                             callback=answered, market_context="oadr://bench")
        deadline = time.monotonic() + 2 * poll_s + 60
        while len(answers) < len(names) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        results.send({"registered": len(registered),
                      "delays": [stamp - published for stamp in answers.values()]})
        await server.stop()
    asyncio.run(main())


def stock_clients(root: Path, names: list[str], port: int, ready, stop) -> None:
    raise_fd_limit()
    quiet_logs()
    from openleadr import OpenADRClient
    from certs.pki import fingerprint

    async def opt_in(event):
        return "optIn"

    async def main() -> None:
        clients = []
        for name in names:
            client = OpenADRClient(ven_name=name, vtn_url=f"https://127.0.0.1:{port}/OpenADR2/Simple/2.0b",
                                   cert=str(root / "vens" / f"{name}.crt"),
                                   key=str(root / "vens" / f"{name}.key"), ca_file=str(root / "ca.crt"),
                                   vtn_fingerprint=fingerprint((root / "vtn.crt").read_bytes()),
                                   show_fingerprint=False)
            client.add_handler("on_event", opt_in)
            clients.append(client)
        starts = asyncio.Semaphore(50)

        async def start(client):
            async with starts:
                await client.run()
        await asyncio.gather(*(start(client) for client in clients))
        ready.send(sum(c.registration_id is not None for c in clients))
        await asyncio.get_running_loop().run_in_executor(None, stop.recv)
        await asyncio.gather(*(c.stop() for c in clients), return_exceptions=True)
    asyncio.run(main())


def run_stock(root: Path, names: list[str], args) -> dict:
    ctx = mp.get_context("spawn")
    port = _free_port()
    commands_rx, commands_tx = ctx.Pipe(duplex=False)
    results_rx, results_tx = ctx.Pipe(duplex=False)
    server = ctx.Process(target=stock_server, args=(root, names, port, args.poll_s, commands_rx,
                                                    results_tx), daemon=True)
    server.start()
    if not results_rx.poll(120):
        raise SystemExit("error: the stock server did not start")
    results_rx.recv()
    began = time.perf_counter()
    fleets = []
    for index in range(FLEETS):
        ready_rx, ready_tx = ctx.Pipe(duplex=False)
        stop_rx, stop_tx = ctx.Pipe(duplex=False)
        process = ctx.Process(target=stock_clients, args=(root, names[index::FLEETS], port,
                                                          ready_tx, stop_rx), daemon=True)
        process.start()
        fleets.append((process, ready_rx, stop_tx))
    try:
        for _, ready_rx, _ in fleets:
            if not ready_rx.poll(REGISTER_S):
                raise SystemExit("error: stock clients did not register in time")
            ready_rx.recv()
        register_s = time.perf_counter() - began
        time.sleep(settle_s(args))
        commands_tx.send("publish")
        if not results_rx.poll(2 * args.poll_s + 120):
            raise SystemExit("error: the stock server did not report")
        result = results_rx.recv()
    finally:
        for process, _, stop_tx in fleets:
            stop_tx.send("stop")
        for process, _, _ in fleets:
            process.join(120)
            if process.is_alive():
                process.kill()
        server.join(30)
    return {"server": "stock openleadr OpenADRServer, 1 process", "vens": len(names),
            "registered": result["registered"], "register_s": round(register_s, 1),
            **percentiles(result["delays"])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.fanout", description=__doc__.split("\n")[0])
    parser.add_argument("--vens", type=int, default=1000)
    parser.add_argument("--poll-s", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2, help="our VTN's worker processes")
    parser.add_argument("--only", choices=("ours", "stock"))
    parser.add_argument("--register", choices=("agents", "store"), default="agents",
                        help="ours: the agents register (measured), or the VENs are registered "
                             "through the store before the window and the agents take it up")
    parser.add_argument("--stock-vens", type=int, default=0,
                        help="stock's VEN count, when fewer than --vens (stock registering "
                             "10,000 clients takes longer than the bench; default: --vens)")
    parser.add_argument("--database-url", default=os.environ.get("FLEXADR_BENCH_DATABASE_URL",
                                                                 DEFAULT_URL))
    args = parser.parse_args(argv)
    if not 2 <= args.vens <= 20000 or not 5 <= args.poll_s <= 600 or not 1 <= args.workers <= 16 \
            or not 0 <= args.stock_vens <= args.vens:
        parser.error("--vens 2..20000, --poll-s 5..600, --workers 1..16, --stock-vens 0..--vens")
    names = [f"fan-{i:05d}" for i in range(args.vens)]
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-fanout-") as tmp:
        work = Path(tmp)
        root = work / "pki"
        make_pki(root, names, "ecdsa")
        if args.only in (None, "ours"):
            runs.append(run_ours(work, root, names, args))
        if args.only in (None, "stock"):
            runs.append(run_stock(root, names[:args.stock_vens or args.vens], args))
    for run in runs:
        run["within_one_poll"] = run.get("last_s", float("inf")) <= args.poll_s \
            and run["answered"] == run["vens"]
        if "delivered" in run:
            # What a pull model can promise: each VEN handed the event at its first poll
            # after the publication's commit (one that polled just before the commit
            # answers one interval and a round trip after it).
            run["handed_out_at_first_poll_after_commit"] = run["answered"] == run["vens"] \
                and run["delivered"].get("last_s", float("inf")) - run["publish_s"] <= args.poll_s
    print(json.dumps({"bench": "fanout", "cores": os.cpu_count(),
                      "argv": sys.argv[1:] if argv is None else argv, "poll_s": args.poll_s,
                      "fleet_processes": FLEETS, "runs": runs}), flush=True)
    return 0 if all(run["answered"] == run["vens"] for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
