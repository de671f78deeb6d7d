"""`vtn enrol` (the admin API's enrolment path and rules), `vtn status [EVENT]`, and
`vtn telemetry export` (a season as the files `vtn settle` reads), against a real store."""
from __future__ import annotations

import json
import shlex
from datetime import datetime, timedelta, timezone

import pytest

from certs.pki import ensure_dev_pki
from vtn.cli import main
from vtn.store import Event, Store, Ven

UTC = timezone.utc


@pytest.fixture
def site(tmp_path, database_url):
    pki = ensure_dev_pki(tmp_path / "pki", ["ev-1", "ev-2", "batt-1"])
    config = tmp_path / "vtn.toml"
    config.write_text(f'cert = "{pki.vtn.cert}"\nkey = "{pki.vtn.key}"\nca_file = "{pki.ca.cert}"\n'
                      f'database = "{database_url}"\npoll_interval_s = 10\n')
    store = Store(database_url)
    yield pki, config, store
    store.close()


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def records(store: Store) -> tuple:
    return ([p.participant_id for p in _participants(store)], [v.ven_id for v in store.vens()],
            [(e.participant_id, e.ven_id, e.program_id) for e in store.enrolments()])


def _participants(store: Store):
    from sqlmodel import select

    from vtn.store import Participant
    with store.session() as s:
        return s.exec(select(Participant).order_by(Participant.participant_id)).all()


def test_enrol_goes_through_the_programs_rules_and_stores_participant_and_enrolment(site, capsys):
    pki, config, store = site
    enrol = ["enrol", "--config", config, "ev-1", pki.vens["ev-1"].cert, "--program",
             "managed_charging", "--kind", "ev_managed", "--household", "h-1"]
    code, _, err = run(capsys, *enrol)                       # no charger rating: the rule refuses
    assert code == 1 and err == "enrol: enrolment refused: charger power is required " \
                                "(2.8-19.2 kW)\n"
    assert records(store) == ([], [], [])                    # not even the participant
    code, out, _ = run(capsys, *enrol, "--charger-kw", "7.2")
    assert code == 0 and out == "enrolled ev-1 (ev_managed, managed_charging) for participant " \
                                "ev-1 (new)\n"
    assert records(store) == (["ev-1"], ["ev-1"], [("ev-1", "ev-1", "managed_charging")])
    assert store.participant("ev-1").household_id == "h-1"
    assert store.ven("ev-1").fingerprint == pki.vens["ev-1"].fingerprint
    # a second charger in the same household: one device per household
    code, _, err = run(capsys, "enrol", "--config", config, "ev-2", pki.vens["ev-2"].cert,
                       "--program", "managed_charging", "--kind", "ev_managed",
                       "--household", "h-1", "--charger-kw", "7.2")
    assert code == 1 and "household h-1 already has a managed device in managed_charging (ev-1)" \
        in err
    # the same device into a program that conflicts with managed charging
    code, _, err = run(capsys, "enrol", "--config", config, "ev-1", pki.vens["ev-1"].cert,
                       "--program", "connected_solutions", "--kind", "ev_managed")
    assert code == 1 and "enrolment refused" in err
    assert records(store) == (["ev-1"], ["ev-1"], [("ev-1", "ev-1", "managed_charging")])
    code, _, err = run(capsys, "enrol", "--config", config, "batt-1", pki.vens["batt-1"].cert,
                       "--program", "connected_solutions", "--kind", "battery", "--email", "nope")
    assert code == 2 and err.startswith("--email: ") and len(err.splitlines()) == 1
    code, _, err = run(capsys, "enrol", "--config", config, "batt-1", pki.vens["ev-1"].cert,
                       "--program", "connected_solutions", "--kind", "battery")
    assert code == 1 and err == "enrol: this certificate is already enrolled for another VEN\n"
    assert len(records(store)[2]) == 1


def _event(store: Store, event_id: str, start: datetime, minutes: int, ven_ids: list[str],
           program_id: str = "connected_solutions", value: float = 5.0) -> None:
    store.add_event(Event(event_id=event_id, program_id=program_id, market_context="m",
                          signal_name="LOAD_DISPATCH", signal_type="setpoint", signal_value=value,
                          signal_unit="kW", start_utc=start,
                          end_utc=start + timedelta(minutes=minutes),
                          created_at=start - timedelta(days=1)), ven_ids)


