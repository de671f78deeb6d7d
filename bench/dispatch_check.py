"""CPU time of the dispatch-rule check for an event to every VEN of a program.

For each fleet size, a temporary SQLite store holds N ConnectedSolutions VENs. Three
events go to all of them, each on its own day. For each event the script times, in
process CPU (time.process_time), what the rules read from the store
(event_control.facts) and the whole create: the check, the event, N targets, N queued
messages and the audit rows.

    .venv/bin/python -m bench.dispatch_check --vens 100 2000 10000
"""
from __future__ import annotations

import argparse
import tempfile
import time
from datetime import datetime, timezone

from flexadr.clock import ManualClock
from vtn import audit, event_control
from vtn.operator_input import EventRequest, parse
from vtn.store import Store, Ven

DAYS = ("2026-07-02", "2026-07-03", "2026-07-06")     # allowed days, no overlap


def measure(vens: int) -> list[tuple[float, float]]:
    """(facts, create) CPU seconds for each of the three events."""
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/vtn.sqlite")
        with store.transaction():
            for i in range(vens):
                store.enrol(Ven(ven_id=f"v{i}", ven_name=f"v{i}", fingerprint=f"fp{i}",
                                program_id="connected_solutions", device_kind="battery"))
        clock = ManualClock(datetime(2026, 6, 1, tzinfo=timezone.utc))
        program = event_control.load_program("connected_solutions")
        for day in DAYS:
            request = parse(EventRequest, {"program_id": program.id,
                                           "start": f"{day}T16:00:00-04:00", "minutes": 120,
                                           "setpoint_kw": 5})
            ven_ids = event_control.default_targets(store, program, clock)
            started = time.process_time()
            event_control.facts(store, clock, ven_ids, request.start, request.end_utc)
            read = time.process_time()
            event_control.create(store, clock, request, program, audit.ADMIN_TOKEN)
            figures.append((read - started, time.process_time() - read))
        store.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vens", type=int, nargs="+", default=[100, 2000, 10000])
    args = parser.parse_args()
    print("VENs  event  facts ms CPU  create ms CPU")
    for vens in args.vens:
        for i, (facts, create) in enumerate(measure(vens)):
            print(f"{vens:>5}  {i:>5}  {1000 * facts:>12.0f}  {1000 * create:>13.0f}")


if __name__ == "__main__":
    main()
