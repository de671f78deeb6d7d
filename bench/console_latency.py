"""Console live-update latency: a telemetry interval stored -> the Now page's SSE update
carrying it reaches a logged-in client.

One process: a VTN with its admin listener on a temporary SQLite store, N enrolled VENs
targeted by one active event, and an aiohttp client logged in to the console reading
/ui/now/stream. Each round a thread stores one new interval for one VEN (another writer,
as the 2.0b or 3.1 edge would be) and the client waits for the SSE message whose fleet
series has that interval. Prints one JSON line: latency percentiles (wall ms) and the
process CPU per update (ms; VTN and client together).

    .venv/bin/python -m bench.console_latency --vens 20 --rounds 40
"""
from __future__ import annotations

import argparse
import asyncio
import json
import platform
import re
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

PASSWORD = "bench-password-1"


async def _login(session) -> None:
    async with session.get("/ui/login") as page:
        csrf = re.search(r'name="csrf" value="([^"]+)"', await page.text()).group(1)
    async with session.post("/ui/login", data={"csrf": csrf, "username": "bench",
                                               "password": PASSWORD}) as answer:
        answer.raise_for_status()


async def run(vens: int, rounds: int) -> dict:
    import aiohttp

    from certs.pki import ensure_dev_pki
    from flexadr.clock import SystemClock
    from flexadr.demo import _free_port
    from schedules import model
    from vtn import auth, lifecycle
    from vtn.service import Vtn, VtnConfig
    from vtn.store import Store, Ven

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        names = [f"ven-{i:03d}" for i in range(vens)]
        pki = ensure_dev_pki(root / "pki", names)
        store = Store(f"sqlite:///{root / 'vtn.sqlite'}")
        clock = SystemClock()
        for name in names:
            store.enrol(Ven(ven_id=name, ven_name=name, fingerprint=pki.vens[name].fingerprint,
                            program_id="connected_solutions", device_kind="battery"))
        auth.add_user(store, "bench", PASSWORD, "viewer", actor="bench", clock=clock)
        now = clock.now()
        start = now - timedelta(minutes=5)
        lifecycle.publish(store, model.load("connected_solutions"), start,
                          now + timedelta(hours=1), names, clock, setpoint_kw=3.0)
        admin_port = _free_port()
        vtn = Vtn(VtnConfig("BENCH_VTN", "127.0.0.1", _free_port(), pki.vtn.cert, pki.vtn.key,
                            pki.ca.cert, admin_port=admin_port), store, clock)
        await vtn.start(run_ticker=False)
        latencies, cpu_start = [], time.process_time()
        try:
            async with aiohttp.ClientSession(
                    base_url=f"http://127.0.0.1:{admin_port}",
                    cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
                await _login(session)
                async with session.get("/ui/now/stream") as stream:
                    await stream.content.readline()          # the first snapshot
                    for i in range(rounds):
                        begin = start + timedelta(seconds=i)
                        await asyncio.to_thread(store.record_telemetry, names[i % vens], begin,
                                                begin + timedelta(seconds=1), kw=-2.0)
                        stored = time.perf_counter()
                        wanted = begin.timestamp()
                        while True:
                            line = (await stream.content.readline()).decode()
                            if not line.startswith("data: "):
                                continue
                            series = json.loads(line[6:])[0]["series"]
                            if any(point[0] == wanted for point in series):
                                break
                        latencies.append((time.perf_counter() - stored) * 1000)
        finally:
            cpu = time.process_time() - cpu_start
            await vtn.stop()
            store.close()
    ordered = sorted(latencies)
    return {"bench": "console_latency", "vens": vens, "rounds": rounds,
            "p50_ms": round(statistics.median(ordered), 1),
            "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 1),
            "max_ms": round(ordered[-1], 1),
            "cpu_ms_per_update": round(1000 * cpu / rounds, 1),
            "python": platform.python_version()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vens", type=int, default=20, help="VENs targeted by the event")
    parser.add_argument("--rounds", type=int, default=40, help="telemetry intervals stored")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(run(args.vens, args.rounds))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
