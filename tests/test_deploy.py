"""deploy/: the systemd unit's command lines, as written, run the VTN on the example
production config (deploy/vtn.toml, with a pilot PKI next to it); /health answers, /metrics
answers with the token from the unit's environment file, and SIGTERM stops it cleanly."""
import configparser
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from certs.pki import ensure_dev_pki

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "deploy" / "systemd" / "flexadr-vtn.service"
CONFIG = ROOT / "deploy" / "vtn.toml"
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


def unit() -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(UNIT)
    return parser


def as_run_here(line: str, config: Path) -> list[str]:
    """The unit's command with this checkout's `vtn` and the test's copy of the config."""
    argv = shlex.split(line)
    assert argv[0] == "/opt/flexadr/venv/bin/vtn" and argv[argv.index("--config") + 1] == \
        "/etc/flexadr/vtn.toml"
    argv[argv.index("--config") + 1] = str(config)
    return [sys.executable, "-m", "vtn.cli", *argv[1:]]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_unit_restarts_always_but_not_on_a_start_up_failure():
    service = unit()["Service"]
    assert service["Restart"] == "always"
    assert service["RestartPreventExitStatus"] == "2"     # `vtn serve`'s start-up failures
    assert service["KillSignal"] == "SIGTERM"


def test_the_units_command_serves_the_example_config(tmp_path):
    port, admin_port = free_port(), free_port()
    text = CONFIG.read_text()
    for key, value in [("database", f'"sqlite:///{tmp_path / "vtn.sqlite"}"'),
                       ("port", str(port)), ("admin_port", str(admin_port))]:
        line = next(line for line in text.splitlines() if line.startswith(f"{key} ="))
        text = text.replace(line, f"{key} = {value}")
    config = tmp_path / "vtn.toml"
    config.write_text(text)
    ensure_dev_pki(tmp_path / "pki", [])
    env = {**ENV, "FLEXADR_ADMIN_TOKEN": "s3cret"}        # what /etc/flexadr/vtn.env holds
    service = unit()["Service"]
    pre = subprocess.run(as_run_here(service["ExecStartPre"], config), env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert pre.returncode == 0 and "database at revision" in pre.stdout, pre.stderr
    proc = subprocess.Popen(as_run_here(service["ExecStart"], config), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/health",
                                            timeout=5) as response:
                    assert response.status == 200
                    health = json.loads(response.read())
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.2)
        assert health["status"] == "ok" and health["vtn_id"] == "EXAMPLE_UTILITY_VTN"
        request = urllib.request.Request(f"http://127.0.0.1:{admin_port}/metrics",
                                         headers={"Authorization": "Bearer s3cret"})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert "flexadr_vtn_messages_received_total" in response.read().decode()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    logged = [json.loads(line) for line in err.splitlines()]     # --log-format json
    assert any(e["message"].startswith("VTN EXAMPLE_UTILITY_VTN listening") for e in logged)
