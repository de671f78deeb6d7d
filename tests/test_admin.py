"""The admin REST API: token on every route, programs' enrolment rules, events, exports, metrics."""
import ssl
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest

from certs.pki import ensure_dev_pki
from flexadr.clock import ManualClock
from flexadr.demo import _free_port
from vtn.service import Vtn, VtnConfig
from vtn.store import Ven

TOKEN = "s3cret-admin-token"
NOW = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TIMEOUT = aiohttp.ClientTimeout(total=10)


@pytest.fixture
async def api(tmp_path, store):
    pki = ensure_dev_pki(tmp_path / "pki", ["ev-1", "ev-2", "batt-1", "rogue"])
    port, admin_port = _free_port(), _free_port()
    clock = ManualClock(NOW)
    vtn = Vtn(VtnConfig("TEST_VTN", "127.0.0.1", port, pki.vtn.cert, pki.vtn.key, pki.ca.cert,
                        admin_token=TOKEN, admin_port=admin_port), store, clock)
    await vtn.start(run_ticker=False)
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{admin_port}",
                                     timeout=TIMEOUT) as session:
        yield session, vtn, pki, clock
    await vtn.stop()


async def _call(session, method, path, json=None, headers=AUTH):
    async with session.request(method, path, json=json, headers=headers) as response:
        body = (await response.json() if response.content_type == "application/json"
                else await response.text())
        return response.status, body


async def test_no_admin_route_answers_without_the_token(api):
    session, vtn, pki, clock = api
    routes = [(method, path.replace("{program_id}", "managed_charging")
               .replace("{event_id}", "x").replace("{ven_id}", "x"))
              for method, path, *_ in vtn.admin.routes]
    assert len(routes) >= 20
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        for method, path in routes:
            clock.advance(timedelta(minutes=1))     # stay under the failed-token limit
            status, body = await _call(session, method, path, json={}, headers=headers)
            assert status == 401, (method, path, headers, status)
    # The OpenADR mTLS port serves no admin route, even to an enrolled certificate.
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.load_cert_chain(str(pki.vens["rogue"].cert), str(pki.vens["rogue"].key))
    async with aiohttp.ClientSession(timeout=TIMEOUT) as tls:
        for path in ("/api/vens", "/metrics", "/health", "/optout/x"):
            async with tls.get(f"https://127.0.0.1:{vtn.config.port}{path}", ssl=context,
                               headers=AUTH) as response:
                assert response.status in (404, 405), (path, response.status)


async def test_openapi_document_lists_every_route(api):
    session, vtn, _, _ = api
    status, doc = await _call(session, "GET", "/api/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.")
    for method, path, *_ in vtn.admin.routes:
        assert method.lower() in doc["paths"][path]


async def _participant(session, pid, household):
    status, body = await _call(session, "POST", "/api/participants", json={
        "participant_id": pid, "name": pid.title(), "household_id": household,
        "email": f"{pid}@example.org"})
    assert status == 201, body


async def test_enrolment_rules_refuse_with_the_rule_and_store_nothing(api):
    session, vtn, pki, _ = api
    store = vtn.store
    cert = {name: pki.vens[name].cert.read_text() for name in pki.vens}
    await _participant(session, "alice", "house-1")
    await _participant(session, "bob", "house-1")     # same household
    ok = {"participant_id": "alice", "program_id": "managed_charging", "ven_name": "ev-1",
          "certificate_pem": cert["ev-1"], "device_kind": "ev_managed", "charger_kw": 7.2}
    status, body = await _call(session, "POST", "/api/enrolments", json=ok)
    assert status == 201, body

    cases = [
        (dict(ok, participant_id="bob", ven_name="ev-2", certificate_pem=cert["ev-2"]),
         "one_device_per_household"),
        (dict(ok, participant_id="carol", ven_name="ev-2", certificate_pem=cert["ev-2"],
              charger_kw=22.0), "charger_power_range"),
        (dict(ok, participant_id="carol", ven_name="ev-2", certificate_pem=cert["ev-2"],
              charger_kw=1.4), "charger_power_range"),
        (dict(participant_id="carol", program_id="connected_solutions", ven_name="batt-1",
              certificate_pem=cert["batt-1"], device_kind="battery", inverter_kw=60.0),
         "inverter_capacity"),
        (dict(participant_id="alice", program_id="connected_solutions", ven_name="ev-1",
              device_kind="ev_v2g", inverter_kw=11.5), "program_conflict"),
    ]
    await _participant(session, "carol", "house-2")
    for request, rule in cases:
        status, body = await _call(session, "POST", "/api/enrolments", json=request)
        assert status == 409, (rule, body)
        assert rule in body["rules"], (rule, body)
        assert body["error"].startswith("enrolment refused")
    assert [(e.participant_id, e.ven_id) for e in store.enrolments()] == [("alice", "ev-1")]
    assert [v.ven_id for v in store.vens()] == ["ev-1"]

    # A battery within the limits is accepted.
    status, body = await _call(session, "POST", "/api/enrolments", json=dict(
        participant_id="carol", program_id="connected_solutions", ven_name="batt-1",
        certificate_pem=cert["batt-1"], device_kind="battery", inverter_kw=5.0))
    assert status == 201, body
    # The conflict holds the other way round too (declared by connected_solutions).
    status, body = await _call(session, "POST", "/api/enrolments", json=dict(
        participant_id="carol", program_id="managed_charging", ven_name="batt-1",
        device_kind="battery", charger_kw=5.0))
    assert status == 409 and body["rules"] == ["program_conflict"], body
    status, programs = await _call(session, "GET", "/api/programs")
    rules = {p["program_id"]: p for p in programs}
    assert rules["managed_charging"]["max_charger_kw"] == 19.2
    assert rules["connected_solutions"]["max_inverter_kw"] == 50.0


