"""Operator input (admin API and CLI) through one set of models: every bad value is a 400
(or exit 2) naming its field, every broken dispatch rule a 422 (or exit 2) naming the rule,
and the store is exactly as it was."""
import json
import math


from tests.hostile_peer import snapshot
from tests.test_admin import AUTH, _call, api  # noqa: F401  (api: a fixture)
from tests.test_cli import vtn_toml  # noqa: F401  (a fixture)
from vtn import ven_control
from vtn.audit import ADMIN_TOKEN
from vtn.cli import main
from vtn.store import Ven

GOOD = {"program_id": "connected_solutions", "start": "2026-07-02T16:00:00-04:00",
        "minutes": 120, "setpoint_kw": 5}


def _enrol(store, pki, name="batt-1", program="connected_solutions", kind="battery"):
    store.enrol(Ven(ven_id=name, ven_name=name, fingerprint=pki.vens[name].fingerprint,
                    program_id=program, device_kind=kind))


async def _raw(session, method, path, text):
    """A body as the client wrote it: JSON's Infinity / NaN literals included."""
    async with session.request(method, path, data=text, headers={
            **AUTH, "Content-Type": "application/json"}) as response:
        return response.status, await response.json()


EVENT_CASES = [
    # (what, changes to GOOD (None: drop the key), the field the 400 must name)
    ("Infinity kW", '"setpoint_kw": Infinity', "setpoint_kw"),
    ("-Infinity kW", '"setpoint_kw": -Infinity', "setpoint_kw"),
    ("NaN kW", '"setpoint_kw": NaN', "setpoint_kw"),
    ("1e400 kW", '"setpoint_kw": 1e400', "setpoint_kw"),
    ("a string of kW", '"setpoint_kw": "5"', "setpoint_kw"),
    ("a boolean of kW", '"setpoint_kw": true', "setpoint_kw"),
    ("10^12 minutes", '"minutes": 1000000000000', "minutes"),
    ("0 minutes", '"minutes": 0', "minutes"),
    ("1.5 minutes", '"minutes": 1.5', "minutes"),
    ("minutes as text", '"minutes": "60"', "minutes"),
    ("year 9999", '"start": "9999-12-31T23:00:00Z"', "start"),
    ("start as a number", '"start": 1782000000', "start"),
    ("start without offset", '"start": "2026-07-02T16:00:00"', "start"),
    ("start not a time", '"start": "tomorrow"', "start"),
    ("program id as a number", '"program_id": 5', "program_id"),
    ("program id as a path", '"program_id": "../../etc/passwd"', "program_id"),
    ("unknown program", '"program_id": "no_such_program"', "program_id"),
    ("VEN ids of the wrong type", '"ven_ids": [1, 2]', "ven_ids.0"),
    ("VEN ids as one string", '"ven_ids": "batt-1"', "ven_ids"),
    ("an unknown field", '"setpoint": 5', "setpoint"),
    ("force is no field", '"force": true', "force"),
    ("an override without its reason", '"override_reason": ""', "override_reason"),
    ("end and minutes", '"end": "2026-07-02T18:00:00-04:00"', "minutes"),
    ("a profile and a setpoint", '"intervals": [{"minutes": 120, "value": 5}]', "intervals"),
    ("a profile shorter than the event",
     '"setpoint_kw": null, "intervals": [{"minutes": 60, "value": 5}]', "intervals"),
    ("an Infinity interval", '"setpoint_kw": null, "intervals": [{"minutes": 60, "value": 5}, '
                             '{"minutes": 60, "value": Infinity}]', "intervals.1.value"),
    ("an interval of 0 minutes", '"setpoint_kw": null, "intervals": [{"minutes": 0, "value": 5}, '
                                 '{"minutes": 120, "value": 5}]', "intervals.0.minutes"),
]


def _body(change: str) -> str:
    """GOOD with `change` written over it, as JSON text (later keys win)."""
    return json.dumps(GOOD)[:-1] + ", " + change + "}"


