"""How fast the VTN's store-backed handlers are: polls and telemetry intervals per second.

    python bench/vtn_store.py [DATABASE_URL]     # default: a temporary SQLite file

Calls the Vtn handlers directly (no TLS, no XML), so the figures are the
database's share of a poll and of an oadrUpdateReport.
"""
from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from certs.pki import ensure_dev_pki
from flexadr.clock import ManualClock
from vtn.service import Vtn, VtnConfig
from vtn.store import ReportRegistration, ReportRequest, Store, Ven

VENS = 200
T0 = datetime(2026, 7, 1, tzinfo=timezone.utc)


def main() -> None:
    workdir = Path(tempfile.mkdtemp())
    url = sys.argv[1] if len(sys.argv) > 1 else f"sqlite:///{workdir / 'bench.sqlite'}"
    store = Store(url)
    pki = ensure_dev_pki(workdir / "pki", [])
    clock = ManualClock(T0)
    vtn = Vtn(VtnConfig("BENCH", "127.0.0.1", 1, pki.vtn.cert, pki.vtn.key, pki.ca.cert,
                        poll_interval=timedelta(seconds=10)), store, clock)
    for i in range(VENS):
        store.enrol(Ven(ven_id=f"v{i}", ven_name=f"v{i}", fingerprint=f"fp{i}",
                        program_id="connected_solutions", device_kind="battery"))
        store.register_report([ReportRegistration(
            ven_id=f"v{i}", report_specifier_id="usage", report_name="TELEMETRY_USAGE", r_id=r,
            measurement=m, unit=u, scale=s, registered_at=T0)
            for r, m, u, s in [("kw", "RealPower", "W", "k"), ("kwh", "RealEnergy", "Wh", "k"),
                               ("soc", "stateOfCharge", "%", "none")]])
        store.add_report_request(ReportRequest(
            report_request_id=f"rr{i}", ven_id=f"v{i}", report_specifier_id="usage",
            report_name="TELEMETRY_USAGE", r_ids="kw,kwh,soc", granularity_s=900,
            report_back_duration_s=900, created_at=T0))

    start = time.perf_counter()
    polls = 0
    for round_ in range(5):
        clock.advance(timedelta(seconds=10))
        for i in range(VENS):
            vtn.on_poll(f"v{i}")
            polls += 1
    poll_s = time.perf_counter() - start

    intervals = 0
    start = time.perf_counter()
    for i in range(VENS):
        rows = [{"dtstart": T0 + timedelta(minutes=15 * k), "duration": timedelta(minutes=15),
                 "report_payload": {"r_id": r, "value": v}}
                for k in range(8) for r, v in (("kw", 3.0), ("kwh", 0.75), ("soc", 50.0))]
        asyncio.run(vtn.update_report({"ven_id": f"v{i}", "reports": [
            {"report_request_id": f"rr{i}", "intervals": rows}]}))
        intervals += 8
    report_s = time.perf_counter() - start
    dialect = store.engine.dialect.name
    print(f"{dialect}: {polls / poll_s:,.0f} empty polls/s, "
          f"{intervals / report_s:,.0f} telemetry intervals/s (8 per report, 3 quantities each)")
    store.close()


if __name__ == "__main__":
    main()