async def test_bad_enrolment_input_is_refused_precisely(api):
    session, vtn, _, _ = api
    await _participant(session, "alice", "house-1")
    for body, fragment in [
        ({"participant_id": "alice"}, "program_id: missing"),
        ({"participant_id": "nobody", "program_id": "managed_charging", "ven_name": "x",
          "device_kind": "ev_managed", "fingerprint": "aa"}, "no participant"),
        ({"participant_id": "alice", "program_id": "managed_charging", "ven_name": "x",
          "device_kind": "ev_managed", "certificate_pem": "not a cert"}, "certificate_pem"),
        ({"participant_id": "alice", "program_id": "no_such_program", "ven_name": "x",
          "device_kind": "ev_managed", "fingerprint": "aa"}, "no program"),
    ]:
        status, answer = await _call(session, "POST", "/api/enrolments", json=body)
        assert status in (400, 404) and fragment in answer["error"], (body, answer)
    async with session.post("/api/enrolments", data="{not json", headers=AUTH) as response:
        assert response.status == 400 and "not JSON" in (await response.json())["error"]
    assert vtn.store.enrolments() == [] and vtn.store.vens() == []


async def test_events_create_modify_cancel_and_list(api):
    session, vtn, pki, clock = api
    store = vtn.store
    store.enrol(Ven(ven_id="batt-1", ven_name="batt-1", fingerprint=pki.vens["batt-1"].fingerprint,
                    program_id="connected_solutions", device_kind="battery"))
    start = "2026-07-02T16:00:00-04:00"      # inside the window, a day and more ahead
    status, event = await _call(session, "POST", "/api/events", json={
        "program_id": "connected_solutions", "start": start, "minutes": 120, "setpoint_kw": 5})
    assert status == 201, event
    event_id = event["event_id"]
    for bad, fragment in [({"program_id": "connected_solutions", "start": "tomorrow",
                            "minutes": 60}, "ISO 8601"),
                          ({"program_id": "connected_solutions", "start": "2026-07-02T16:00:00",
                            "minutes": 60}, "UTC offset"),
                          ({"program_id": "connected_solutions", "start": start}, "minutes")]:
        status, body = await _call(session, "POST", "/api/events", json=bad)
        assert status == 400 and fragment in body["error"], (bad, body)
    status, body = await _call(session, "POST", "/api/events", json={
        "program_id": "connected_solutions", "start": start, "minutes": 60})
    assert status == 422 and [v["rule"] for v in body["violations"]] == [
        "durations", "signal", "conflicts"], body
    assert len(store.events()) == 1

    status, body = await _call(session, "PATCH", f"/api/events/{event_id}",
                               json={"setpoint_kw": 7.5})
    assert (status, body["modification_number"], body["signal_value"]) == (200, 1, 7.5)
    status, body = await _call(session, "PATCH", f"/api/events/{event_id}", json={
        "end": (NOW - timedelta(days=1)).isoformat()})
    assert status == 400 and store.event(event_id).modification_number == 1   # ends first
    status, body = await _call(session, "PATCH", f"/api/events/{event_id}", json={
        "start": (NOW - timedelta(days=2)).isoformat(), "end": (NOW - timedelta(days=1)).isoformat()})
    assert (status, body["violations"][0]["rule"]) == (422, "time")
    assert store.event(event_id).modification_number == 1
    status, body = await _call(session, "POST", f"/api/events/{event_id}/cancel")
    assert (status, body["status"], body["modification_number"]) == (200, "cancelled", 2)
    status, body = await _call(session, "POST", f"/api/events/{event_id}/cancel")
    assert status == 409 and "cancelled" in body["error"]
    status, body = await _call(session, "GET", "/api/events?status=cancelled")
    assert [e["event_id"] for e in body] == [event_id]
    status, body = await _call(session, "GET", f"/api/events/{event_id}")
    assert [t["note"] for t in body["transitions"]] == ["published", "modified", "cancelled"]
    status, body = await _call(session, "GET", "/api/events/nope")
    assert status == 404


