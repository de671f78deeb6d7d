"""Signed polls per second with 1, 2, 3 VTN workers behind nginx on PostgreSQL, one run.

    .venv/bin/python -m bench.scaleout --vens 200 --concurrency 16 --seconds 10 \\
        [--workers 1,2,3] [--database-url postgresql://flexadr:flexadr@127.0.0.1/flexadr]

For each worker count: a fresh database (every VEN enrolled and registered, empty
poll queues), `vtn serve --workers N` (tls_profile "openadr"), and nginx with
deploy/nginx/openadr-workers.conf (TLS passed through to the workers' shared port).
The generator (bench.poll's VENs: each its own certificate, signer and keep-alive
connection, C polls in flight) polls through nginx for the window. The baseline in
the same run is one worker without nginx (the VENs connect to it directly).

CPU per poll is measured per process from /proc: the workers, nginx, and the
PostgreSQL backends serving the benchmark database. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.poll import PATH, Ven, _free_port, _process_cpu_s, make_pki

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "nginx" / "openadr-workers.conf"
DEFAULT_URL = "postgresql://flexadr:flexadr@127.0.0.1:5432/flexadr"
NGINX = "/usr/sbin/nginx"
STATS_FLUSH_S = 1.5


def fresh_database(base_url: str, name: str) -> str:
    import psycopg
    with psycopg.connect(base_url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')
    return base_url.rsplit("/", 1)[0] + f"/{name}"


def enrol(url: str, root: Path, names: list[str], registered: bool = True) -> None:
    from certs.pki import fingerprint
    from flexadr.clock import SystemClock
    from vtn.store import Store, Ven
    store = Store(url)
    now = SystemClock().now()
    with store.session() as session:
        for name in names:
            cert = (root / "vens" / f"{name}.crt").read_bytes()
            session.add(Ven(ven_id=name, ven_name=name, fingerprint=fingerprint(cert),
                            program_id="connected_solutions", device_kind="battery",
                            registration_id=f"reg-{name}" if registered else None,
                            registered_at=now if registered else None))
        session.commit()
    store.close()


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def backends(url: str) -> list[int]:
    import psycopg
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url, autocommit=True) as connection:
        rows = connection.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s"
                                  " AND pid <> pg_backend_pid()", (name,)).fetchall()
    return [pid for (pid,) in rows]


def database_counts(url: str) -> dict[str, int]:
    """Commits and rows written so far in the benchmark database (pg_stat_database)."""
    import psycopg
    name = url.rsplit("/", 1)[1]
    time.sleep(STATS_FLUSH_S)       # backends report their counts at most once a second
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SELECT pg_stat_clear_snapshot()")
        commits, rows = connection.execute(
            "SELECT xact_commit, tup_inserted + tup_updated + tup_deleted FROM pg_stat_database"
            " WHERE datname = %s", (name,)).fetchone()
    return {"commits": commits, "rows_written": rows}


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def cpu(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            out[pid] = _process_cpu_s(pid)
        except (FileNotFoundError, ProcessLookupError):
            out[pid] = 0.0
    return out


def start_vtn(work: Path, label: str, root: Path, url: str, workers: int, port: int,
              poll_s: int = 60, tls_profile: str | None = None) -> subprocess.Popen:
    """`vtn serve --workers N` on database `url`, on 127.0.0.1:port (its log: work/label.log),
    once it listens."""
    config = work / f"{label}.toml"
    config.write_text(
        f'cert = "{root / "vtn.crt"}"\nkey = "{root / "vtn.key"}"\nca_file = "{root / "ca.crt"}"\n'
        f'database = "{url}"\nport = {port}\nworkers = {workers}\npoll_interval_s = {poll_s}\n'
        f'vtn_id = "BENCH_VTN"\n' + (f'tls_profile = "{tls_profile}"\n' if tls_profile else ""))
    with (work / f"{label}.log").open("w") as log:
        serve = subprocess.Popen([sys.executable, "-m", "vtn.cli", "serve", "--config", str(config)],
                                 env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=log,
                                 stderr=subprocess.STDOUT)
    try:
        wait_listening(port)
    except SystemExit:
        serve.terminate()
        raise
    return serve


def worker_pids(serve: subprocess.Popen, workers: int) -> list[int]:
    return children(serve.pid) if workers > 1 else [serve.pid]


def wait_listening(port: int, timeout_s: float = 60) -> None:
    import socket
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise SystemExit(f"error: nothing listens on {port} after {timeout_s:.0f} s")


async def polls(port: int, root: Path, names: list[str], concurrency: int, seconds: float,
                measure) -> dict:
    """Keep-alive signed polls for `seconds`; `measure()` samples CPU before and after.

    C pollers take the VEN that waited longest from one queue, so every VEN (and so
    every worker its connection landed on) gets its share."""
    vens = [Ven(root, name, keep_alive=True) for name in names]
    url = f"https://127.0.0.1:{port}{PATH}"
    try:
        await asyncio.gather(*(ven.poll(url) for ven in vens))     # every VEN connects
        waiting: asyncio.Queue = asyncio.Queue()
        for ven in vens:
            waiting.put_nowait(ven)
        latencies: list[float] = []
        failed = [0]
        before, began = measure(), time.perf_counter()
        await asyncio.gather(*(_poller(waiting, url, began + seconds, latencies, failed)
                               for _ in range(concurrency)))
        elapsed, after = time.perf_counter() - began, measure()
    finally:
        await asyncio.gather(*(ven.session.close() for ven in vens))
    latencies.sort()
    count = len(latencies)
    return {"polls": count, "errors": failed[0], "seconds": elapsed,
            "p50_ms": round(1000 * latencies[count // 2], 2) if count else None,
            "p99_ms": round(1000 * latencies[int(count * 0.99)], 2) if count else None,
            "cpu": {group: {pid: after["cpu"][group][pid] - before["cpu"][group].get(pid, 0.0)
                            for pid in after["cpu"][group]} for group in after["cpu"]},
            "db": {key: after["db"][key] - before["db"][key] for key in after["db"]}}


async def _poller(waiting: asyncio.Queue, url: str, until: float, latencies: list[float],
                  failed: list[int]) -> None:
    while (now := time.perf_counter()) < until:
        ven = await waiting.get()
        failed[0] += not await ven.poll(url)
        latencies.append(time.perf_counter() - now)
        waiting.put_nowait(ven)


def run_one(workers: int, behind_nginx: bool, work: Path, root: Path, names: list[str],
            args) -> dict:
    label = f"{workers}w-{'nginx' if behind_nginx else 'direct'}"
    url = fresh_database(args.database_url, f"flexadr_bench_scaleout_{workers}")
    enrol(url, root, names)
    vtn_port, front_port = _free_port(), _free_port()
    serve = start_vtn(work, label, root, url, workers, vtn_port, tls_profile="openadr")
    log = (work / f"{label}-nginx.log").open("w")
    front = None
    try:
        port = vtn_port
        if behind_nginx:
            run_dir = work / label
            run_dir.mkdir()
            conf = run_dir / "nginx.conf"
            conf.write_text(string.Template(TEMPLATE.read_text()).substitute(
                run_dir=run_dir, listen_host="127.0.0.1", listen_port=front_port,
                vtn_host="127.0.0.1", vtn_port=vtn_port, worker_connections=8192,
                worker_rlimit_nofile=16384))
            front = subprocess.Popen([NGINX, "-e", str(run_dir / "error.log"), "-p", str(run_dir),
                                      "-c", str(conf), "-g", "daemon off;"], stdout=log,
                                     stderr=subprocess.STDOUT)
            wait_listening(front_port)
            port = front_port
        time.sleep(1)
        pids = {"workers": worker_pids(serve, workers),
                "nginx": ([front.pid] + children(front.pid)) if front else []}

        def measure():
            return {"cpu": {**{group: cpu(p) for group, p in pids.items()},
                            "postgresql": cpu(backends(url))},
                    "db": database_counts(url)}
        figures = asyncio.run(polls(port, root, names, args.concurrency, args.seconds, measure))
        figures["rss_mib"] = [rss_mib(pid) for pid in pids["workers"]]
    finally:
        for process in (front, serve):
            if process is not None:
                process.terminate()
                process.wait(40)
        log.close()
    count = max(figures["polls"], 1)
    per_worker = sorted(figures["cpu"]["workers"].values(), reverse=True)
    totals = {group: sum(values.values()) for group, values in figures["cpu"].items()}
    return {"workers": workers, "front": "nginx" if behind_nginx else "direct",
            "polls": figures["polls"], "errors": figures["errors"],
            "polls_per_s": round(figures["polls"] / figures["seconds"], 1),
            "polls_per_s_per_worker": round(figures["polls"] / figures["seconds"] / workers, 1),
            "worker_cpu_s": [round(value, 2) for value in per_worker],
            "worker_rss_mib": figures["rss_mib"],
            "cpu_ms_per_poll": {group: round(1000 * value / count, 3)
                                for group, value in totals.items()},
            "db_per_poll": {key: round(value / count, 2) for key, value in figures["db"].items()},
            "p50_ms": figures["p50_ms"], "p99_ms": figures["p99_ms"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.scaleout", description=__doc__.split("\n")[0])
    parser.add_argument("--vens", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", default="1,2,3", help="worker counts, comma-separated")
    parser.add_argument("--database-url", default=os.environ.get("FLEXADR_BENCH_DATABASE_URL",
                                                                 DEFAULT_URL))
    args = parser.parse_args(argv)
    try:
        counts = [int(part) for part in args.workers.split(",")]
    except ValueError:
        parser.error(f"--workers: not a list of numbers: {args.workers!r}")
    if not 1 <= args.vens <= 5000 or not all(1 <= c <= 16 for c in counts):
        parser.error("--vens must be within 1..5000 and each worker count within 1..16")
    names = [f"scale-{i:05d}" for i in range(args.vens)]
    with tempfile.TemporaryDirectory(prefix="bench-scaleout-") as tmp:
        work = Path(tmp)
        root = work / "pki"
        make_pki(root, names, "ecdsa")
        runs = [run_one(1, False, work, root, names, args)]       # the baseline
        runs += [run_one(count, True, work, root, names, args) for count in counts]
    print(json.dumps({"bench": "scaleout", "cores": os.cpu_count(), "python": platform.python_version(),
                      "argv": sys.argv[1:] if argv is None else argv, "vens": args.vens,
                      "concurrency": args.concurrency, "runs": runs}), flush=True)
    return 0 if all(run["errors"] == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
