"""Fleet benchmark: N VEN agents in one process against a local VTN.

Prints, for the flexadr fleet (ven.fleet.Fleet: VenAgent = openleadr client +
sim adapter + local SQLite store + telemetry recorder + uplink) and, in the
same run, for the same N of STOCK openleadr OpenADRClient instances (no
project code, no reports):

- registration time, total and per agent (throughput and per-agent latency);
- resident memory per agent (RSS delta over an empty process / N);
- CPU seconds per agent per minute while polling at the interval the VTN asks
  for (--poll-s), measured over a bounded window (--window-s).

The VTN (vtn.service.Vtn, mutual TLS, signed messages, SQLite store) runs in
its own process and each VEN population in another, so the VEN-side figures
include nothing of the VTN. Everything is on 127.0.0.1.

The development PKI (ECDSA P-256) is cached under var/bench/pki and reused:
issuing 10,000 certificates takes a while.

    .venv/bin/python -m bench.fleet --agents 1000 --window-s 120 --poll-s 60
"""
from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import multiprocessing as mp
import os
import platform
import resource
import socket
import statistics
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
WORKDIR = ROOT / "var" / "bench"
START_CONCURRENCY = 50          # Fleet's default: at most 50 registrations in flight
MAX_REGISTRATION_S = 3600.0     # every phase is bounded in time

# Device mix of the demo: managed-charging EVs, V2G EVs, home batteries in turn.
KINDS: dict[str, dict[str, Any]] = {
    "ev_managed": dict(capacity_kwh=75.0, soc_pct=35.0, max_charge_kw=7.2, charge_target_pct=90.0),
    "ev_v2g": dict(capacity_kwh=98.0, soc_pct=60.0, max_charge_kw=11.5, max_discharge_kw=9.6,
                   charge_target_pct=90.0),
    "battery": dict(capacity_kwh=13.5, soc_pct=80.0, max_charge_kw=5.0, max_discharge_kw=5.0,
                    charge_target_pct=None),
}
PROGRAM = {"ev_managed": "managed_charging", "ev_v2g": "connected_solutions",
           "battery": "connected_solutions"}


@dataclass(frozen=True)
class Plan:
    names: list[str]
    kinds: list[str]
    pki_root: Path
    port: int
    poll_s: int
    window_s: float
    vtn_fingerprint: str
    stock_signer: bool = False      # flexadr agents sign with openleadr's create_message
    trace_memory: bool = False      # tracemalloc the flexadr agents (slower, more memory)
    profile: Path | None = None     # cProfile the flexadr agents' window into this file

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/OpenADR2/Simple/2.0b"


@dataclass
class PhaseResult:
    label: str
    agents: int
    registered: int = 0
    construct_s: float = 0.0
    register_s: float = 0.0
    latency_median_s: float = 0.0
    latency_p95_s: float = 0.0
    rss_empty_mib: float = 0.0
    rss_registered_mib: float = 0.0
    rss_steady_mib: float = 0.0
    window_s: float = 0.0
    cpu_window_s: float = 0.0
    polls_in_window: int = 0
    messages_in_window: dict[str, int] = field(default_factory=dict)
    top_allocations: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def mib_per_agent(self) -> float:
        return (self.rss_steady_mib - self.rss_empty_mib) / self.agents

    @property
    def cpu_ms_per_agent_minute(self) -> float:
        return 1000 * self.cpu_window_s / self.agents / (self.window_s / 60) if self.window_s else 0.0


# --- process facts -------------------------------------------------------------
def rss_mib() -> float:
    """Resident set size of this process, from /proc (no psutil needed)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def cpu_s() -> float:
    times = os.times()
    return times.user + times.system


class GcPauses:
    """The garbage collector's pauses in this process (gc.callbacks): a full collection
    walks every tracked object, and thousands of agents hold millions of them; a pause
    delays every poll and reading due meanwhile."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.max_s = [0.0, 0.0, 0.0]
        self.total_s = 0.0
        self._began = 0.0

    def install(self) -> "GcPauses":
        import gc
        gc.callbacks.append(self._callback)
        return self

    def _callback(self, phase: str, info: dict) -> None:
        import time
        if phase == "start":
            self._began = time.perf_counter()
            return
        pause, generation = time.perf_counter() - self._began, info["generation"]
        self.count[generation] += 1
        self.max_s[generation] = max(self.max_s[generation], pause)
        self.total_s += pause

    def figures(self) -> dict:
        return {"gc_collections": self.count, "gc_max_pause_s": [round(s, 3) for s in self.max_s],
                "gc_total_pause_s": round(self.total_s, 2)}