async def test_vens_telemetry_csv_optouts_and_metrics(api):
    session, vtn, pki, clock = api
    store = vtn.store
    store.enrol(Ven(ven_id="batt-1", ven_name="batt-1", fingerprint=pki.vens["batt-1"].fingerprint,
                    program_id="connected_solutions", device_kind="battery"))
    start = datetime(2026, 7, 2, 20, 0, tzinfo=timezone.utc)
    status, event = await _call(session, "POST", "/api/events", json={
        "program_id": "connected_solutions", "start": start.isoformat(), "minutes": 30,
        "setpoint_kw": 5, "override_reason": "a half-hour event: two telemetry intervals"})
    assert status == 201, event
    store.seen("batt-1", NOW)
    store.record_points("batt-1", [
        (start + timedelta(minutes=15 * i), start + timedelta(minutes=15 * (i + 1)),
         {"kw": -4.0 - i, "kwh": -1.0, "soc_pct": 80.0 - i, "online": True}) for i in range(3)])
    store.record_opt("batt-1", event["event_id"], "optOut", NOW, source="eiOpt")

    status, vens = await _call(session, "GET", "/api/vens")
    assert [(v["ven_id"], v["online"]) for v in vens] == [("batt-1", True)]
    clock.advance(timedelta(minutes=5))
    status, vens = await _call(session, "GET", "/api/vens")
    assert vens[0]["online"] is False

    status, text = await _call(session, "GET", f"/api/telemetry.csv?event_id={event['event_id']}")
    lines = text.strip().splitlines()
    assert lines[0].startswith("ven_id,interval_start,interval_end,kw,kwh,soc_pct")
    assert len(lines) == 3 and lines[1].split(",")[3] == "-4.0"   # two intervals in the event
    status, body = await _call(session, "GET", "/api/telemetry.csv?ven_id=ghost")
    assert status == 400

    status, optouts = await _call(session, "GET", f"/api/optouts?event_id={event['event_id']}")
    assert [(o["ven_id"], o["source"]) for o in optouts["event_opt_outs"]] == [("batt-1", "eiOpt")]
    assert optouts["season_counts"]["batt-1"]["count"] == 1
    assert optouts["season_counts"]["batt-1"]["over_limit"] is False

    status, text = await _call(session, "GET", "/metrics")
    assert status == 200
    assert 'flexadr_vtn_events{status="far"} 1.0' in text
    assert "flexadr_vtn_vens_registered 0.0" in text
    assert "flexadr_vtn_signature_failures_total" in text


async def test_plan_then_publish_an_event(api):
    session, vtn, pki, _ = api
    vtn.store.enrol(Ven(ven_id="batt-1", ven_name="batt-1",
                        fingerprint=pki.vens["batt-1"].fingerprint,
                        program_id="connected_solutions", device_kind="battery"))
    status, event = await _call(session, "POST", "/api/events", json={
        "program_id": "connected_solutions", "start": "2026-07-02T15:00:00-04:00",
        "minutes": 180, "setpoint_kw": 5, "plan": True})
    assert (status, event["status"]) == (201, "pending")
    assert vtn.store.pending_messages("batt-1") == []
    status, body = await _call(session, "POST", f"/api/events/{event['event_id']}/publish")
    assert (status, body["status"]) == (200, "far")
    assert len(vtn.store.pending_messages("batt-1")) == 1
    status, body = await _call(session, "POST", f"/api/events/{event['event_id']}/publish")
    assert status == 409 and "not pending" in body["error"]


