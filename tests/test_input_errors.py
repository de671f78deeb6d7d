"""Bad input files: `vtn backtest` says which file, line and column, exits 1, and
shows no traceback; the VTN's planner job logs the same message and keeps going."""
from __future__ import annotations

import asyncio
import logging
import math
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from flexadr import data as shipped
from flexadr.clock import ManualClock
from schedules import sources

ROOT = Path(__file__).resolve().parents[1]
LOAD_NAME = "isone_hourly_load_2015-07_2019-12.csv"
LOAD = shipped.path(LOAD_NAME)
HEADER = "utc_hour_ending,demand_mw,demand_mw_clean,isone_dayahead_forecast_mw\n"
GOOD_LOAD = HEADER + "2018-07-01 00:00,15000,15010,14900\n2018-07-01 01:00,14000,14010,13900\n"
ATOM_HEAD = ('<?xml version="1.0"?>\n<feed xmlns="http://www.w3.org/2005/Atom" '
             'xmlns:cap="urn:oasis:names:tc:emergency:cap:1.1">\n')


def backtest(*args: str) -> subprocess.CompletedProcess:
    """`vtn backtest` as a user runs it: a new process, so a traceback would show."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    return subprocess.run([sys.executable, "-m", "vtn.cli", "backtest", "--program",
                           "connected_solutions", "--no-progress", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=120,
                          check=False)


def assert_fails_with(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def write(path: Path, text: str | bytes) -> str:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


# (load file text, the message it must give; {f} is the file's path)
LOAD_CASES = {
    "missing column": ("a,b\n1,2\n",
                       "{f}:1: missing column utc_hour_ending and demand_mw_clean or demand_mw"),
    "empty file": ("", "{f}: empty file"),
    "no data rows": (HEADER, "{f}: no data rows"),
    "bad time": (GOOD_LOAD + "2018-07-01 xx,1,2,3\n",
                 "{f}:4: utc_hour_ending: not a 'YYYY-MM-DD HH:MM' time: '2018-07-01 xx'"),
    "bad number": (HEADER + "2018-07-01 00:00,15000,n/a,14900\n",
                   "{f}:2: demand_mw_clean: not a number: 'n/a'"),
    "row of the wrong width": (GOOD_LOAD + "2018-07-01 02:00,1,2\n",
                               "{f}:4: 3 fields where the header has 4"),
    "not UTF-8": (GOOD_LOAD.encode() + b"2018-07-01 02:00,1,\xff,3\n", "{f}:4: not UTF-8 text"),
}


@pytest.mark.parametrize("case", LOAD_CASES)
def test_a_bad_load_file_names_file_line_and_column(tmp_path, case):
    text, message = LOAD_CASES[case]
    load = write(tmp_path / "load.csv", text)
    assert_fails_with(backtest("--load", load), message.format(f=load))


def test_a_missing_load_file_is_named(tmp_path):
    missing = tmp_path / "nonexist.csv"
    assert_fails_with(backtest("--load", str(missing)), f"{missing}: no such file")


def test_hours_that_repeat_or_go_back_are_errors_with_both_lines(tmp_path):
    load = write(tmp_path / "load.csv", GOOD_LOAD + "2018-07-01 01:00,1,2,3\n"
                                                    "2018-07-01 03:00,1,2,3\n"
                                                    "2018-07-01 02:00,1,2,3\n")
    assert_fails_with(
        backtest("--load", load),
        f"{load}:4: utc_hour_ending: 2018-07-01 01:00 is not after 2018-07-01 01:00 on line 3",
        f"{load}:6: utc_hour_ending: 2018-07-01 02:00 is not after 2018-07-01 03:00 on line 5")


def test_many_problems_are_listed_up_to_ten_in_one_error(tmp_path):
    rows = "".join(f"2018-07-01 {hour:02d}:00,1,bad,3\n" for hour in range(24))
    load = write(tmp_path / "load.csv", HEADER + rows)
    proc = backtest("--load", load)
    assert_fails_with(proc, f"{load}:2: demand_mw_clean", f"{load}:11: demand_mw_clean",
                      f"{load}: 14 more problems not listed")
    assert len(proc.stderr.splitlines()) == sources.MAX_PROBLEMS + 1


def test_a_bad_weather_file_names_the_date_and_number_columns(tmp_path):
    load = write(tmp_path / "load.csv", GOOD_LOAD)
    weather = write(tmp_path / "weather.csv", "time,tmax,tavg\n07/01/2018,30,25\n"
                                              "2018-07-02,hot,25\n")
    assert_fails_with(backtest("--load", load, "--weather", weather),
                      f"{weather}:2: time: not a 'YYYY-MM-DD' date: '07/01/2018'",
                      f"{weather}:3: tmax: not a number: 'hot'")


# (alerts file name and text, the message it must give; {f} is the file's path)
ALERT_CASES = {
    "malformed XML": ("feed.xml", ATOM_HEAD + "<entry>\n</feed>\n",
                      "{f}:4: column 8: not well-formed XML: Opening and ending tag mismatch"),
    "malformed JSON": ("alerts.json", '{"features": [\n  {"properties": }\n]}\n',
                       "{f}:2: column 18: not valid JSON: Expecting value"),
    "alert time": ("feed.xml", ATOM_HEAD + "<entry>\n<cap:event>Heat Advisory</cap:event>\n"
                   "<cap:effective>soon</cap:effective>\n</entry>\n</feed>\n",
                   "{f}:5: cap:effective: not an ISO 8601 time: 'soon'"),
    "not an ATOM feed": ("feed.xml", "<html>\n<body>502 Bad Gateway</body>\n</html>\n",
                         "{f}:1: not an ATOM feed: the root element is <html>"),
    "GeoJSON of the wrong shape": ("alerts.json", '{"features": [{"properties": []}]}',
                                   "{f}: features[0].properties: not a JSON object"),
}


@pytest.mark.parametrize("case", ALERT_CASES)
def test_a_bad_alerts_file_names_file_line_and_column(tmp_path, case):
    name, text, message = ALERT_CASES[case]
    load = write(tmp_path / "load.csv", GOOD_LOAD)
    alerts = write(tmp_path / name, text)
    assert_fails_with(backtest("--load", load, "--alerts", alerts), message.format(f=alerts))


def test_a_season_the_load_file_does_not_cover_says_what_it_covers():
    proc = backtest("--load", str(LOAD), "--seasons", "2030")
    assert_fails_with(proc)
    assert proc.stderr == "error: season 2030: the load file covers 2015-07-01 to 2019-12-31\n"
    assert proc.stdout == ""


def test_valid_files_keep_empty_numbers_blank_lines_and_a_byte_order_mark(tmp_path):
    load = tmp_path / "load.csv"
    load.write_text("\ufeff" + HEADER + "2018-07-01 00:00,15000,,\n\n"
                    "2018-07-01 01:00,,,13900\n")
    data = sources.read_isone_csv(load)
    assert data.load.mw[0] == 15000                     # demand_mw when the clean value is empty
    assert math.isnan(data.load.mw[1])                  # an empty hour stays missing
    assert data.iso_forecast is not None and math.isnan(data.iso_forecast.mw[0])
    assert data.iso_forecast.mw[1] == 13900


async def test_the_planner_job_logs_the_file_error_and_runs_again_once_fixed(store, tmp_path,
                                                                            caplog):
    from vtn.config import planner_settings
    from vtn.planning import PlanningSchedule
    load = Path(write(tmp_path / "load.csv", GOOD_LOAD + "2018-07-01 xx,1,2,3\n"))
    settings = planner_settings({"programs": ["connected_solutions"], "load_csv": str(load),
                                 "every_min": 0.01}, tmp_path)
    clock = ManualClock(datetime(2018, 7, 20, 18, tzinfo=timezone.utc))
    schedule = PlanningSchedule(store, settings, clock)
    caplog.set_level(logging.INFO, logger="vtn.planning")
    schedule.start()
    try:
        async with asyncio.timeout(30):
            while schedule.ticks == 0:
                await asyncio.sleep(0.05)
            failed = next(r for r in caplog.records if r.levelno == logging.ERROR)
            assert failed.getMessage() == (f"planner run failed: {load}:4: utc_hour_ending: "
                                           "not a 'YYYY-MM-DD HH:MM' time: '2018-07-01 xx'")
            assert failed.exc_info is None                  # the message, not a traceback
            load.write_bytes(shipped.read_bytes(LOAD_NAME))   # the operator fixes the file
            while not any(r.getMessage().startswith("planner: ") and " planned, " in
                          r.getMessage() for r in caplog.records):
                await asyncio.sleep(0.05)
    finally:
        schedule.stop()
    assert schedule.ticks >= 2