def raise_fd_limit() -> None:
    # Every agent holds its own TLS connection while it talks to the VTN.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def quiet_logs() -> None:
    import openleadr  # noqa: F401  (its client module sets its logger to INFO on import)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("openleadr", "apscheduler", "aiohttp.access", "ven.agent", "vtn.service"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # Stopping thousands of clients cancels their in-flight polls; APScheduler logs each.
    logging.getLogger("apscheduler").setLevel(logging.CRITICAL)


# --- the plan --------------------------------------------------------------------
def ven_plan(count: int) -> tuple[list[str], list[str]]:
    kinds = list(KINDS)
    picked = [kinds[i % len(kinds)] for i in range(count)]
    return [f"bench-{i + 1:05d}" for i in range(count)], picked


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the VTN process -------------------------------------------------------------
def vtn_process(plan: Plan, ready, stop) -> None:
    """Enrol every VEN in one transaction, serve until `stop` is set, report VTN CPU."""
    raise_fd_limit()
    quiet_logs()
    from certs.pki import CertPaths
    from flexadr.clock import SystemClock
    from vtn.service import Vtn, VtnConfig
    from vtn.store import Store, Ven

    state = WORKDIR / "state"
    state.mkdir(parents=True, exist_ok=True)
    db = state / "vtn.sqlite"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    store = Store(f"sqlite:///{db}")
    with store.session() as session:
        for name, kind in zip(plan.names, plan.kinds):
            cert = CertPaths(plan.pki_root / "vens" / f"{name}.crt", plan.pki_root / "vens" / f"{name}.key")
            session.add(Ven(ven_id=name, ven_name=name, fingerprint=cert.fingerprint,
                            program_id=PROGRAM[kind], device_kind=kind))
        session.commit()
    root = plan.pki_root
    vtn = Vtn(VtnConfig("FLEXADR_BENCH_VTN", "127.0.0.1", plan.port, root / "vtn.crt", root / "vtn.key",
                        root / "ca.crt", poll_interval=timedelta(seconds=plan.poll_s)),
              store, SystemClock())

    async def serve() -> None:
        await vtn.start()
        ready.send(cpu_s())
        loop = asyncio.get_running_loop()
        while not await loop.run_in_executor(None, stop.poll, 1.0):
            pass
        stop.recv()
        await vtn.stop()

    asyncio.run(serve())
    ready.send(cpu_s())