async def test_bad_event_input_is_a_400_naming_the_field_and_stores_nothing(api):
    session, vtn, pki, _ = api
    _enrol(vtn.store, pki)
    _enrol(vtn.store, pki, "ev-1", "managed_charging", "ev_managed")
    before = snapshot(vtn.store)
    for what, change, field in EVENT_CASES:
        status, body = await _raw(session, "POST", "/api/events", _body(change))
        assert status == 400, (what, status, body)
        assert body["field"] == field, (what, body)
        assert body["error"].startswith(f"{field}: "), (what, body)
        assert snapshot(vtn.store) == before, what
    for text in ("[]", '"x"', "{not json"):
        status, body = await _raw(session, "POST", "/api/events", text)
        assert status == 400, (text, body)
    assert snapshot(vtn.store) == before
    status, event = await _raw(session, "POST", "/api/events", json.dumps(GOOD))
    assert status == 201 and event["signal_value"] == 5.0 and event["forced_reason"] is None


RULE_CASES = [
    # (what, changes to GOOD, the rule the 422 names first, overridable)
    ("negative kW in a discharge program", '"setpoint_kw": -5', "signal", False),
    ("above the program's inverter limit", '"setpoint_kw": 60', "signal", False),
    ("an unknown VEN", '"ven_ids": ["ghost"]', "targets", False),
    ("a VEN of another program", '"ven_ids": ["ev-1"]', "targets", False),
    ("out of season", '"start": "2026-10-05T16:00:00-04:00"', "season", True),
    ("a program holiday", '"start": "2026-07-04T16:00:00-04:00"', "holidays", True),
    ("outside the window", '"start": "2026-07-02T10:00:00-04:00"', "window", True),
    ("longer than the program allows", '"minutes": 240, "start": "2026-07-02T15:00:00-04:00"',
     "durations", True),
    ("6 minutes", '"minutes": 6', "durations", True),
    ("less than the program's notice", '"start": "2026-07-01T16:00:00-04:00"', "notice", True),
    ("a negative interval in a discharge program",
     '"setpoint_kw": null, "intervals": [{"minutes": 60, "value": 5}, '
     '{"minutes": 60, "value": -5}]', "signal", False),
]


async def test_a_broken_dispatch_rule_is_a_422_naming_it_and_stores_nothing(api):
    session, vtn, pki, _ = api
    _enrol(vtn.store, pki)
    _enrol(vtn.store, pki, "ev-1", "managed_charging", "ev_managed")
    before = snapshot(vtn.store)
    for what, change, rule, overridable in RULE_CASES:
        status, body = await _raw(session, "POST", "/api/events", _body(change))
        assert status == 422, (what, status, body)
        assert body["violations"][0]["rule"] == rule, (what, body)
        assert body["violations"][0]["overridable"] is overridable, (what, body)
        assert body["error"].startswith(f"refused by the dispatch rules: {rule}: "), (what, body)
        assert snapshot(vtn.store) == before, what


async def test_a_fixed_signal_program_takes_no_setpoint(api):
    session, vtn, pki, _ = api
    _enrol(vtn.store, pki, "ev-1", "managed_charging", "ev_managed")
    before = snapshot(vtn.store)
    event = {"program_id": "managed_charging", "start": "2026-07-02T13:00:00-04:00",
             "minutes": 480}
    status, body = await _call(session, "POST", "/api/events", json={**event, "setpoint_kw": 3})
    assert (status, body["field"]) == (422, "setpoint_kw") and "fixed" in body["error"]
    assert snapshot(vtn.store) == before
    status, body = await _call(session, "POST", "/api/events", json=event)
    assert status == 201 and body["signal_value"] == 0.0


