"""Config files: the examples load, and every mistake is one message naming the file and key."""
import os
import shutil
from datetime import time, timedelta
from pathlib import Path

import pytest

from certs.pki import ensure_dev_pki
from flexadr import data as shipped
from ven import cli as ven_cli
from ven import config as ven_config
from vtn import config as vtn_config
from vtn.push import PushSettings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "config"


@pytest.fixture
def examples(tmp_path) -> Path:
    """examples/config copied with the PKI its comments say how to make (its planner
    reads the data shipped in flexadr/data)."""
    folder = tmp_path / "repo" / "examples" / "config"
    shutil.copytree(EXAMPLES, folder)
    ensure_dev_pki(folder / "pki", ["ven-001", "ven-002"])
    return folder


def original(name: str) -> str:
    return (EXAMPLES / name).read_text()


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def vtn_error(path: Path) -> str:
    with pytest.raises(vtn_config.ConfigError) as err:
        vtn_config.load(path)
    return str(err.value)


def ven_error(path: Path, fleet: bool = False) -> str:
    with pytest.raises(ven_config.ConfigError) as err:
        (ven_config.load_fleet if fleet else ven_config.load_agent)(path)
    return str(err.value)


def without_planner(text: str) -> str:
    return text[:text.index("[planner]")]


def test_example_vtn_config_resolves_paths_next_to_the_file(examples):
    settings = vtn_config.load(write(examples, "vtn.toml",
                                     without_planner(original("vtn.toml"))))
    assert settings.server.cert == (examples / "pki" / "vtn.crt").resolve()
    assert settings.database_url == f"sqlite:///{(examples / 'vtn.sqlite').resolve()}"
    assert settings.server.telemetry_interval.total_seconds() == 900
    assert settings.server.replay_past == timedelta(seconds=30)
    assert settings.server.replay_future == timedelta(seconds=5)
    assert settings.server.admin_host == "127.0.0.1" and settings.server.crl_file is None
    assert settings.server.webhook_allow_private is False


def test_example_vtn_config_has_a_planner_on_the_shipped_data(examples):
    planner = vtn_config.load(examples / "vtn.toml").planner
    assert planner.programs == ("connected_solutions", "managed_charging")
    assert planner.sources.load_csv == shipped.path("isone_hourly_load_2015-07_2019-12.csv")
    assert planner.sources.weather_csv.parent.name == shipped.NONCOMMERCIAL
    assert planner.every.total_seconds() == 3600


def test_example_ven_config_carries_owner_and_device(examples):
    config = ven_config.load_agent(examples / "ven.toml")
    assert config.prefs.min_soc_pct == 20 and config.cycle_cap_per_year == 50
    assert config.adapter == "sim" and config.adapter_config["kind"] == "battery"
    assert config.state_url.endswith(str(examples / "ven-state.sqlite"))


def test_fleet_entries_inherit_defaults_and_keep_their_own_preferences(examples):
    first, second = ven_config.load_fleet(examples / "fleet.toml")
    assert first.vtn_url == second.vtn_url and first.state_url == second.state_url
    assert second.prefs.ready_by == time(7, 0) and first.prefs.ready_by is None


def test_a_typo_is_named_with_its_path_and_the_key_meant(examples):
    text = without_planner(original("vtn.toml"))
    path = write(examples, "vtn.toml", text.replace("poll_interval_s", "poll_intervall_s")
                 + '[smtp]\nhost = "mail"\nsendr = "vtn@example.org"\n')
    assert vtn_error(path) == (f"{path}: smtp.sendr: unknown key (did you mean 'sender'?); "
                               "poll_intervall_s: unknown key (did you mean 'poll_interval_s'?); "
                               "smtp.sender: missing")
    agent = original("ven.toml").replace("[owner]", "[ownr]")
    assert ven_error(write(examples, "ven.toml", agent)).endswith(
        "ownr: unknown key (did you mean 'owner'?)")
    agent = original("ven.toml").replace("min_soc_pct", "min_soc")
    assert ven_error(write(examples, "ven.toml", agent)).endswith(
        "owner.min_soc: unknown key (did you mean 'min_soc_pct'?)")


def test_planner_typos_and_bad_values_are_named(examples):
    text = without_planner(original("vtn.toml"))
    (examples / "load.csv").write_text("")
    path = write(examples, "vtn.toml", text + '[planner]\nprograms = ["connected_solutions"]\n'
                 'load_csv = "load.csv"\nforcast = "own"\n')
    assert vtn_error(path) == f"{path}: planner.forcast: unknown key (did you mean 'forecast'?)"
    path = write(examples, "vtn.toml", text + '[planner]\nprograms = ["connected_solutions"]\n'
                 'load_csv = "load.csv"\nforecast = "isoo"\n')
    assert vtn_error(path) == f"{path}: planner.forecast: should be 'iso' or 'own', got 'isoo'"
    path = write(examples, "vtn.toml", text + '[planner]\nprograms = ["conected_solutions"]\n'
                 'load_csv = "load.csv"\n')
    assert f"{path}: planner.programs: no program 'conected_solutions'" in vtn_error(path)