# --- the VEN processes -----------------------------------------------------------
class MessageCounter:
    """Counts outgoing requests per OpenADR service by wrapping the client class once
    (not each instance, so the count costs no per-agent memory)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def install(self, client_class) -> None:
        original = client_class._perform_request
        counts = self.counts

        async def counted(client, service, message):
            counts[service] = counts.get(service, 0) + 1
            return await original(client, service, message)

        client_class._perform_request = counted


async def _report_progress(label: str, count: Callable[[], int], total: int) -> None:
    """Registration progress on stderr every 30 s: 10,000 agents take minutes."""
    began = time.perf_counter()
    while True:
        await asyncio.sleep(30)
        print(f"  {label}: {count()} of {total} registered after {time.perf_counter() - began:.0f} s",
              file=sys.stderr, flush=True)


def _latencies(durations: list[float]) -> tuple[float, float]:
    if not durations:
        return 0.0, 0.0
    ordered = sorted(durations)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


async def _measure_window(result: PhaseResult, counter: MessageCounter, window_s: float,
                          profile: Path | None = None) -> None:
    gc.collect()
    result.rss_registered_mib = rss_mib()
    counter.counts.clear()
    profiler = None
    if profile is not None:
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    cpu0, wall0 = cpu_s(), time.perf_counter()
    await asyncio.sleep(window_s)
    result.cpu_window_s = cpu_s() - cpu0
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(str(profile))
    result.window_s = time.perf_counter() - wall0
    result.messages_in_window = dict(counter.counts)
    result.polls_in_window = counter.counts.get("OadrPoll", 0)
    gc.collect()
    result.rss_steady_mib = rss_mib()


def top_allocations(agents: int, limit: int = 20) -> list[str]:
    """Where the Python-level memory lives, per agent, grouped by source file.

    tracemalloc sees only allocations made through Python's allocator; OpenSSL's
    (SSL contexts, connections) show up only in RSS.
    """
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)])
    stats = snapshot.statistics("filename")
    total = sum(stat.size for stat in stats)
    lines = [f"tracemalloc total {total / agents / 1024:.1f} KiB/agent (Python allocations only)"]
    for stat in stats[:limit]:
        name = stat.traceback[0].filename
        short = name.split("site-packages/")[-1] if "site-packages/" in name else name.replace(str(ROOT) + "/", "")
        lines.append(f"  {stat.size / agents / 1024:8.2f} KiB/agent  {stat.count / agents:7.1f} blocks/agent  {short}")
    return lines


async def flexadr_phase(plan: Plan, result: PhaseResult) -> None:
    from flexadr.clock import SystemClock
    from ven.agent import AgentConfig, VenAgent
    from ven.fleet import Fleet
    from ven.openadr20b.client import FlexClient
    from ven.policy import OwnerPrefs
    from ven.store import LocalDatabase

    state = WORKDIR / "state" / "vens.sqlite"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{state}{suffix}").unlink(missing_ok=True)
    counter = MessageCounter()
    counter.install(FlexClient)
    durations: list[float] = []
    original_start = VenAgent.start

    async def timed_start(agent):
        began = time.perf_counter()
        await original_start(agent)
        durations.append(time.perf_counter() - began)

    VenAgent.start = timed_start
    if plan.stock_signer:
        import ven.openadr20b.client
        ven.openadr20b.client.client_signer = lambda create_message: create_message
    gc.collect()
    result.rss_empty_mib = rss_mib()
    if plan.trace_memory:
        tracemalloc.start()
    began = time.perf_counter()
    configs = []
    for name, kind in zip(plan.names, plan.kinds):
        spec = dict(KINDS[kind], kind=kind)
        configs.append(AgentConfig(
            ven_name=name, vtn_url=plan.url,
            cert=plan.pki_root / "vens" / f"{name}.crt", key=plan.pki_root / "vens" / f"{name}.key",
            ca_file=plan.pki_root / "ca.crt", vtn_fingerprint=plan.vtn_fingerprint, adapter="sim",
            adapter_config=spec, capacity_kwh=spec["capacity_kwh"],
            max_discharge_kw=spec.get("max_discharge_kw", 0.0), prefs=OwnerPrefs(min_soc_pct=20.0),
            state_url=f"sqlite:///{state}"))
    fleet = Fleet(configs, SystemClock(), max_concurrent_starts=START_CONCURRENCY,
                  database=LocalDatabase(f"sqlite:///{state}"))
    result.construct_s = time.perf_counter() - began
    began = time.perf_counter()
    progress = asyncio.create_task(_report_progress(
        "flexadr", lambda: sum(agent.registered for agent in fleet.agents), len(fleet.agents)))
    async with asyncio.timeout(MAX_REGISTRATION_S):
        await fleet.start()
    progress.cancel()
    result.register_s = time.perf_counter() - began
    result.registered = sum(agent.registered for agent in fleet.agents)
    result.latency_median_s, result.latency_p95_s = _latencies(durations)
    await _measure_window(result, counter, plan.window_s, plan.profile)
    if plan.trace_memory:
        result.top_allocations = top_allocations(len(fleet.agents))
        tracemalloc.stop()
    try:
        async with asyncio.timeout(120):
            await fleet.stop()
    except TimeoutError:
        pass


async def stock_phase(plan: Plan, result: PhaseResult) -> None:
    from openleadr import OpenADRClient

    counter = MessageCounter()
    counter.install(OpenADRClient)
    gc.collect()
    result.rss_empty_mib = rss_mib()
    began = time.perf_counter()
    clients = [OpenADRClient(ven_name=name, vtn_url=plan.url,
                             cert=str(plan.pki_root / "vens" / f"{name}.crt"),
                             key=str(plan.pki_root / "vens" / f"{name}.key"),
                             ca_file=str(plan.pki_root / "ca.crt"),
                             vtn_fingerprint=plan.vtn_fingerprint, show_fingerprint=False)
               for name in plan.names]
    result.construct_s = time.perf_counter() - began
    starts = asyncio.Semaphore(START_CONCURRENCY)
    durations: list[float] = []

    async def start(client) -> None:
        async with starts:
            t0 = time.perf_counter()
            await client.run()
            durations.append(time.perf_counter() - t0)

    began = time.perf_counter()
    progress = asyncio.create_task(_report_progress(
        "stock", lambda: sum(c.registration_id is not None for c in clients), len(clients)))
    async with asyncio.timeout(MAX_REGISTRATION_S):
        await asyncio.gather(*(start(client) for client in clients))
    progress.cancel()
    result.register_s = time.perf_counter() - began
    result.registered = sum(client.registration_id is not None for client in clients)
    result.latency_median_s, result.latency_p95_s = _latencies(durations)
    await _measure_window(result, counter, plan.window_s)
    try:
        async with asyncio.timeout(120):
            await asyncio.gather(*(c.stop() for c in clients if c.client_session), return_exceptions=True)
    except TimeoutError:
        pass


def ven_process(label: str, plan: Plan, out) -> None:
    raise_fd_limit()
    quiet_logs()
    result = PhaseResult(label=label, agents=len(plan.names))
    phase = flexadr_phase if label == "flexadr" else stock_phase
    try:
        asyncio.run(phase(plan, result))
    except BaseException as err:        # report, never hang the parent
        result.error = f"{type(err).__name__}: {err}"
    out.send(asdict(result))


def run_phase(ctx, label: str, plan: Plan) -> PhaseResult:
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=ven_process, args=(label, plan, send), name=f"bench-{label}")
    process.start()
    budget = MAX_REGISTRATION_S + plan.window_s + 300
    if not receive.poll(budget):
        process.kill()
        return PhaseResult(label=label, agents=len(plan.names), error=f"no result within {budget:.0f} s")
    data = receive.recv()
    process.join(60)
    data.pop("mib_per_agent", None)
    return PhaseResult(**data)


# --- report ------------------------------------------------------------------------
def machine_facts() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    from importlib.metadata import version
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"openleadr {version('openleadr')}, {platform.system()} {platform.release()}")


def format_results(results: list[PhaseResult], vtn_cpu_s: float) -> str:
    header = (f"{'VENs':<8} {'N':>6} {'reg ok':>7} {'build s':>8} {'register s':>11} "
              f"{'ms/agent':>9} {'p50 s':>6} {'p95 s':>6} {'MiB/agent':>10} {'KiB/agent':>10} "
              f"{'CPU ms/agent/min':>17} {'polls':>6}")
    lines = [header, "-" * len(header)]
    for r in results:
        if r.error:
            lines.append(f"{r.label:<8} {r.agents:>6} FAILED: {r.error}")
            continue
        lines.append(
            f"{r.label:<8} {r.agents:>6} {r.registered:>7} {r.construct_s:>8.1f} {r.register_s:>11.1f} "
            f"{1000 * r.register_s / r.agents:>9.1f} {r.latency_median_s:>6.2f} {r.latency_p95_s:>6.2f} "
            f"{r.mib_per_agent:>10.3f} {1024 * r.mib_per_agent:>10.0f} "
            f"{r.cpu_ms_per_agent_minute:>17.2f} {r.polls_in_window:>6}")
    lines.append("")
    for r in results:
        if not r.error:
            lines.append(f"{r.label}: RSS empty {r.rss_empty_mib:.0f} MiB, registered "
                         f"{r.rss_registered_mib:.0f} MiB, after window {r.rss_steady_mib:.0f} MiB; "
                         f"window {r.window_s:.0f} s, VEN CPU {r.cpu_window_s:.1f} s, "
                         f"requests {r.messages_in_window}")
    lines.append(f"VTN process CPU over the whole run: {vtn_cpu_s:.1f} s")
    for r in results:
        lines.extend(r.top_allocations)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.fleet",
        description="Start N VEN agents in one process against a local VTN (own process, "
                    "mutual TLS, signed messages) and print registration time, resident memory "
                    "per agent and CPU per agent at steady polling, beside the same N of stock "
                    "openleadr clients.")
    parser.add_argument("--agents", type=int, default=1000, help="number of VENs (default 1000)")
    parser.add_argument("--window-s", type=float, default=120.0,
                        help="steady-polling measurement window in seconds (default 120)")
    parser.add_argument("--poll-s", type=int, default=60,
                        help="poll interval the VTN asks for, seconds (default 60)")
    parser.add_argument("--only", choices=("flexadr", "stock"), help="run one population only")
    parser.add_argument("--stock-signer", action="store_true",
                        help="flexadr agents sign with openleadr's create_message (the old way)")
    parser.add_argument("--trace-memory", action="store_true",
                        help="tracemalloc the flexadr agents and print where Python memory goes")
    parser.add_argument("--profile", type=Path,
                        help="cProfile the flexadr agents over the window into this file "
                             "(read it with python -m pstats)")
    args = parser.parse_args(argv)
    if not 1 <= args.agents <= 20000:
        parser.error("--agents must be within 1..20000")
    if not 1 <= args.window_s <= 3600 or not 1 <= args.poll_s <= 3600:
        parser.error("--window-s and --poll-s must be within 1..3600")

    from certs.pki import ensure_dev_pki, fingerprint
    names, kinds = ven_plan(args.agents)
    began = time.perf_counter()
    pki = ensure_dev_pki(WORKDIR / "pki", names)
    print(f"PKI: {args.agents} VEN certificates ready under {pki.root} in "
          f"{time.perf_counter() - began:.1f} s (cached, reused by later runs)", flush=True)
    plan = Plan(names, kinds, pki.root, free_port(), args.poll_s, args.window_s,
                fingerprint(pki.vtn.cert.read_bytes()), args.stock_signer, args.trace_memory,
                args.profile.resolve() if args.profile else None)

    ctx = mp.get_context("spawn")
    ready_rx, ready_tx = ctx.Pipe(duplex=False)
    stop_rx, stop_tx = ctx.Pipe(duplex=False)
    vtn = ctx.Process(target=vtn_process, args=(plan, ready_tx, stop_rx), name="bench-vtn")
    vtn.start()
    if not ready_rx.poll(600):
        vtn.kill()
        print("the VTN did not start within 600 s", file=sys.stderr)
        return 1
    vtn_cpu0 = ready_rx.recv()
    results = []
    try:
        for label in ("flexadr", "stock"):
            if args.only and label != args.only:
                continue
            print(f"running {label} with {args.agents} agents ...", flush=True)
            results.append(run_phase(ctx, label, plan))
    finally:
        stop_tx.send(True)
        vtn_cpu = ready_rx.recv() - vtn_cpu0 if ready_rx.poll(120) else float("nan")
        vtn.join(30)
        if vtn.is_alive():
            vtn.kill()
    print()
    print(f"machine: {machine_facts()}")
    print(f"VTN asks for a poll every {args.poll_s} s; CPU measured over {args.window_s:.0f} s "
          f"after all agents registered; at most {START_CONCURRENCY} registrations in flight")
    print(format_results(results, vtn_cpu))
    return 0 if all(r.error is None and r.registered == r.agents for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