async def test_an_event_with_a_profile_is_stored_interval_by_interval(api):
    session, vtn, pki, _ = api
    _enrol(vtn.store, pki)
    _enrol(vtn.store, pki, "ev-1", "managed_charging", "ev_managed")
    profile = [{"minutes": 40, "value": 5.0}, {"minutes": 40, "value": 2.0},
               {"minutes": 40, "value": 4.0}]
    status, event = await _call(session, "POST", "/api/events",
                                json={**GOOD, "setpoint_kw": None, "intervals": profile})
    assert status == 201 and json.loads(event["interval_schedule"]) == [
        [2400.0, 5.0], [2400.0, 2.0], [2400.0, 4.0]]
    capacities = {"program_id": "managed_charging", "start": "2026-07-02T13:00:00-04:00",
                  "minutes": 480}
    status, body = await _call(session, "POST", "/api/events", json={**capacities, "intervals": [
        {"minutes": 240, "value": 0.5}, {"minutes": 240, "value": 1.5}]})
    assert (status, body["field"]) == (422, "intervals.1.value")
    assert body["violations"][0]["rule"] == "signal" and "0-1" in body["error"]
    status, event = await _call(session, "POST", "/api/events", json={**capacities, "intervals": [
        {"minutes": 240, "value": 0.5}, {"minutes": 240, "value": 0.25}]})
    assert status == 201 and event["signal_value"] == 0.5


async def test_an_override_lifts_program_rules_only_and_the_reason_is_stored(api):
    session, vtn, pki, _ = api
    _enrol(vtn.store, pki)
    override = {"override_reason": "grid emergency declared by the ISO"}
    before = snapshot(vtn.store)
    # Not overridable: shape and bounds (400), sign (422).
    for change, status_wanted in (('"setpoint_kw": -5', 422), ('"setpoint_kw": Infinity', 400),
                                  ('"start": "9999-01-01T00:00:00Z"', 400),
                                  ('"minutes": 100000', 400)):
        status, body = await _raw(session, "POST", "/api/events",
                                  _body(change + ", " + json.dumps(override)[1:-1]))
        assert status == status_wanted, (change, body)
    assert snapshot(vtn.store) == before
    status, event = await _call(session, "POST", "/api/events", json={
        **GOOD, "start": "2026-07-01T10:00:00-04:00", **override})
    assert status == 201, event
    assert event["forced_reason"] == "grid emergency declared by the ISO"
    assert {row["rule"] for row in json.loads(event["rule_overrides"])} == {"notice", "window"}
    assert vtn.store.event(event["event_id"]).forced_reason == event["forced_reason"]


async def test_a_disabled_ven_is_not_a_target(api):
    session, vtn, pki, clock = api
    _enrol(vtn.store, pki)
    _enrol(vtn.store, pki, "ev-2")
    ven_control.disable(vtn.store, "ev-2", clock, ADMIN_TOKEN, "tampering suspected")
    before = snapshot(vtn.store)
    status, body = await _call(session, "POST", "/api/events", json={**GOOD, "ven_ids": ["ev-2"]})
    assert (status, body["field"]) == (422, "ven_ids") and "disabled" in body["error"]
    assert body["violations"][0]["rule"] == "targets"
    assert snapshot(vtn.store) == before
    status, event = await _call(session, "POST", "/api/events", json=GOOD)   # default targets
    assert status == 201
    assert [t.ven_id for t in vtn.store.targets(event["event_id"])] == ["batt-1"]


async def test_bad_modifications_are_refused_and_change_nothing(api):
    session, vtn, pki, _ = api
    _enrol(vtn.store, pki)
    status, event = await _call(session, "POST", "/api/events", json=GOOD)
    path = f"/api/events/{event['event_id']}"
    before = snapshot(vtn.store)
    for text, status_wanted, field in [('{"setpoint_kw": Infinity}', 400, "setpoint_kw"),
                                       ('{"setpoint_kw": NaN}', 400, "setpoint_kw"),
                                       ('{"setpoint_kw": -1}', 422, "setpoint_kw"),
                                       ('{"start": "9999-12-31T00:00:00Z"}', 400, "start"),
                                       ('{"start": "2026-07-02T10:00:00-04:00"}', 422, "start"),
                                       ('{"end": "2026-07-02T21:00:00-04:00"}', 422, "end"),
                                       ('{"end": "2026-07-02T15:00:00-04:00"}', 400, "end"),
                                       ('{"end": 5}', 400, "end"),
                                       ('{"signal_value": 3}', 400, "signal_value"),
                                       ("{}", 400, "body")]:
        status, body = await _raw(session, "PATCH", path, text)
        assert (status, body["field"]) == (status_wanted, field), (text, body)
    assert snapshot(vtn.store) == before
    status, body = await _call(session, "PATCH", path, json={"setpoint_kw": 7.5})
    assert (status, body["signal_value"], body["modification_number"]) == (200, 7.5, 1)


