"""Config files: the examples load, and mistakes get a message naming the field."""
from datetime import time
from pathlib import Path

import pytest

from ven import cli as ven_cli
from ven import config as ven_config
from vtn import config as vtn_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "config"


def test_example_vtn_config_resolves_paths_next_to_the_file():
    settings = vtn_config.load(EXAMPLES / "vtn.toml")
    assert settings.server.cert == (EXAMPLES / "pki" / "vtn.crt").resolve()
    assert settings.database_url == f"sqlite:///{(EXAMPLES / 'vtn.sqlite').resolve()}"
    assert settings.server.telemetry_interval.total_seconds() == 900


def test_example_ven_config_carries_owner_and_device():
    config = ven_config.load_agent(EXAMPLES / "ven.toml")
    assert config.prefs.min_soc_pct == 20 and config.cycle_cap_per_year == 50
    assert config.adapter == "sim" and config.adapter_config["kind"] == "battery"
    assert config.state_url.endswith(str(EXAMPLES / "ven-state.sqlite"))


def test_fleet_entries_inherit_defaults_and_keep_their_own_preferences():
    first, second = ven_config.load_fleet(EXAMPLES / "fleet.toml")
    assert first.vtn_url == second.vtn_url and first.state_url == second.state_url
    assert second.prefs.ready_by == time(7, 0) and first.prefs.ready_by is None


def test_a_missing_field_is_named(tmp_path):
    path = tmp_path / "ven.toml"
    path.write_text('ven_name = "x"\nvtn_url = "https://h"\n')
    with pytest.raises(ven_config.ConfigError, match="cert: missing"):
        ven_config.load_agent(path)


def test_a_bad_ready_by_time_is_a_config_error(tmp_path):
    text = (EXAMPLES / "ven.toml").read_text().replace("min_soc_pct = 20", 'ready_by = "25:99"')
    path = tmp_path / "ven.toml"
    path.write_text(text)
    with pytest.raises(ven_config.ConfigError):
        ven_config.load_agent(path)


def test_ven_cli_reports_config_errors_with_exit_code_1(tmp_path, capsys):
    path = tmp_path / "fleet.toml"
    path.write_text("[defaults]\n")
    assert ven_cli.main(["fleet", "--config", str(path)]) == 1
    assert "no [[ven]] entries" in capsys.readouterr().err


def test_example_vtn_config_has_a_planner_with_paths_next_to_the_file():
    planner = vtn_config.load(EXAMPLES / "vtn.toml").planner
    assert planner.programs == ("connected_solutions", "managed_charging")
    assert planner.sources.load_csv.name == "isone_hourly_load_2015-07_2019-12.csv"
    assert planner.sources.load_csv.is_file()
    assert planner.every.total_seconds() == 3600