def _battery(store: Store, ven_id: str) -> None:
    store.enrol(Ven(ven_id=ven_id, ven_name=ven_id, fingerprint=f"fp-{ven_id}",
                    program_id="connected_solutions", device_kind="battery"))


def test_status_shows_opts_online_and_fleet_kw_against_the_target(site, capsys):
    _, config, store = site
    now = datetime.now(UTC).replace(microsecond=0)
    for ven_id in ("b1", "b2", "b3"):
        _battery(store, ven_id)
    _event(store, "running", now - timedelta(minutes=30), 120, ["b1", "b2", "b3"])
    _event(store, "tomorrow", now + timedelta(days=1), 60, ["b1"])
    store.record_opt("b1", "running", "optIn", now)
    store.record_opt("b2", "running", "optOut", now)
    store.seen("b1", now)
    store.seen("b3", now - timedelta(hours=1))               # not online: 3 polls is 30 s
    store.record_telemetry("b1", now - timedelta(minutes=15), now, kw=-4.0)      # 4 kW out
    store.record_telemetry("b3", now - timedelta(hours=5), now - timedelta(hours=4), kw=-9.0)
    code, out, _ = run(capsys, "status", "--config", config, "running")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "event running: connected_solutions, far, modification 0"
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:6]}
    assert rows == {"b1": ["optIn", "yes", "-4.00"],             # as metered: 4 kW out
                    "b2": ["optOut", "no", "-"], "b3": ["none", "no", "-"]}
    # b2 opted out: the target is 2 VENs x 5 kW; only b1's fresh reading counts
    assert lines[6] == ("  3 VENs: 1 opted in, 1 opted out, 1 no answer; 1 online; "
                        "fleet 4.00 kW discharge now vs target 10.00 kW")
    code, out, _ = run(capsys, "status", "--config", config)
    now_line, next_line = out.splitlines()
    assert now_line.startswith("now  far       running ") and "target 10.00 kW" in now_line
    assert next_line.startswith("next far       tomorrow ") and "1 VENs:" in next_line
    assert "fleet" not in next_line                          # not running: no kW yet
    code, _, err = run(capsys, "status", "--config", config, "ghost")
    assert code == 1 and err == "status: no event ghost\n"


@pytest.mark.parametrize("program_id", ["connected_solutions", "managed_charging"])
def test_telemetry_export_settles_to_the_same_figures_as_the_store(site, capsys, tmp_path,
                                                                    program_id):
    _, config, store = site
    for ven_id in ("v1", "v2"):
        store.enrol(Ven(ven_id=ven_id, ven_name=ven_id, fingerprint=f"fp-{ven_id}",
                        program_id=program_id, device_kind="battery"))
    days = (14, 15, 16)
    for day in days:
        _event(store, f"e{day}", datetime(2026, 7, day, 21, tzinfo=UTC), 180, ["v1", "v2"],
               program_id=program_id)
    store.record_opt("v2", "e15", "optOut", datetime(2026, 7, 15, tzinfo=UTC))
    start = datetime(2026, 7, 10, tzinfo=UTC)
    for step in range(7 * 96):                          # a week of 15-minute readings
        at = start + timedelta(minutes=15 * step)
        kw = -3.3 - (step % 7) / 3 if 21 <= at.hour else 1.0 + (step % 5) / 7
        store.record_telemetry("v1", at, at + timedelta(minutes=15), kw=kw, soc_pct=50.0)
        if step % 3:
            store.record_telemetry("v2", at, at + timedelta(minutes=15), kw=kw / 2)
    code, from_store, err = run(capsys, "settle", "--program", program_id, "--season", "2026",
                                "--config", config)
    assert code == 0, err
    out_dir = tmp_path / "export"
    code, out, _ = run(capsys, "telemetry", "export", "--config", config, "--program", program_id,
                       "--season", "2026", "--out", out_dir)
    assert code == 0 and out.startswith("wrote 3 events and ")
    settle = shlex.split(out.splitlines()[-1])
    assert settle[:2] == ["vtn", "settle"]
    code, from_files, err = run(capsys, *settle[1:])
    assert code == 0, err
    assert json.loads(from_files) == json.loads(from_store)
    doc = json.loads(from_store)
    statuses = {(p["participant"], e["event_id"]): e["status"] for p in doc["participants"]
                for e in p["events"]}
    assert statuses[("v2", "e15")] == "opted_out" and len(statuses) == 6


def test_one_create_verb(site, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["event", "--config", str(site[1])])
    assert exit_.value.code == 2
    assert "invalid choice: 'event'" in capsys.readouterr().err
