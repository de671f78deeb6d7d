"""`vtn` operator verbs against a real database: vens, events, telemetry export, db upgrade;
and `vtn serve` / `ven run` / `ven fleet` start-up failures, run as a user runs them (a
new process, so a traceback would show): one line on stderr, exit status 2."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from certs.pki import ensure_dev_pki
from vtn.cli import main
from vtn.store import Store, Ven, migrate


@pytest.fixture
def vtn_toml(tmp_path, database_url):
    pki = ensure_dev_pki(tmp_path / "pki", [])
    path = tmp_path / "vtn.toml"
    path.write_text(f'cert = "{pki.vtn.cert}"\nkey = "{pki.vtn.key}"\nca_file = "{pki.ca.cert}"\n'
                    f'database = "{database_url}"\n')
    return path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_db_upgrade_creates_the_schema_and_is_idempotent(vtn_toml, database_url, capsys):
    code, out, _ = run(capsys, "db", "upgrade", "--config", str(vtn_toml))
    assert code == 0 and f"revision {migrate.head()}" in out
    code, out, _ = run(capsys, "db", "upgrade", "--config", str(vtn_toml))
    assert code == 0 and "was" not in out
    store = Store(database_url, migrate_schema=False)
    assert migrate.current(store.engine) == migrate.head()
    store.close()


def test_events_create_list_cancel_and_export(vtn_toml, database_url, capsys):
    store = Store(database_url)
    store.enrol(Ven(ven_id="batt-1", ven_name="batt-1", fingerprint="fp1",
                    program_id="connected_solutions", device_kind="battery"))
    start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=1)
    code, out, _ = run(capsys, "events", "create", "--config", str(vtn_toml), "--program",
                       "connected_solutions", "--start", start.isoformat(), "--minutes", "120",
                       "--setpoint-kw", "5", "--override", "any day: a CLI test")
    assert code == 0 and "to 1 VENs" in out
    event_id = out.split()[1]
    code, out, _ = run(capsys, "events", "list", "--config", str(vtn_toml))
    assert event_id in out and " far " in out

    store.record_points("batt-1", [(start, start + timedelta(minutes=15),
                                    {"kw": -4.5, "soc_pct": 70.0, "online": True})])
    out_dir = vtn_toml.parent / "season"
    code, out, _ = run(capsys, "telemetry", "export", "--config", str(vtn_toml), "--program",
                       "connected_solutions", "--season", str(start.year), "--out", str(out_dir))
    assert code == 0
    lines = (out_dir / "telemetry.csv").read_text().splitlines()
    assert lines[0].startswith("participant,interval_start,interval_end,kw")
    assert lines[1].split(",")[:4] == ["batt-1", start.isoformat(),     # discharge positive
                                       (start + timedelta(minutes=15)).isoformat(), "4.5"]

    code, out, _ = run(capsys, "events", "cancel", "--config", str(vtn_toml), event_id)
    assert code == 0 and "modification 1" in out
    code, _, err = run(capsys, "events", "cancel", "--config", str(vtn_toml), event_id)
    assert code == 1 and "cancelled" in err
    code, out, _ = run(capsys, "events", "list", "--config", str(vtn_toml), "--status",
                       "cancelled")
    assert event_id in out

    code, out, _ = run(capsys, "vens", "list", "--config", str(vtn_toml))
    (row,) = [line for line in out.splitlines() if line.startswith("batt-1")]
    assert "never" in row and " fp1 " in row                   # the enrolled fingerprint
    store.close()


def test_bad_input_gets_a_clear_message_and_changes_nothing(vtn_toml, database_url, capsys):
    store = Store(database_url)
    store.enrol(Ven(ven_id="batt-1", ven_name="batt-1", fingerprint="fp1",
                    program_id="connected_solutions", device_kind="battery"))
    base = ["events", "create", "--config", str(vtn_toml), "--program", "connected_solutions"]
    for extra, fragment in [(["--start", "2030-07-01T16:00:00", "--minutes", "60"], "UTC offset"),
                            (["--start", "tomorrow", "--minutes", "60"], "ISO 8601"),
                            (["--start", "2030-07-01T16:00:00-04:00", "--minutes", "0"],
                             "positive"),
                            (["--start", "2030-07-01T16:00:00-04:00", "--minutes", "60"],
                             "setpoint")]:
        code, _, err = run(capsys, *base, *extra)
        assert code != 0 and fragment in err, (extra, err)
    code, _, err = run(capsys, "events", "create", "--config", str(vtn_toml), "--program",
                       "no_such_program", "--start", "2030-07-01T16:00:00-04:00", "--minutes", "60")
    assert code == 2 and "no program" in err
    code, _, err = run(capsys, "vens", "list", "--config", str(vtn_toml.parent / "missing.toml"))
    assert code == 2 and "no such config file" in err
    assert store.events() == []
    store.close()


def test_oadr3_client_create_prints_the_secret_once(vtn_toml, capsys):
    code, out, _ = run(capsys, "oadr3-client", "create", "--config", str(vtn_toml), "utility-bl",
                       "--role", "bl")
    assert code == 0 and out.startswith("client_id = utility-bl\nclient_secret = ")
    code, _, err = run(capsys, "oadr3-client", "create", "--config", str(vtn_toml), "utility-bl",
                       "--role", "bl")
    assert code == 2 and err.startswith("vtn oadr3-client create: ") and err.count("\n") == 1


def test_enrol_names_a_certificate_it_cannot_use(vtn_toml, database_url, capsys):
    missing = vtn_toml.parent / "ven-9.crt"
    for cert, problem in [(missing, "no such file"), (vtn_toml, "not a PEM certificate")]:
        code, _, err = run(capsys, "enrol", "--config", str(vtn_toml), "ven-9", str(cert),
                           "--program", "connected_solutions", "--kind", "battery")
        assert code == 2 and err == f"{cert}: {problem}\n"
    store = Store(database_url)
    assert store.ven("ven-9") is None
    store.close()


ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


def command(tool: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"{tool}.cli", *argv], capture_output=True,
                          text=True, env=ENV, timeout=timeout, check=False)


def assert_one_line(proc: subprocess.CompletedProcess, expected: str) -> None:
    """Exit 2, and stderr is exactly the one line (nothing printed before it either)."""
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == expected + "\n", proc.stderr
    assert "Your VTN Server is now running" not in proc.stdout


def fails(tool: str, verb: str, path: Path, problem: str) -> None:
    assert_one_line(command(tool, verb, "--config", str(path)), f"{tool}: {path}: {problem}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def pki(tmp_path):
    return ensure_dev_pki(tmp_path / "pki", ["ven-1"])


def toml_file(path: Path, keys: dict[str, str]) -> Path:
    path.write_text("".join(f"{key} = {value}\n" for key, value in keys.items()))
    return path


def serve_toml(tmp_path, pki, **keys) -> Path:
    return toml_file(tmp_path / "vtn.toml", {
        "cert": f'"{pki.vtn.cert}"', "key": f'"{pki.vtn.key}"', "ca_file": f'"{pki.ca.cert}"',
        "database": f'"sqlite:///{tmp_path / "vtn.sqlite"}"', **keys})


def ven_toml(tmp_path, pki, **keys) -> Path:
    return toml_file(tmp_path / "ven.toml", {
        "ven_name": '"ven-1"', "vtn_url": '"https://127.0.0.1:1/OpenADR2/Simple/2.0b"',
        "cert": f'"{pki.vens["ven-1"].cert}"', "key": f'"{pki.vens["ven-1"].key}"',
        "ca_file": f'"{pki.ca.cert}"', "capacity_kwh": "13.5", **keys})


def test_vtn_serve_config_mistakes_are_one_line(tmp_path, pki):
    missing = tmp_path / "nope.toml"
    fails("vtn", "serve", missing, "no such config file")
    path = serve_toml(tmp_path, pki, poll_intervall_s="10")
    fails("vtn", "serve", path, "poll_intervall_s: unknown key (did you mean 'poll_interval_s'?)")
    path = serve_toml(tmp_path, pki, port='"28443x"')
    fails("vtn", "serve", path, "port: expected an integer, got '28443x'")
    path = serve_toml(tmp_path, pki, push="{ first_retry_s = 2, max_retry_s = 1 }")
    fails("vtn", "serve", path, "push: first_retry_s 2 is above max_retry_s 1")
    path = serve_toml(tmp_path, pki, push="{ scan_intervall_s = 1 }")
    fails("vtn", "serve", path, "push.scan_intervall_s: unknown key (did you mean 'scan_interval_s'?)")
    gone = tmp_path / "pki" / "gone.crt"
    path = serve_toml(tmp_path, pki, cert=f'"{gone}"')
    fails("vtn", "serve", path, f"cert: no such file: {gone}")
    path = serve_toml(tmp_path, pki, database=f'"sqlite:///{tmp_path / "no" / "vtn.sqlite"}"')
    assert_one_line(command("vtn", "serve", "--config", str(path)),
                    "vtn: database error: unable to open database file")


def test_vtn_serve_bad_certificates_and_keys_are_one_line(tmp_path, pki):
    garbage = tmp_path / "garbage.crt"
    garbage.write_text("not a certificate\n")
    path = serve_toml(tmp_path, pki, cert=f'"{garbage}"')
    fails("vtn", "serve", path, f"cert: not a PEM certificate: {garbage}")
    other = pki.vens["ven-1"].key
    path = serve_toml(tmp_path, pki, key=f'"{other}"')
    fails("vtn", "serve", path, f"key: not the key of {pki.vtn.cert}: {other}")


def test_a_second_vtn_on_the_same_ports_is_one_line_and_the_first_stops_cleanly(tmp_path, pki):
    port, admin_port, port_31 = free_port(), free_port(), free_port()
    secret = tmp_path / "oadr31.secret"
    secret.write_text("x" * 32)
    first = serve_toml(tmp_path, pki, port=str(port), admin_port=str(admin_port),
                       admin_token='"t0ken"',
                       openadr31=f'{{ port = {port_31}, token_secret_file = "{secret}" }}')
    proc = subprocess.Popen([sys.executable, "-m", "vtn.cli", "serve", "--config", str(first),
                             "--log-format", "json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.monotonic() + 60
        while not _listening(admin_port):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.1)
        (tmp_path / "second").mkdir()
        second = serve_toml(tmp_path / "second", pki, port=str(port))
        fails("vtn", "serve", second,
              f"port: cannot listen on 127.0.0.1:{port}: Address already in use")
        third = serve_toml(tmp_path / "second", pki, port=str(free_port()),
                           admin_port=str(admin_port))
        fails("vtn", "serve", third,
              f"admin_port: cannot listen on 127.0.0.1:{admin_port}: Address already in use")
        with urllib.request.urlopen(f"http://127.0.0.1:{port_31}/auth/server",
                                    timeout=10) as answer:       # the OpenADR 3.1 edge
            assert answer.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "CancelledError" not in err
    entries = [json.loads(line) for line in err.splitlines()]      # every line is JSON
    messages = [(e["level"], e["logger"], e["message"]) for e in entries]
    assert ("INFO", "vtn.service", f"VTN FLEXADR_VTN listening on https://127.0.0.1:{port}"
            ) in messages                                            # INFO by default
    assert ("INFO", "vtn.commands.serve", f"VTN certificate fingerprint {pki.vtn.fingerprint} "
            "(the VENs' vtn_fingerprint)") in messages
    assert not [e for e in entries if e["logger"].startswith(("alembic", "aiohttp"))]
    assert out == ""                                               # no banner


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_ven_run_and_fleet_start_up_failures_are_one_line(tmp_path, pki):
    missing = tmp_path / "nope.toml"
    fails("ven", "run", missing, "no such config file")
    path = ven_toml(tmp_path, pki, capacity_kwh='"13.5"')
    fails("ven", "run", path, "capacity_kwh: expected a number, got '13.5'")
    path = ven_toml(tmp_path, pki, ca_file=f'"{pki.vtn.key}"')
    fails("ven", "run", path, f"ca_file: not a PEM certificate bundle: {pki.vtn.key}")
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:       # an OCPP charger's central-system port that another process holds
        path = ven_toml(tmp_path, pki, adapter='{ name = "ocpp16", config = { port = '
                        f'{taken.getsockname()[1]}, charge_point_id = "CP-1" }} }}')
        proc = command("ven", "run", "--config", str(path))
    finally:
        taken.close()
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"ven: {path}: cannot start: ") and "in use" in proc.stderr
    fleet = tmp_path / "fleet.toml"
    fleet.write_text(f'[defaults]\nca_file = "{pki.ca.cert}"\n[[ven]]\nven_nam = "x"\n')
    proc = command("ven", "fleet", "--config", str(fleet))
    assert proc.returncode == 2 and proc.stderr.startswith(
        f"ven: {fleet}: ven[0].ven_nam: unknown key (did you mean 'ven_name'?)"), proc.stderr