async def test_more_than_twelve_opt_outs_in_a_season_are_flagged(api):
    from schedules import model
    from vtn import lifecycle
    from vtn.programs import ensure_program
    session, vtn, pki, clock = api
    store = vtn.store
    ensure_program(store, "managed_charging")
    store.enrol(Ven(ven_id="ev-1", ven_name="ev-1", fingerprint=pki.vens["ev-1"].fingerprint,
                    program_id="managed_charging", device_kind="ev_managed"))
    program = model.load("managed_charging")
    for day in range(13):
        start = NOW + timedelta(days=day + 1)
        event = lifecycle.publish(store, program, start, start + timedelta(hours=8), ["ev-1"],
                                  clock)
        store.record_opt("ev-1", event.event_id, "optOut", clock.now(), source="notice")
        status, body = await _call(session, "GET", "/api/optouts")
        assert body["season_counts"]["ev-1"] == {"count": day + 1, "limit": 12,
                                                 "over_limit": day + 1 > 12}


# --- the admin plane: its own listener, TLS, failed-token limit, health ----------------------

async def test_failed_tokens_are_limited_per_address(api):
    from vtn.admin import FAILED_AUTH_LIMIT, FAILED_AUTH_WINDOW
    session, vtn, _, clock = api
    wrong = {"Authorization": "Bearer guess"}
    for _ in range(FAILED_AUTH_LIMIT):
        assert (await _call(session, "GET", "/api/vens", headers=wrong))[0] == 401
    async with session.get("/api/vens", headers=wrong) as response:
        assert response.status == 429 and int(response.headers["Retry-After"]) >= 1
    # The right token does not help the address while it is locked out ...
    assert (await _call(session, "GET", "/api/vens"))[0] == 429
    # ... another address is not affected ...
    port = vtn.config.admin_port
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as other:
        async with other.get(f"http://127.0.0.1:{port}/api/vens", headers=AUTH) as response:
            assert response.status == 200
    # ... and the window passing lets it in again.
    clock.advance(FAILED_AUTH_WINDOW)
    assert (await _call(session, "GET", "/api/vens"))[0] == 200


async def test_health_answers_without_a_token_and_says_when_the_database_is_gone(api, tmp_path):
    session, vtn, pki, _ = api
    status, body = await _call(session, "GET", "/health", headers={})
    assert (status, body["status"], body["database"]) == (200, "ok", "ok")
    assert body["time"] == "2026-07-01T12:00:00Z"
    from vtn.store import Store
    gone = Store(f"sqlite:///{tmp_path}/no/such/dir/vtn.sqlite", migrate_schema=False)
    admin_port = _free_port()
    down = Vtn(VtnConfig("TEST_VTN", "127.0.0.1", _free_port(), pki.vtn.cert, pki.vtn.key,
                         pki.ca.cert, admin_port=admin_port), gone, ManualClock(NOW))
    await down.start(run_ticker=False)
    try:
        async with session.get(f"http://127.0.0.1:{admin_port}/health") as response:
            body = await response.json()
            assert (response.status, body["status"]) == (503, "unavailable")
    finally:
        await down.stop()


async def test_the_admin_listener_binds_its_own_address_and_can_speak_tls(tmp_path, store):
    pki = ensure_dev_pki(tmp_path / "pki", [])
    admin_port = _free_port()
    vtn = Vtn(VtnConfig("TEST_VTN", "127.0.0.1", _free_port(), pki.vtn.cert, pki.vtn.key,
                        pki.ca.cert, admin_token=TOKEN, admin_port=admin_port,
                        admin_host="127.0.0.2", admin_cert=pki.vtn.cert, admin_key=pki.vtn.key),
              store, ManualClock(NOW))
    await vtn.start(run_ticker=False)
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    try:
        assert vtn._admin_runner.addresses == [("127.0.0.2", admin_port)]
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            with pytest.raises(aiohttp.ClientConnectorError):     # nothing on 127.0.0.1
                await session.get(f"https://127.0.0.1:{admin_port}/health", ssl=context)
            with pytest.raises(aiohttp.ClientError):              # no plain HTTP
                await session.get(f"http://127.0.0.2:{admin_port}/health")
            # The VTN certificate names 127.0.0.1 only: check the chain, not the name.
            context.check_hostname = False
            async with session.get(f"https://127.0.0.2:{admin_port}/api/vens", ssl=context,
                                   headers=AUTH) as response:
                assert response.status == 200
    finally:
        await vtn.stop()