async def test_participant_enrolment_and_export_input(api):
    session, vtn, pki, _ = api
    before = snapshot(vtn.store)
    person = {"participant_id": "alice", "name": "Alice", "household_id": "h1",
              "email": "alice@example.org"}
    for change, field in [({"participant_id": 5}, "participant_id"),
                          ({"email": "not-an-address"}, "email"),
                          ({"channel": "sms"}, "channel"),
                          ({"channel": "webhook"}, "webhook_url"),
                          ({"channel": "webhook", "webhook_url": "http://169.254.169.254/x"},
                           "webhook_url"),
                          ({"channel": "webhook", "webhook_url": "http://127.0.0.1:8080/"},
                           "webhook_url"),
                          ({"channel": "webhook", "webhook_url": "gopher://example.org/"},
                           "webhook_url")]:
        status, body = await _call(session, "POST", "/api/participants", json={**person, **change})
        assert (status, body["field"]) == (400, field), (change, body)
    enrol = {"participant_id": "alice", "program_id": "managed_charging", "ven_name": "ev-1",
             "device_kind": "ev_managed", "fingerprint": pki.vens["ev-1"].fingerprint}
    for text, field in [('"charger_kw": Infinity', "charger_kw"),
                        ('"charger_kw": "7"', "charger_kw"), ('"charger_kw": -7', "charger_kw"), ('"ven_name": ["ev-1"]', "ven_name"),
                        ('"fingerprint": "zz"', "fingerprint")]:
        status, body = await _raw(session, "POST", "/api/enrolments",
                                  json.dumps(enrol)[:-1] + ", " + text + "}")
        assert (status, body["field"]) == (400, field), (text, body)
    for query, field in [("?ven_id=x&start=garbage", "start"), ("?ven_id=x&end=1", "end")]:
        status, body = await _call(session, "GET", "/api/telemetry.csv" + query)
        assert (status, body["field"]) == (400, field), (query, body)
    assert snapshot(vtn.store) == before
    status, body = await _call(session, "POST", "/api/participants", json=person)
    assert status == 201


async def test_times_are_answered_in_utc_with_z(api):
    session, vtn, pki, _ = api
    _enrol(vtn.store, pki)
    status, event = await _call(session, "POST", "/api/events", json=GOOD)
    assert (event["start_utc"], event["end_utc"]) == ("2026-07-02T20:00:00Z",
                                                      "2026-07-02T22:00:00Z")
    status, events = await _call(session, "GET", "/api/events")
    assert all(e["created_at"].endswith("Z") for e in events)
    assert all(not math.isnan(e["signal_value"]) for e in events)


# --- the CLI reads through the same models ---------------------------------------------------

