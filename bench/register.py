"""N VENs coming online: registrations per second and VTN CPU per VEN, ours beside stock
openleadr in one run.

    .venv/bin/python -m bench.register --vens 1000 --concurrency 16 [--key rsa] [--workers 2]

Each server runs in its own process pinned to CPU 0, the generator here on CPU 1 (as
bench/poll.py). Each VEN has its own certificate and keep-alive connection and sends,
signed, what openleadr 0.5.36's client sends to come online (OpenADRClient.run):
oadrQueryRegistration, oadrCreatePartyRegistration, oadrRegisterReport (one
TELEMETRY_USAGE report of two points, made by OpenADRClient.add_report), oadrCreatedReport
when the VTN requested reports, oadrRequestEvent and a first oadrPoll. C VENs in flight.

- **flexadr**: `vtn.service.Vtn` on SQLite, every VEN enrolled but not registered;
- **stock**: `openleadr.OpenADRServer` with `on_create_party_registration` and
  `ven_lookup` from dicts (no store);
- **flexadr, W workers**: `vtn serve --workers W` on a fresh PostgreSQL database
  (--database-url), every VEN enrolled but not registered; the workers are not pinned
  (they share both CPUs with the generator and PostgreSQL); server CPU is the workers'
  and the database backends'. `--workers 0` leaves it out.

generator_cpu_ms_per_s: the generator's own CPU per second of the run (near 1,000: it,
not the server, sets the pace). One JSON line per server, then a summary with the ratios, the core count and the command line.
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Callable

from certs.pki import fingerprint as cert_fingerprint
from flexadr import oadr_xml
from bench.poll import (VTN_ID, Ven, _free_port, _pin, _process_cpu_s, _quiet, _run_until,
                        make_pki, run_in_process, serve_flexadr)
from bench.scaleout import (DEFAULT_URL, backends, cpu, enrol, fresh_database, start_vtn,
                            worker_pids)

BASE = "/OpenADR2/Simple/2.0b"


def serve_stock(root: Path, vens: list[str], port: int, ready, stop) -> None:
    _pin(0)
    _quiet()
    from openleadr import OpenADRServer

    by_fingerprint = {cert_fingerprint((root / "vens" / f"{name}.crt").read_bytes()): name
                      for name in vens}
    lookup = {name: {"ven_id": name, "ven_name": name, "fingerprint": fingerprint,
                     "registration_id": f"reg-{name}"}
              for fingerprint, name in by_fingerprint.items()}

    def on_create_party_registration(payload: dict):
        name = by_fingerprint.get(payload.get("fingerprint"))
        return (name, f"reg-{name}") if name == payload.get("ven_name") else False

    server = OpenADRServer(vtn_id=VTN_ID, cert=str(root / "vtn.crt"), key=str(root / "vtn.key"),
                           http_cert=str(root / "vtn.crt"), http_key=str(root / "vtn.key"),
                           http_ca_file=str(root / "ca.crt"), http_host="127.0.0.1",
                           http_port=port, ven_lookup=lambda ven_id: lookup.get(ven_id),
                           requested_poll_freq=timedelta(seconds=60), show_fingerprint=False)
    server.add_handler("on_create_party_registration", on_create_party_registration)
    server.add_handler("on_poll", lambda ven_id: None)
    _run_until(server, ready, stop, start=lambda s: s.run())


def _reports(ven_id: str) -> list:
    """The report registration a stock VEN with two measured points sends."""
    from openleadr import OpenADRClient
    client = OpenADRClient(ven_name=ven_id, vtn_url="https://unused")
    for r_id, measurement in (("kw", "power_real"), ("kwh", "energy_real")):
        client.add_report(callback=lambda: 0.0, resource_id="device", r_id=r_id,
                          measurement=measurement, report_specifier_id="telemetry",
                          sampling_rate=timedelta(minutes=15), report_duration=timedelta(hours=1))
    return client.reports


class Registering(Ven):
    """A VEN of the generator that comes online as openleadr's client does."""

    async def send(self, url: str, service: str, message_type: str, **payload) -> tuple[str, dict]:
        body = self.sign(message_type, **payload)
        async with self.session.post(f"{url}/{service}", data=body,
                                     headers={"Content-Type": "application/xml"}) as response:
            text = await response.read()
        if response.status != 200:
            raise RuntimeError(f"{message_type}: HTTP {response.status}")
        return oadr_xml.payload(oadr_xml.parse(text)) if text else ("", {})

    async def come_online(self, url: str, reports: list) -> bool:
        await self.send(url, "EiRegisterParty", "oadrQueryRegistration", request_id="q1")
        kind, created = await self.send(
            url, "EiRegisterParty", "oadrCreatePartyRegistration", request_id="c1",
            ven_name=self.name, http_pull_model=True, xml_signature=True,
            report_only=False, profile_name="2.0b", transport_name="simpleHttp")
        ven_id = created.get("ven_id")
        if kind != "oadrCreatedPartyRegistration" or not ven_id:
            return False
        _, registered = await self.send(url, "EiReport", "oadrRegisterReport", request_id="r1",
                                        ven_id=ven_id, reports=reports, report_request_id=0)
        requests = registered.get("report_requests") or []
        if requests:
            await self.send(url, "EiReport", "oadrCreatedReport", ven_id=ven_id,
                            response={"response_code": 200, "response_description": "OK",
                                      "request_id": registered.get("request_id")},
                            pending_reports=[{"report_request_id": r["report_request_id"]}
                                             for r in requests])
        await self.send(url, "EiEvent", "oadrRequestEvent", request_id="e1", ven_id=ven_id)
        kind, _ = await self.send(url, "OadrPoll", "oadrPoll", ven_id=ven_id)
        return bool(kind)


