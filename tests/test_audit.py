"""The audit trail: one row per change, in the change's transaction, queried by who/what/when."""
import json
from datetime import datetime, timedelta, timezone

import pytest

from certs.pki import ensure_dev_pki
from flexadr.clock import ManualClock
from tests.hostile_peer import snapshot
from tests.test_admin import _call, api  # noqa: F401  (api: a fixture)
from tests.test_cli import run, vtn_toml  # noqa: F401  (vtn_toml: a fixture)
from vtn import audit, event_control
from vtn.operator_input import EventRequest, parse
from vtn.settlement import settle
from vtn.settlement.html_report import to_html
from vtn.settlement.output import to_csv
from vtn.settlement.params import params_for
from vtn.settlement.settle import to_json_dict
from vtn.settlement.store_adapter import query_season
from vtn.store import Participant, Ven

T0 = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)


def test_a_row_is_written_in_the_callers_transaction_and_read_back(store):
    clock = ManualClock(T0)
    with store.transaction():
        store.add_participant(Participant(participant_id="p1", name="One", household_id="h1"))
        with store.session() as s:
            audit.record(s, actor="cli:ops", action="participant.create",
                         subject_type="participant", subject_id="p1", before=None,
                         after={"name": "One", "at": T0}, reason="new customer", clock=clock)
    with store.session() as s:
        [row] = audit.query(s, actor="cli:ops")
    assert (row.at, row.action, row.subject_id, row.reason) == (
        T0, "participant.create", "p1", "new customer")
    assert audit.as_dict(row)["after"] == {"name": "One", "at": "2026-07-01T12:00:00Z"}
    assert audit.as_dict(row)["before"] is None


def test_a_rolled_back_change_leaves_neither_the_change_nor_its_row(store):
    with pytest.raises(RuntimeError), store.transaction():
        store.add_participant(Participant(participant_id="p1", name="One", household_id="h1"))
        with store.session() as s:
            audit.record(s, actor="admin-token", action="participant.create",
                         subject_type="participant", subject_id="p1", before=None, after={})
        raise RuntimeError("refused half-way")
    with store.session() as s:
        assert audit.query(s) == []
    assert store.participant("p1") is None


def test_query_filters_by_actor_action_subject_and_time(store):
    clock = ManualClock(T0)
    with store.transaction(), store.session() as s:
        for actor, action in (("a", "event.create"), ("b", "event.cancel"), ("a", "ven.disable")):
            audit.record(s, actor=actor, action=action, subject_type=action.split(".")[0],
                         subject_id="x", before={}, after={}, clock=clock)
            clock.advance(timedelta(hours=1))
    with store.session() as s:
        assert [r.action for r in audit.query(s, actor="a")] == ["event.create", "ven.disable"]
        assert [r.action for r in audit.query(s, subject_type="event")] == [
            "event.create", "event.cancel"]
        assert [r.action for r in audit.query(s, since=T0 + timedelta(hours=1),
                                               until=T0 + timedelta(hours=2))] == ["event.cancel"]
        assert [r.action for r in audit.query(s, action="ven.disable")] == ["ven.disable"]
        assert len(audit.query(s, limit=2)) == 2


# --- every change through the admin API writes its row; a refused one writes none ------------

GOOD = {"program_id": "connected_solutions", "start": "2026-07-02T16:00:00-04:00",
        "minutes": 120, "setpoint_kw": 5}


def _rows(store, **filters):
    with store.session() as s:
        return [audit.as_dict(row) for row in audit.query(s, **filters)]


def _enrol(store, pki, name="batt-1", program="connected_solutions", kind="battery"):
    store.enrol(Ven(ven_id=name, ven_name=name, fingerprint=pki.vens[name].fingerprint,
                    program_id=program, device_kind=kind))


async def test_event_create_modify_cancel_and_override_are_audited(api):
    session, vtn, pki, clock = api
    store = vtn.store
    _enrol(store, pki)
    before = snapshot(store)
    status, body = await _call(session, "POST", "/api/events", json={**GOOD, "minutes": 6})
    assert (status, body["violations"][0]["rule"]) == (422, "durations")
    assert snapshot(store) == before          # refused: no event, no audit row

    status, event = await _call(session, "POST", "/api/events", json=GOOD)
    event_id = event["event_id"]
    status, _ = await _call(session, "PATCH", f"/api/events/{event_id}", json={"setpoint_kw": 7.5})
    assert status == 200
    status, _ = await _call(session, "PATCH", f"/api/events/{event_id}", json={
        "end": "2026-07-02T20:30:00-04:00", "override_reason": "ISO asked for 30 more minutes"})
    assert status == 200
    status, _ = await _call(session, "POST", f"/api/events/{event_id}/cancel")
    assert status == 200
    rows = _rows(store, subject_type="event")
    assert [r["action"] for r in rows] == ["event.create", "event.modify", "event.modify",
                                           "event.override", "event.cancel"]
    assert {r["actor"] for r in rows} == {"admin-token"}
    create, setpoint, longer, override, cancel = rows
    assert create["before"] is None and create["after"]["signal_value"] == 5.0
    assert (setpoint["before"]["signal_value"], setpoint["after"]["signal_value"]) == (5.0, 7.5)
    assert setpoint["reason"] is None
    assert (longer["before"]["end_utc"], longer["after"]["end_utc"]) == (
        "2026-07-02T22:00:00Z", "2026-07-03T00:30:00Z")
    assert longer["reason"] == override["reason"] == "ISO asked for 30 more minutes"
    assert [v["rule"] for v in override["after"]["violations"]] == ["window", "durations"]
    assert (cancel["before"]["status"], cancel["after"]["status"]) == ("far", "cancelled")
    assert {row["rule"] for row in json.loads(store.event(event_id).rule_overrides)} == {
        "window", "durations"}


