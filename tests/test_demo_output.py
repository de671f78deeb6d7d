"""`make demo` output: progress lines and the table, under 40 lines, no traceback; and
the shutdown noise filter that keeps it so.

The full demo (21 VENs, a 60 s event, ~1.5 min) is too slow for the suite: this runs
its entry point with 3 VENs and a 5 s event (~25 s). Its default output is one line
per phase plus one table row per VEN, so 21 VENs add 18 rows to what is counted here.
"""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FULL_FLEET = 21
VENS = 3


def test_the_demo_prints_its_phases_and_the_table_and_nothing_else(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    proc = subprocess.run([sys.executable, "-m", "flexadr.demo", "--vens", str(VENS),
                           "--lead", "4", "--event", "5", "--workdir", str(tmp_path)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                          timeout=180, check=False)
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0, proc.stdout
    assert "Traceback" not in proc.stdout and "CancelledError" not in proc.stdout
    rows = [line for line in lines if line.startswith("ven-")]
    assert len(rows) == VENS
    progress = [line for line in lines if " flexadr.demo: " in line]
    assert [line.split(" flexadr.demo: ")[1].split(" ")[0] for line in progress] == [
        "PKI", "VTN", f"{VENS}", "event", "event", "event"]
    assert len(lines) == len(progress) + 7 + VENS, proc.stdout    # + the table, nothing else
    assert len(lines) + (FULL_FLEET - VENS) < 40


def test_what_stopping_leaves_in_flight_is_dropped_and_real_failures_are_kept():
    import asyncio
    import logging

    from flexadr.logs import ShutdownNoise

    def record(name: str, message: str, error: BaseException | None = None) -> logging.LogRecord:
        exc_info = (type(error), error, None) if error else None
        return logging.LogRecord(name, logging.ERROR, __file__, 1, message, None, exc_info)

    noise = ShutdownNoise()
    assert not noise.filter(record("apscheduler.executors.default", 'Job "FlexClient._poll" '
                                   "raised an exception", asyncio.CancelledError()))
    assert not noise.filter(record("openleadr", "Request error ClientConnectionError:"
                                                "Connector is closed."))
    assert noise.filter(record("apscheduler.executors.default", 'Job "FlexClient._poll" '
                               "raised an exception", ValueError("bad payload")))
    assert noise.filter(record("openleadr", "Request error ClientConnectorError:Cannot connect"))