def test_cli_verbs_refuse_bad_values_with_exit_2_and_store_nothing(vtn_toml, store, capsys):
    store.enrol(Ven(ven_id="batt-1", ven_name="batt-1", fingerprint="fp1",
                    program_id="connected_solutions", device_kind="battery"))
    before = snapshot(store)
    config = ["--config", str(vtn_toml)]
    create = ["events", "create", *config, "--program", "connected_solutions",
              "--start", "2027-07-01T16:00:00-04:00"]
    for argv, flag in [
        (create + ["--minutes", "60", "--setpoint-kw", "inf"], "--setpoint-kw"),
        (create + ["--minutes", "60", "--setpoint-kw", "nan"], "--setpoint-kw"),
        (create + ["--minutes", "1000000000000", "--setpoint-kw", "5"], "--minutes"),
        (["events", "create", *config, "--program", "connected_solutions", "--start",
          "9999-12-31T23:00:00Z", "--minutes", "60", "--setpoint-kw", "5"], "--start"),
        (create + ["--minutes", "120", "--setpoint-kw", "5", "--override", ""], "--override"),
        (create + ["--minutes", "60", "--intervals", "30:5,30:inf"], "--intervals"),
        (create + ["--minutes", "60", "--intervals", "30:5"], "--intervals"),
        (["events", "modify", *config, "some-event", "--setpoint-kw", "inf"], "--setpoint-kw"),
        (["events", "modify", *config, "some-event"], "body"),
        (["vens", "disable", *config, "batt-1", "--reason", ""], "--reason"),
        (["enrol", *config, "two words", str(vtn_toml), "--program", "connected_solutions",
          "--kind", "battery"], "name"),
        (["enrol", *config, "batt-2", str(vtn_toml), "--program", "no_such_program",
          "--kind", "battery"], "--program"),
        (["enrol", *config, "batt-2", str(vtn_toml), "--program", "connected_solutions",
          "--kind", "battery"], str(vtn_toml)),         # a config file is not a certificate
    ]:
        code = main(argv)
        out, err = capsys.readouterr()
        assert code == 2, (argv, code, err)
        assert err.startswith(f"{flag}: ") and len(err.strip().splitlines()) == 1, (argv, err)
        assert snapshot(store) == before, argv
    code = main(["vens", "disable", *config, "ghost"])
    assert code == 1 and "no VEN ghost" in capsys.readouterr().err
    assert snapshot(store) == before


def test_cli_rule_refusals_are_one_line_per_violation_with_exit_2(vtn_toml, store, capsys):
    store.enrol(Ven(ven_id="batt-1", ven_name="batt-1", fingerprint="fp1",
                    program_id="connected_solutions", device_kind="battery"))
    before = snapshot(store)
    create = ["events", "create", "--config", str(vtn_toml), "--program", "connected_solutions",
              "--start", "2027-07-01T16:00:00-04:00"]
    for argv, rules in [
        (create + ["--minutes", "120", "--setpoint-kw", "-3"], ["signal"]),
        (create + ["--minutes", "120", "--setpoint-kw", "5", "--ven", "ghost"], ["targets"]),
        (create + ["--minutes", "6", "--setpoint-kw", "-3"], ["durations", "signal"]),
        (create + ["--minutes", "6", "--setpoint-kw", "-3", "--override", "ISO emergency"],
         ["signal"]),           # the override lifts the program rule, not the sign
    ]:
        code = main(argv)
        _, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert code == 2, (argv, err)
        assert [line.split(":")[0] for line in lines] == rules, (argv, err)
        assert all(line.endswith("(not overridable)") for line in lines if line.startswith(
            ("signal", "targets"))), err
        assert snapshot(store) == before, argv
    code = main(create + ["--minutes", "6", "--setpoint-kw", "5"])
    _, err = capsys.readouterr()
    assert code == 2 and err.splitlines() == [
        "durations: the event lasts 0.1 h; the program allows 2, 3 h",
        "refused: give --override REASON to override these program rules"]
    assert snapshot(store) == before


def test_cli_modify_is_held_to_the_rules_and_overridden_with_a_reason(vtn_toml, store, capsys):
    store.enrol(Ven(ven_id="batt-1", ven_name="batt-1", fingerprint="fp1",
                    program_id="connected_solutions", device_kind="battery"))
    config = ["--config", str(vtn_toml)]
    assert main(["events", "create", *config, "--program", "connected_solutions", "--start",
                 "2027-07-01T16:00:00-04:00", "--minutes", "120", "--setpoint-kw", "5"]) == 0
    event_id = capsys.readouterr().out.split()[1]
    before = snapshot(store)
    later = ["events", "modify", *config, event_id, "--end", "2027-07-01T21:00:00-04:00"]
    assert main(later) == 2
    assert capsys.readouterr().err.splitlines()[:2] == [
        "window: the event 16:00-21:00 is outside the program's window 15:00-20:00",
        "durations: the event lasts 5 h; the program allows 2, 3 h"]
    assert snapshot(store) == before
    assert main(later + ["--override", "ISO asked for an hour more"]) == 0
    event = store.event(event_id)
    assert (event.forced_reason, event.modification_number) == ("ISO asked for an hour more", 1)