async def test_ven_actions_are_audited_and_a_refused_one_writes_nothing(api):
    session, vtn, pki, clock = api
    store = vtn.store
    _enrol(store, pki)
    store.set_registration("batt-1", "reg-1", clock.now())
    for action, body in [("cancel-registration", None), ("reregister", None),
                         ("disable", {"reason": "meter tampering"}), ("enable", None),
                         ("revoke", {"reason": "key leaked"})]:
        status, answer = await _call(session, "POST", f"/api/vens/batt-1/{action}", json=body)
        assert status == 200, (action, answer)
    before = snapshot(store)
    status, _ = await _call(session, "POST", "/api/vens/batt-1/enable")
    assert status == 409 and snapshot(store) == before       # revoked: refused, no row
    rows = _rows(store, subject_type="ven")
    assert [r["action"] for r in rows] == ["ven.cancel_registration", "ven.reregister",
                                           "ven.disable", "ven.enable", "ven.revoke"]
    disable, enable, revoke = rows[2:]
    assert (disable["before"]["disabled_at"], disable["reason"]) == (None, "meter tampering")
    assert disable["after"]["disabled_at"] == "2026-07-01T12:00:00Z"
    assert disable["after"]["registration_id"] is None
    assert enable["after"]["disabled_at"] is None
    assert revoke["after"]["revoked_at"] == "2026-07-01T12:00:00Z"


async def test_participants_enrolments_and_programs_are_audited(api):
    session, vtn, pki, clock = api
    store = vtn.store
    person = {"participant_id": "alice", "name": "Alice", "household_id": "h1",
              "email": "alice@example.org"}
    before = snapshot(store)
    status, _ = await _call(session, "POST", "/api/participants", json={**person, "email": "x"})
    assert status == 400 and snapshot(store) == before
    for name in ("Alice", "Alice Smith"):
        status, _ = await _call(session, "POST", "/api/participants", json={**person, "name": name})
        assert status == 201
    enrol = {"participant_id": "alice", "program_id": "managed_charging", "ven_name": "ev-1",
             "device_kind": "ev_managed", "fingerprint": pki.vens["ev-1"].fingerprint,
             "charger_kw": 7.2}
    before = snapshot(store)
    status, body = await _call(session, "POST", "/api/enrolments", json={**enrol, "charger_kw": 99})
    assert status == 409 and body["rules"] == ["charger_power_range"]
    assert snapshot(store) == before
    status, _ = await _call(session, "POST", "/api/enrolments", json=enrol)
    assert status == 201
    status, _ = await _call(session, "PUT", "/api/programs/managed_charging")
    assert status == 200        # already loaded by the enrolment: no change, no row
    status, _ = await _call(session, "PUT", "/api/programs/byod_vpp")
    assert status == 200
    rows = _rows(store)
    assert [(r["action"], r["subject_id"]) for r in rows] == [
        ("participant.create", "alice"), ("participant.update", "alice"),
        ("ven.enrol", "ev-1"), ("enrolment.create", "1"), ("program.load", "byod_vpp")]
    assert (rows[1]["before"]["name"], rows[1]["after"]["name"]) == ("Alice", "Alice Smith")
    assert rows[3]["after"]["ven_id"] == "ev-1" and rows[3]["after"]["new_ven"] is True
    # The same rows over the admin API, filtered; a bad filter is a 400.
    status, body = await _call(session, "GET", "/api/audit?subject_type=participant&limit=1")
    assert (status, [r["action"] for r in body]) == (200, ["participant.create"])
    status, body = await _call(session, "GET", "/api/audit?actor=admin-token&since="
                               "2026-07-01T12:00:00Z&until=2026-07-01T12:00:01Z")
    assert len(body) == 5 and body[0]["at"] == "2026-07-01T12:00:00Z"
    for query, field in [("?since=yesterday", "since"), ("?limit=0", "limit"),
                         ("?limit=x", "limit")]:
        status, body = await _call(session, "GET", "/api/audit" + query)
        assert (status, body["field"]) == (400, field), query


# --- the CLI: the OS user is the actor; `vtn audit export` -----------------------------------

