"""The data shipped in flexadr/data: the upstream bytes, found by one resolver, readable
from a clone alone; $FLEXADR_DATA points elsewhere; an unknown name is a usage error (exit 2)."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from flexadr import data as shipped
from schedules import sources

ROOT = Path(__file__).resolve().parents[1]
PROVENANCE = (ROOT / "flexadr" / "data" / "PROVENANCE.md").read_text()
LOAD = "isone_hourly_load_2015-07_2019-12.csv"


def vtn(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vtn.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=120)


def test_every_shipped_file_is_the_upstream_bytes_listed_in_provenance():
    listed = dict(re.findall(r"^\| (\S+) \|[^|]*\| ([0-9a-f]{64}) \|", PROVENANCE, re.M))
    names = shipped.names()
    assert len(names) == len(listed) == 6
    for name in names:
        key = name if name in listed else f"{shipped.NONCOMMERCIAL}/{name}"
        assert hashlib.sha256(shipped.read_bytes(name)).hexdigest() == listed[key], name


def test_meteostat_weather_is_kept_apart_as_non_commercial():
    for name in ("boston_logan_daily_weather_2010-2019.csv", "boston_logan_daily_weather_2025.csv"):
        assert shipped.path(name).parent.name == shipped.NONCOMMERCIAL
    licences = (ROOT / "flexadr" / "data" / "LICENSES.md").read_text()
    assert "noncommercial/*.csv.gz` | **CC BY-NC 4.0**" in licences
    label = shipped.PACKAGED / shipped.NONCOMMERCIAL / "LICENSE.md"
    assert label.read_text().startswith("# CC BY-NC 4.0: non-commercial use only")
    assert all(shipped.NONCOMMERCIAL not in shipped.path(n).parts for n in shipped.names()
               if not n.startswith("boston_logan"))


def test_gzipped_and_plain_files_read_the_same(tmp_path):
    plain = tmp_path / LOAD
    plain.write_bytes(shipped.read_bytes(LOAD))
    packed, unpacked = sources.read_isone_csv(shipped.path(LOAD)), sources.read_isone_csv(plain)
    assert len(packed.load.t) == len(unpacked.load.t) == 39_461
    assert (packed.load.t == unpacked.load.t).all()


def test_a_damaged_gzip_file_is_a_data_error_naming_it(tmp_path):
    bad = tmp_path / "load.csv.gz"
    bad.write_bytes(gzip.compress(b"utc_hour_ending,demand_mw\n")[:-6])
    proc = vtn("backtest", "--program", "connected_solutions", "--load", str(bad), "--no-progress")
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: {bad}: ") and "Traceback" not in proc.stderr


def test_flexadr_data_reads_another_folder_of_the_same_layout(tmp_path, monkeypatch):
    (tmp_path / "raw").mkdir()
    (tmp_path / LOAD).write_bytes(b"plain")
    monkeypatch.setenv(shipped.ENV, str(tmp_path))
    assert shipped.resolve(f"data:{LOAD}") == tmp_path / LOAD
    assert shipped.read_bytes(LOAD) == b"plain"
    assert shipped.names() == [LOAD]


def test_an_unknown_data_name_is_a_usage_error_exit_2():
    proc = vtn("backtest", "--program", "connected_solutions", "--load", "data:isone_2031.csv")
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1].startswith(
        "vtn backtest: error: argument --load: no data file 'isone_2031.csv' in ")
    assert "Traceback" not in proc.stderr


def test_backtest_runs_on_the_shipped_load_by_default_and_lists_the_data():
    proc = vtn("backtest", "--program", "connected_solutions", "--seasons", "2018",
               "--weather", "data:boston_logan_daily_weather_2010-2019.csv", "--no-progress", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["seasons"][0]["year"] == 2018
    listing = vtn("data", "list").stdout.splitlines()
    assert len(listing) == 6
    assert any(line.startswith("data:boston_logan_daily_weather_2010-2019.csv")
               and "CC BY-NC 4.0 (non-commercial only)" in line for line in listing)