def test_wrong_types_and_ranges_are_named(examples):
    text = without_planner(original("vtn.toml"))
    path = write(examples, "vtn.toml", text.replace("port = 8443", 'port = "28443x"'))
    assert vtn_error(path) == f"{path}: port: expected an integer, got '28443x'"
    path = write(examples, "vtn.toml", text.replace("port = 8443", "port = 70000"))
    assert vtn_error(path) == f"{path}: port: should be less than or equal to 65535, got 70000"
    path = write(examples, "vtn.toml", text + "admin_port = 8443\n")
    assert vtn_error(path) == f"{path}: (file): admin_port 8443 is also the OpenADR port"
    (examples / "short.secret").write_text("too short")
    path = write(examples, "vtn.toml", text + '[openadr31]\ntoken_secret_file = "short.secret"\n')
    assert vtn_error(path) == (f"{path}: openadr31.token_secret_file: fewer than 32 bytes in "
                               f"{examples / 'short.secret'} (e.g. `openssl rand -hex 32`)")
    path = write(examples, "vtn.toml", text + 'admin_cert = "pki/vtn.crt"\n'
                 'admin_key = "pki/vens/ven-001.key"\n')
    assert vtn_error(path) == (f"{path}: admin_key: not the key of {examples / 'pki/vtn.crt'}: "
                               f"{examples / 'pki/vens/ven-001.key'}")
    agent = original("ven.toml")
    for old, new, message in [
            ("capacity_kwh = 13.5", "capacity_kwh = -1", "capacity_kwh: should be greater than 0"),
            ("min_soc_pct = 20", "min_soc_pct = 120",
             "owner.min_soc_pct: should be less than or equal to 100"),
            ("min_soc_pct = 20", 'ready_by = "25:99"', "owner.ready_by: not a time of day"),
            ('name = "sim"', 'name = "simm"', "adapter.name: no adapter 'simm' is installed "
                                              "(did you mean 'sim'?)"),
            ("# vtn_fingerprint = \"AB:CD:...\"", 'vtn_fingerprint = "AB:CD"',
             "vtn_fingerprint: not a fingerprint")]:
        assert message in ven_error(write(examples, "ven.toml", agent.replace(old, new))), new


def test_files_are_checked_and_named(examples):
    text = without_planner(original("vtn.toml"))
    (examples / "pki" / "vtn.key").unlink()
    path = write(examples, "vtn.toml", text)
    assert vtn_error(path) == f"{path}: key: no such file: {examples / 'pki' / 'vtn.key'}"
    if os.geteuid() != 0:           # root reads anything
        (examples / "pki" / "vens" / "ven-001.crt").chmod(0)
        assert ven_error(examples / "ven.toml").endswith(
            f"cert: not readable (permission denied): {examples / 'pki/vens/ven-001.crt'}")
    missing = examples / "nope.toml"
    assert vtn_error(missing) == f"{missing}: no such config file"
    broken = write(examples, "broken.toml", "port = \n")
    assert vtn_error(broken).startswith(f"{broken}: not valid TOML")


def test_a_fleet_names_the_entry_and_reports_defaults_once(examples):
    text = original("fleet.toml")
    path = write(examples, "fleet.toml",
                 text.replace("\n[defaults]", "\n[defaults]\ntime_scal = 60"))
    assert ven_error(path, fleet=True) == (f"{path}: defaults.time_scal: unknown key "
                                           "(did you mean 'time_scale'?)")
    path = write(examples, "fleet.toml", text.replace("capacity_kwh = 75", "capacity_kwh = \"75\""))
    assert ven_error(path, fleet=True) == (f"{path}: ven[1].capacity_kwh: expected a number, "
                                           "got '75'")
    path = write(examples, "fleet.toml", text.replace('"ven-002"', '"ven-001"'))
    assert ven_error(path, fleet=True) == f"{path}: ven[1].ven_name: 'ven-001' is also ven[0]"
    path = write(examples, "fleet.toml", "[defaults]\n")
    assert ven_error(path, fleet=True) == f"{path}: ven: missing"


def test_a_missing_field_is_named(tmp_path):
    path = write(tmp_path, "ven.toml", 'ven_name = "x"\nvtn_url = "https://h"\n')
    assert ven_error(path) == (f"{path}: cert: missing; key: missing; ca_file: missing; "
                               "capacity_kwh: missing")


def test_ven_cli_reports_config_errors_with_exit_code_2(tmp_path, capsys):
    path = write(tmp_path, "fleet.toml", "[defaults]\n")
    assert ven_cli.main(["fleet", "--config", str(path)]) == 2
    assert capsys.readouterr().err == f"ven: {path}: ven: missing\n"


def test_the_push_section_sets_the_delivery_loop_and_defaults_to_its_own(examples):
    text = without_planner(original("vtn.toml"))
    assert vtn_config.load(write(examples, "vtn.toml", text)).server.push_settings == PushSettings()
    path = write(examples, "vtn.toml", text + "[push]\nscan_interval_s = 0.1\ntimeout_s = 5\n"
                 "first_retry_s = 1.5\nmax_retry_s = 120\nlease_s = 30\nin_flight = 8\n")
    assert vtn_config.load(path).server.push_settings == PushSettings(
        scan_interval=timedelta(milliseconds=100), timeout=timedelta(seconds=5),
        first_retry=timedelta(seconds=1.5), max_retry=timedelta(minutes=2),
        lease=timedelta(seconds=30), in_flight=8)


@pytest.mark.parametrize("section, message", [
    ("in_flght = 4", "push.in_flght: unknown key (did you mean 'in_flight'?)"),
    ("in_flight = 0", "push.in_flight: should be greater than or equal to 1, got 0"),
    ("in_flight = 2.5", "push.in_flight: expected an integer, got 2.5"),
    ("timeout_s = 0", "push.timeout_s: should be greater than 0, got 0"),
    ('lease_s = "60"', "push.lease_s: expected a number, got '60'"),
    ("first_retry_s = 600", "push: first_retry_s 600 is above max_retry_s 300"),
    ("lease_s = 30", "push: lease_s 30 must be more than twice timeout_s 20"),
])
def test_push_section_mistakes_are_named(examples, section, message):
    path = write(examples, "vtn.toml", without_planner(original("vtn.toml")) + f"[push]\n{section}\n")
    assert vtn_error(path) == f"{path}: {message}"