def test_cli_changes_are_audited_as_the_os_user_and_exported(vtn_toml, store, capsys,
                                                              monkeypatch):
    monkeypatch.setenv("USER", "alice")
    monkeypatch.setenv("LOGNAME", "alice")
    store.enrol(Ven(ven_id="batt-1", ven_name="batt-1", fingerprint="fp1",
                    program_id="connected_solutions", device_kind="battery"))
    config = ["--config", str(vtn_toml)]
    create = ["events", "create", *config, "--program", "connected_solutions",
              "--start", "2027-07-01T16:00:00-04:00", "--setpoint-kw", "5"]
    before = snapshot(store)
    code, _, err = run(capsys, *create, "--minutes", "6")
    assert code == 2 and err.startswith("durations: ") and snapshot(store) == before
    code, out, _ = run(capsys, *create, "--minutes", "6", "--override", "a 6-minute test")
    assert code == 0 and "overridden: a 6-minute test" in out
    event_id = out.split()[1]
    assert run(capsys, "events", "cancel", *config, event_id)[0] == 0
    assert run(capsys, "vens", "disable", *config, "batt-1", "--reason", "tampering")[0] == 0

    code, out, _ = run(capsys, "audit", "export", *config, "--format", "json")
    rows = json.loads(out)
    assert [(r["actor"], r["action"]) for r in rows] == [
        ("cli:alice", "event.create"), ("cli:alice", "event.override"),
        ("cli:alice", "event.cancel"), ("cli:alice", "ven.disable")]
    assert rows[1]["after"]["violations"][0]["rule"] == "durations"
    code, out, _ = run(capsys, "audit", "export", *config, "--action", "event.override")
    lines = out.splitlines()
    assert lines[0] == "id,at,actor,action,subject_type,subject_id,reason,before,after"
    assert len(lines) == 2 and ",event.override,event," in lines[1]
    assert "a 6-minute test" in lines[1]
    first = rows[0]["at"]
    code, out, _ = run(capsys, "audit", "export", *config, "--since", first, "--format", "json",
                       "--actor", "cli:bob")
    assert json.loads(out) == []
    code, _, err = run(capsys, "audit", "export", *config, "--since", "yesterday")
    assert code == 2 and err.startswith("--since: ")


def test_vtn_enrol_is_audited(vtn_toml, store, capsys, tmp_path):
    pki = ensure_dev_pki(tmp_path / "ven-pki", ["ven-9"])
    code, _, _ = run(capsys, "enrol", "--config", str(vtn_toml), "ven-9",
                     str(pki.vens["ven-9"].cert), "--program", "connected_solutions",
                     "--kind", "battery")
    assert code == 0
    rows = {row["action"]: row for row in _rows(store)}
    assert sorted(rows) == ["enrolment.create", "participant.create", "ven.enrol"]
    assert all(row["actor"].startswith("cli:") for row in rows.values())
    row = rows["ven.enrol"]
    assert row["subject_id"] == "ven-9"
    assert row["after"]["fingerprint"] == pki.vens["ven-9"].fingerprint
    assert rows["enrolment.create"]["after"]["ven_id"] == "ven-9"


# --- an overridden event is flagged in settlement ------------------------------------------

def test_an_overridden_event_is_flagged_in_every_settlement_output(store):
    store.enrol(Ven(ven_id="v1", ven_name="v1", fingerprint="fp1",
                    program_id="connected_solutions", device_kind="battery"))
    clock = ManualClock(T0)
    program = event_control.load_program("connected_solutions")
    plain = event_control.create(store, clock, parse(EventRequest, {
        **GOOD, "start": "2026-07-02T16:00:00-04:00"}), program, audit.ADMIN_TOKEN)
    short = event_control.create(store, clock, parse(EventRequest, {
        **GOOD, "start": "2026-07-03T16:00:00-04:00", "minutes": 30,
        "override_reason": "ISO emergency, half an hour"}), program, audit.ADMIN_TOKEN)
    for event in (plain, short):
        store.record_points("v1", [(event.start_utc, event.end_utc, {"kw": -3.0})])
    result = settle("connected_solutions", query_season(
        store, params_for("connected_solutions"), 2026), fleet=True)

    flag = "durations overridden: ISO emergency, half an hour"
    assert result.overrides == {short.event_id: flag}
    doc = to_json_dict(result)
    assert doc["overridden_events"] == {short.event_id: flag}
    rows = {e["event_id"]: e for e in doc["participants"][0]["events"]}
    assert rows[short.event_id]["override"] == flag and "override" not in rows[plain.event_id]
    assert f"event {short.event_id} was dispatched by override of the program rules: {flag}" \
        in doc["warnings"]
    header, row = to_csv(result).splitlines()
    cells = dict(zip(header.split(","), row.split(",")))
    assert cells["overridden_events"] == short.event_id
    html = to_html(result)
    assert html.count(f"override: {flag}") == 1 and f"<th class=\"\">override</th>" in html
