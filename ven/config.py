"""VEN agent config files (TOML): one agent (`ven run`) or a fleet (`ven fleet`).

A fleet file has a `[defaults]` table merged under every `[[ven]]` entry.
Relative paths are relative to the config file.
"""
from __future__ import annotations

import tomllib
from datetime import time, timedelta
from pathlib import Path
from typing import Any

from schedules import model
from ven.agent import AgentConfig
from ven.policy import OwnerPrefs
from ven.storm_watch import StormWatchConfig, watch_rules


class ConfigError(ValueError):
    pass


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text())
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: no such config file") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from err


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(
            base.get(key), dict) else value
    return merged


def agent_config(data: dict[str, Any], base: Path, source: str) -> AgentConfig:
    try:
        adapter = data.get("adapter", {})
        return AgentConfig(
            ven_name=data["ven_name"],
            vtn_url=data["vtn_url"],
            cert=(base / data["cert"]).resolve(),
            key=(base / data["key"]).resolve(),
            ca_file=(base / data["ca_file"]).resolve(),
            vtn_fingerprint=data.get("vtn_fingerprint"),
            adapter=adapter.get("name", "sim"),
            adapter_config=adapter.get("config", {}),
            capacity_kwh=float(data["capacity_kwh"]),
            max_discharge_kw=float(data.get("max_discharge_kw", 0.0)),
            max_charge_kw=float(data.get("max_charge_kw", 0.0)),
            efficiency=float(data.get("efficiency", 0.95)),
            cycle_cap_per_year=data.get("cycle_cap_per_year"),
            prefs=_prefs(data.get("owner", {})),
            time_scale=float(data.get("time_scale", 1.0)),
            sample_period=timedelta(seconds=data.get("sample_period_s", 60)),
            telemetry_interval=timedelta(minutes=data.get("telemetry_interval_min", 15)),
            state_url=_sqlite_relative_to(base, data.get("state_url", "sqlite:///ven-state.sqlite")),
            storm_watch=_storm_watch(data.get("storm_watch"), base),
        )
    except KeyError as err:
        raise ConfigError(f"{source}: {err.args[0]}: missing") from err
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from err


def _sqlite_relative_to(base: Path, url: str) -> str:
    """A relative SQLite path in a config file is relative to that file."""
    path = url.removeprefix("sqlite:///")
    if not url.startswith("sqlite:///") or Path(path).is_absolute():
        return url
    return f"sqlite:///{(base / path).resolve()}"


def _storm_watch(table: dict[str, Any] | None, base: Path) -> StormWatchConfig | None:
    """The `[storm_watch]` table: which program's storm rules, which alert source."""
    if table is None:
        return None
    try:
        program = model.load(table["program"])
    except model.ProgramError as err:
        raise ValueError(f"storm_watch.program: {err}") from err
    if not watch_rules(program):
        raise ValueError(f"storm_watch.program: {program.id} has no storm rule with action "
                         f"'no_discharge_charge_full'")
    source = str(table["source"])
    if not source.startswith(("http://", "https://")):
        source = str((base / source).resolve())
    return StormWatchConfig(program.id, source, timedelta(minutes=float(table.get("every_min", 5))))


def _prefs(owner: dict[str, Any]) -> OwnerPrefs:
    """The `[owner]` table: floor, ready-by time and target, what to do if not ready."""
    ready_by = owner.get("ready_by")
    return OwnerPrefs(
        min_soc_pct=float(owner.get("min_soc_pct", 20.0)),
        ready_by=time.fromisoformat(ready_by) if ready_by else None,
        ready_soc_pct=float(owner.get("ready_soc_pct", 80.0)),
        timezone=owner.get("timezone", "America/New_York"),
        opt_out_if_not_ready=bool(owner.get("opt_out_if_not_ready", True)),
    )


def load_agent(path: Path) -> AgentConfig:
    return agent_config(_read(path), Path(path).parent, str(path))


def load_fleet(path: Path) -> list[AgentConfig]:
    data = _read(path)
    defaults = data.get("defaults", {})
    entries = data.get("ven", [])
    if not entries:
        raise ConfigError(f"{path}: ven: no [[ven]] entries")
    return [agent_config(_merge(defaults, entry), Path(path).parent, f"{path} [[ven]] #{i + 1}")
            for i, entry in enumerate(entries)]
