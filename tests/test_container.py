"""deploy/container: docker is not here, so this checks what can be checked without it.
The compose file parses and every file it names exists; every command line it and the
Containerfile give `vtn` parses with the real CLI; the image is python:3.11-slim, runs as a
non-root user, copies only what exists; and the `vtn` service's command, with the compose
file's config (its paths mapped to this checkout, SQLite for PostgreSQL), serves while the
Containerfile's HEALTHCHECK command passes."""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from certs.pki import ensure_dev_pki
from tests.test_deploy import ENV, free_port
from vtn import config as vtn_config
from vtn.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "deploy" / "container"
COMPOSE = yaml.safe_load((FOLDER / "compose.yaml").read_text())
CONTAINER_CONFIG = "/etc/flexadr/vtn.toml"


def instructions() -> list[tuple[str, str]]:
    """The Containerfile's (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", (FOLDER / "Containerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def only(name: str) -> str:
    (found,) = [args for instruction, args in instructions() if instruction == name]
    return found


def vtn_services() -> dict[str, dict]:
    return {name: s for name, s in COMPOSE["services"].items()
            if s.get("image", "").startswith("flexadr-vtn")}


def test_the_compose_file_names_only_files_that_exist():
    for name, service in vtn_services().items():
        build = service["build"]
        context = (FOLDER / build["context"]).resolve()
        assert context == ROOT and (context / build["dockerfile"]).is_file(), name
        for volume in service["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (FOLDER / source).exists(), (name, source)
            else:
                assert source in COMPOSE["volumes"], (name, source)      # a named volume
    assert set(COMPOSE["services"]) == {"db", "migrate", "vtn", "pki-init", "pki-issue-vtn"}
    assert COMPOSE["services"]["vtn"]["depends_on"]["migrate"]["condition"] == \
        "service_completed_successfully"


def test_every_vtn_command_line_parses_with_the_real_cli():
    assert json.loads(only("ENTRYPOINT")) == ["vtn"]
    commands = {"CMD": json.loads(only("CMD"))}
    commands.update({name: s["command"] for name, s in vtn_services().items()})
    assert commands["CMD"] == commands["vtn"]
    parser = build_parser()
    for name, argv in commands.items():
        args = parser.parse_args(argv)
        assert callable(args.func), name
        if "--config" in argv:
            assert args.config == Path(CONTAINER_CONFIG), name


def test_the_image_is_slim_python_as_a_user_with_copies_that_exist(tmp_path, monkeypatch):
    assert only("FROM") == "python:3.11-slim"
    assert only("USER") not in ("root", "0")
    for instruction, args in instructions():
        if instruction == "COPY":
            *sources, _ = args.split()
            assert all((ROOT / source).exists() for source in sources), args
    monkeypatch.setenv("FLEXADR_ADMIN_TOKEN", "s3cret")
    settings = vtn_config.load(_mapped_config(tmp_path, sqlite="sqlite:///x.sqlite"))
    exposed = {int(port) for port in only("EXPOSE").split()}
    assert exposed == {settings.server.port, settings.server.admin_port}
    assert f"127.0.0.1:{settings.server.admin_port}/health" in only("HEALTHCHECK")


def _mapped_config(folder: Path, sqlite: str, port: int = 8443, admin_port: int = 8444) -> Path:
    """deploy/container/vtn.toml as the container reads it, in `folder` with a pilot PKI,
    on SQLite and the given ports."""
    text = (FOLDER / "vtn.toml").read_text()
    text = re.sub(r'^database = .*$', f'database = "{sqlite}"', text, flags=re.M)
    text = re.sub(r'^port = .*$', f"port = {port}", text, flags=re.M)
    text = re.sub(r'^admin_port = .*$', f"admin_port = {admin_port}", text, flags=re.M)
    text = text.replace('"0.0.0.0"', '"127.0.0.1"')     # the test's loopback, not the host's
    folder.mkdir(parents=True, exist_ok=True)
    ensure_dev_pki(folder / "pki", [])
    path = folder / "vtn.toml"
    path.write_text(text)
    return path


@pytest.mark.timeout(120)
def test_the_vtn_service_serves_and_passes_the_images_healthcheck(tmp_path):
    port, admin_port = free_port(), free_port()
    config = _mapped_config(tmp_path, f"sqlite:///{tmp_path / 'vtn.sqlite'}", port, admin_port)
    service = COMPOSE["services"]["vtn"]
    env = {**ENV, "FLEXADR_ADMIN_TOKEN": "s3cret", "PGPASSWORD": "unused"}

    def container(argv: list[str]) -> list[str]:
        return [sys.executable, "-m", "vtn.cli",
                *[str(config) if arg == CONTAINER_CONFIG else arg for arg in argv]]

    migrate = subprocess.run(container(COMPOSE["services"]["migrate"]["command"]), env=env,
                             capture_output=True, text=True, timeout=60)
    assert migrate.returncode == 0 and "database at revision" in migrate.stdout, migrate.stderr
    health = json.loads(only("HEALTHCHECK").split("CMD", 1)[1])
    health = [sys.executable if arg == "python" else arg.replace(":8444/", f":{admin_port}/")
              for arg in health]
    proc = subprocess.Popen(container(service["command"]), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while subprocess.run(health, capture_output=True, timeout=10).returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.3)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert any(json.loads(line)["message"].startswith("VTN EXAMPLE_UTILITY_VTN listening")
               for line in err.splitlines())
