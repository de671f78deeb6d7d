"""The VTN's config file (TOML). Relative paths are relative to the file."""
from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from vtn.planning import PlannerSettings
from vtn.planning import settings_from as planning_settings
from vtn.service import VtnConfig


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str


@dataclass(frozen=True)
class VtnSettings:
    server: VtnConfig
    database_url: str
    smtp: SmtpSettings | None = None
    planner: PlannerSettings | None = None


def load(path: Path) -> VtnSettings:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: no such config file") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err
    base = path.parent

    def file(key: str) -> Path:
        if key not in data:
            raise ConfigError(f"{path}: {key}: missing")
        return (base / data[key]).resolve()

    server = VtnConfig(
        vtn_id=data.get("vtn_id", "FLEXADR_VTN"),
        host=data.get("host", "127.0.0.1"),
        port=int(data.get("port", 8080)),
        cert=file("cert"), key=file("key"), ca_file=file("ca_file"),
        poll_interval=timedelta(seconds=data.get("poll_interval_s", 10)),
        telemetry_interval=timedelta(seconds=data.get("telemetry_interval_s", 900)),
        admin_token=_admin_token(data, path),
        admin_port=int(data["admin_port"]) if "admin_port" in data else None,
        public_url=data.get("public_url"),
        replay_past=timedelta(seconds=data.get("replay_past_s", 30)),
        replay_future=timedelta(seconds=data.get("replay_future_s", 5)),
    )
    database = data.get("database", "sqlite:///vtn.sqlite")
    if database.startswith("sqlite:///") and not database.startswith("sqlite:////"):
        database = f"sqlite:///{(base / database.removeprefix('sqlite:///')).resolve()}"
    smtp = None
    if "smtp" in data:
        try:
            smtp = SmtpSettings(host=data["smtp"]["host"], port=int(data["smtp"].get("port", 25)),
                                sender=data["smtp"]["sender"])
        except KeyError as err:
            raise ConfigError(f"{path}: smtp.{err.args[0]}: missing") from err
    planner = None
    if "planner" in data:
        try:
            planner = planning_settings(data["planner"], path.parent)
        except ValueError as err:
            raise ConfigError(f"{path}: {err}") from err
    return VtnSettings(server, database, smtp, planner)


def _admin_token(data: dict, path: Path) -> str | None:
    """The admin token: from the environment variable named by admin_token_env (preferred)."""
    if "admin_token_env" in data:
        token = os.environ.get(data["admin_token_env"])
        if not token:
            raise ConfigError(f"{path}: admin_token_env: ${data['admin_token_env']} is not set")
        return token
    return data.get("admin_token")