async def load(port: int, root: Path, names: list[str], concurrency: int,
               server_cpu_s: Callable[[], float]) -> dict:
    vens = [Registering(root, name, keep_alive=True) for name in names]
    url = f"https://127.0.0.1:{port}{BASE}"
    reports = _reports(names[0])
    latencies: list[float] = []
    failed = 0
    queue = list(vens)

    async def worker() -> None:
        nonlocal failed
        while queue:
            ven = queue.pop()
            began = time.perf_counter()
            try:
                failed += not await ven.come_online(url, reports)
            except (RuntimeError, OSError, oadr_xml.Malformed):
                failed += 1
            latencies.append(time.perf_counter() - began)

    try:
        cpu_before, began = server_cpu_s(), time.perf_counter()
        generator_before = time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed, cpu = time.perf_counter() - began, server_cpu_s() - cpu_before
        generator = time.process_time() - generator_before
    finally:
        await asyncio.gather(*(ven.session.close() for ven in vens))
    latencies.sort()
    return {"vens": len(names), "failed": failed, "seconds": round(elapsed, 2),
            "vens_per_s": round(len(names) / elapsed, 1),
            "vtn_cpu_ms_per_ven": round(1000 * cpu / len(names), 2),
            # the generator's core: near 1000 ms/s, it and not the server sets the pace
            "generator_cpu_ms_per_s": round(1000 * generator / elapsed),
            "p50_ms": round(1000 * latencies[len(latencies) // 2], 1),
            "p99_ms": round(1000 * latencies[int(len(latencies) * 0.99)], 1)}


def run_workers(root: Path, names: list[str], args) -> dict:
    """`vtn serve --workers W` on a fresh PostgreSQL database (every VEN enrolled, none
    registered), the generator here on CPU 1; server CPU is the workers' and the
    database backends'."""
    url = fresh_database(args.database_url, "flexadr_bench_register")
    enrol(url, root, names, registered=False)
    port = _free_port()
    serve = start_vtn(root, "register-workers", root, url, args.workers, port)
    try:
        time.sleep(1)       # every worker listens
        pids = worker_pids(serve, args.workers)

        database_cpu = {}

        def server_cpu_s() -> float:
            database_cpu.update(cpu(backends(url)))     # a backend that ended keeps its last
            return sum(cpu(pids).values()) + sum(database_cpu.values())

        def database_cpu_s() -> float:
            return sum(database_cpu.values())
        _pin(1)
        database_before = (server_cpu_s(), database_cpu_s())[1]
        figures = asyncio.run(load(port, root, names, args.concurrency, server_cpu_s))
        figures["postgresql_cpu_ms_per_ven"] = round(
            1000 * (database_cpu_s() - database_before) / len(names), 2)
        return figures
    finally:
        serve.terminate()
        serve.wait(60)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vens", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--key", choices=("ecdsa", "rsa"), default="ecdsa")
    parser.add_argument("--only", choices=("flexadr", "stock", "workers"))
    parser.add_argument("--workers", type=int, default=2,
                        help="also `vtn serve --workers N` on PostgreSQL (0: not)")
    parser.add_argument("--database-url", default=os.environ.get("FLEXADR_BENCH_DATABASE_URL",
                                                                 DEFAULT_URL))
    args = parser.parse_args(argv)
    if args.vens < 1 or args.concurrency < 1 or not 0 <= args.workers <= 16:
        print("error: --vens and --concurrency must be positive, --workers 0..16", file=sys.stderr)
        return 2
    names = [f"ven-{i:05d}" for i in range(args.vens)]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        make_pki(root, names, args.key)
        unregistered = functools.partial(serve_flexadr, registered=False)
        for label, target in (("flexadr", unregistered), ("stock openleadr", serve_stock)):
            if args.only and not label.startswith(args.only) or args.only == "workers":
                continue
            figures = run_in_process(label, target, root, names, lambda port, pid: asyncio.run(
                load(port, root, names, args.concurrency, functools.partial(_process_cpu_s, pid))))
            rows[label] = {"bench": "register", "server": label, "key": args.key,
                           "concurrency": args.concurrency, **figures}
            print(json.dumps(rows[label]), flush=True)
        if args.workers and args.only in (None, "workers"):
            label = f"flexadr, {args.workers} workers, PostgreSQL"
            rows["workers"] = {"bench": "register", "server": label, "key": args.key,
                               "concurrency": args.concurrency, **run_workers(root, names, args)}
            print(json.dumps(rows["workers"]), flush=True)
    summary = {"bench": "register", "summary": True, "cores": os.cpu_count(),
               "python": platform.python_version(), "argv": sys.argv[1:]}
    stock = rows.get("stock openleadr")
    for key, ours in rows.items():
        if stock is not None and ours is not stock:
            suffix = "" if key == "flexadr" else f" ({key})"
            summary[f"vens/s ratio ours/stock{suffix}"] = round(
                ours["vens_per_s"] / stock["vens_per_s"], 2)
            summary[f"cpu/ven ratio ours/stock{suffix}"] = round(
                ours["vtn_cpu_ms_per_ven"] / stock["vtn_cpu_ms_per_ven"], 2)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
