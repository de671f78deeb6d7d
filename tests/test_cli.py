"""`vtn` operator verbs against a real database: vens, events, telemetry export, db upgrade."""
from datetime import datetime, timedelta, timezone

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
                       "--setpoint-kw", "5", "--force", "--reason", "any day: a CLI test")
    assert code == 0 and "to 1 VENs" in out
    event_id = out.split()[1]
    code, out, _ = run(capsys, "events", "list", "--config", str(vtn_toml))
    assert event_id in out and " far " in out

    store.record_points("batt-1", [(start, start + timedelta(minutes=15),
                                    {"kw": -4.5, "soc_pct": 70.0, "online": True})])
    csv_path = vtn_toml.parent / "out.csv"
    code, out, _ = run(capsys, "telemetry", "export", "--config", str(vtn_toml), "--event",
                       event_id, "--csv", str(csv_path))
    assert code == 0
    lines = csv_path.read_text().splitlines()
    assert lines[1].split(",")[:4] == ["batt-1", start.isoformat(),
                                       (start + timedelta(minutes=15)).isoformat(), "-4.5"]

    code, out, _ = run(capsys, "events", "cancel", "--config", str(vtn_toml), event_id)
    assert code == 0 and "modification 1" in out
    code, _, err = run(capsys, "events", "cancel", "--config", str(vtn_toml), event_id)
    assert code == 1 and "cancelled" in err
    code, out, _ = run(capsys, "events", "list", "--config", str(vtn_toml), "--status",
                       "cancelled")
    assert event_id in out

    code, out, _ = run(capsys, "vens", "list", "--config", str(vtn_toml))
    assert "batt-1" in out and "never" in out
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
    code, _, err = run(capsys, "telemetry", "export", "--config", str(vtn_toml), "--event", "nope",
                       "--csv", "-")
    assert code == 1 and "no event nope" in err
    code, _, err = run(capsys, "vens", "list", "--config", str(vtn_toml.parent / "missing.toml"))
    assert code == 2 and "no such config file" in err
    assert store.events() == []
    store.close()
