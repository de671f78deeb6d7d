"""The wheel is the product: built from the sources, installed into a fresh venv outside
the checkout, it runs `vtn --help`, checks the program files it ships and backtests on
the data it ships, from a folder that is not the checkout.

The venv has no copy of the dependencies: a .pth line puts the test interpreter's
site-packages after its own (a plain path line: that folder's own .pth files, such as the
editable install of the checkout, are not run). The test asserts that flexadr, vtn and
schedules are imported from the wheel."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(".git", ".venv", "var", "build", "*.egg-info", "__pycache__",
                              ".hypothesis", ".pytest_cache", "tests", "bench", "docs")


def run(argv: list, cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{argv}: {proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, Path, dict, Path]:
    """(venv bin folder, a working folder outside the checkout, the environment, the wheel)."""
    tmp = tmp_path_factory.mktemp("wheel")
    source, dist, work = tmp / "src", tmp / "dist", tmp / "work"
    shutil.copytree(ROOT, source, ignore=SKIP)      # builds leave build/ and egg-info behind
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FLEXADR_DATA")}
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "-w", dist, source], work, env)
    wheel = next(dist.glob("flexadr-*.whl"))
    target = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(target)
    bin_dir = target / "bin"
    site = Path(run([bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    work, env).stdout.strip())
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([bin_dir / "python", "-m", "pip", "install", "--no-deps", "--quiet", wheel], work, env)
    return bin_dir, work, env, wheel


def python(installed, code: str) -> list[str]:
    """The words a snippet prints, run by the venv's interpreter outside the checkout."""
    bin_dir, work, env, _ = installed
    return run([bin_dir / "python", "-c", code], work, env).stdout.split()


def test_the_wheel_holds_the_data_programs_and_licences(installed):
    names = set(zipfile.ZipFile(installed[3]).namelist())
    for name in ("flexadr/data/isone_hourly_load_2015-07_2019-12.csv.gz",
                 "flexadr/data/noncommercial/boston_logan_daily_weather_2010-2019.csv.gz",
                 "flexadr/data/PROVENANCE.md", "flexadr/data/LICENSES.md",
                 "flexadr/data/noncommercial/LICENSE.md",
                 "schedules/programs/connected_solutions.toml",
                 "vtn/store/migrations/versions/0001_first_release_the_vtn_store.py"):
        assert name in names, name


def test_the_installed_vtn_imports_from_the_wheel(installed):
    bin_dir, work, env, _ = installed
    where = python(installed, "import flexadr, vtn, schedules, flexadr.data as d; "
                              "print(flexadr.__file__, vtn.__file__, schedules.__file__, d.PACKAGED)")
    venv_root = bin_dir.parent.resolve()
    for path in where:
        assert Path(path).resolve().is_relative_to(venv_root), path
    assert run([bin_dir / "vtn", "--help"], work, env).stdout.startswith("usage: vtn")


def test_the_installed_vtn_checks_its_programs_and_backtests_its_data(installed):
    bin_dir, work, env, _ = installed
    programs = python(installed, "import schedules, pathlib; print(*sorted(p.stem for p in "
                                 "(pathlib.Path(schedules.__file__).parent / 'programs')"
                                 ".glob('*.toml')))")
    assert "connected_solutions" in programs
    check = run([bin_dir / "vtn", "programs", "check", *programs], work, env).stdout
    assert check.count(": ok (") == len(programs)
    listing = run([bin_dir / "vtn", "data", "list"], work, env).stdout
    assert str(bin_dir.parent) in listing
    result = json.loads(run([bin_dir / "vtn", "backtest", "--program", "connected_solutions",
                             "--seasons", "2018", "--no-progress", "--json",
                             "--weather", "data:boston_logan_daily_weather_2010-2019.csv"],
                            work, env).stdout)
    assert result["seasons"][0]["year"] == 2018 and result["seasons"][0]["events"]
