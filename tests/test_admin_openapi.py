"""The admin API's OpenAPI document: every operation has request and answer schemas derived
from the models (required fields included), and real answers validate against them; every
time in an answer is UTC with `Z`, the same on POST and GET."""
import re

from jsonschema import Draft202012Validator

from tests.test_admin import AUTH, _call, api  # noqa: F401 - the fixture
from tests.test_signing import _strings

TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")
START = "2026-07-02T16:00:00-04:00"        # the next afternoon in Boston: 20:00Z


def answer_schema(doc: dict, method: str, path: str, status: int) -> dict:
    content = doc["paths"][path][method.lower()]["responses"][str(status)]["content"]
    return content["application/json"]["schema"]


def check(doc: dict, method: str, path: str, status: int, body) -> None:
    schema = {**answer_schema(doc, method, path, status), "components": doc["components"]}
    errors = list(Draft202012Validator(schema).iter_errors(body))
    assert not errors, (method, path, [e.message for e in errors[:3]])
    for text in _strings(body):
        assert not TIME.match(text) or text.endswith("Z"), (method, path, text)


async def test_every_operation_documents_its_request_and_answer(api):  # noqa: F811
    session, vtn, _, _ = api
    status, doc = await _call(session, "GET", "/api/openapi.json")
    assert status == 200 and doc["openapi"] == "3.1.0"
    Draft202012Validator.check_schema({"components": doc["components"]})
    schemas = doc["components"]["schemas"]
    for method, path, _, _, request_model in vtn.admin.routes:
        operation = doc["paths"][path][method.lower()]
        (ok,) = [code for code in operation["responses"] if code.startswith("2")]
        assert operation["responses"][ok]["content"], (method, path)
        assert operation["responses"]["400"]["content"]["application/json"]["schema"] == \
            {"$ref": "#/components/schemas/Error"}
        if request_model is not None:
            body = operation["requestBody"]["content"]["application/json"]["schema"]
            assert body == {"$ref": f"#/components/schemas/{request_model.__name__}"}
    assert schemas["EventRequest"]["required"] == ["program_id", "start"]
    assert schemas["EventRequest"]["additionalProperties"] is False
    assert set(schemas["ParticipantRequest"]["required"]) == {"participant_id", "name",
                                                              "household_id"}
    assert "start_utc" in schemas["Event"]["required"]          # answers: every key, always
    assert schemas["Error"]["required"] == ["error"]


async def test_real_answers_validate_and_times_are_utc_z_on_post_and_get(api):  # noqa: F811
    session, vtn, pki, _ = api
    _, doc = await _call(session, "GET", "/api/openapi.json")

    async def call(method, path, template=None, json=None, expect=200):
        status, body = await _call(session, method, path, json=json)
        assert status == expect, (method, path, status, body)
        if isinstance(body, (dict, list)):
            check(doc, method, template or path, status, body)
        return body

    await call("PUT", "/api/programs/connected_solutions", "/api/programs/{program_id}")
    await call("GET", "/api/programs")
    await call("POST", "/api/participants", json={
        "participant_id": "alice", "name": "Alice", "household_id": "h-1",
        "email": "alice@example.org"}, expect=201)
    await call("POST", "/api/enrolments", json={
        "participant_id": "alice", "program_id": "connected_solutions", "ven_name": "batt-1",
        "certificate_pem": pki.vens["batt-1"].cert.read_text(), "device_kind": "battery",
        "inverter_kw": 60.0}, expect=409)                        # over the inverter limit
    await call("POST", "/api/enrolments", json={
        "participant_id": "alice", "program_id": "connected_solutions", "ven_name": "batt-1",
        "certificate_pem": pki.vens["batt-1"].cert.read_text(), "device_kind": "battery",
        "inverter_kw": 5.0}, expect=201)
    await call("GET", "/api/enrolments")
    await call("GET", "/api/vens")
    await call("POST", "/api/events", json={"program_id": "connected_solutions",
                                            "start": "tomorrow"}, expect=400)
    posted = await call("POST", "/api/events", json={
        "program_id": "connected_solutions", "start": START, "minutes": 180,
        "setpoint_kw": 5.0}, expect=201)
    assert posted["start_utc"] == "2026-07-02T20:00:00Z"
    event = f"/api/events/{posted['event_id']}"
    got = await call("GET", event, "/api/events/{event_id}")
    assert {k: got[k] for k in posted} == posted               # POST and GET answer alike
    assert got["targets"][0]["ven_id"] == "batt-1"
    await call("GET", "/api/events")
    patched = await call("PATCH", event, "/api/events/{event_id}",
                         json={"end": "2026-07-02T18:30:00-04:00"})
    assert patched["end_utc"] == "2026-07-02T22:30:00Z"
    planned = await call("POST", "/api/events", json={
        "program_id": "connected_solutions", "start": "2026-07-03T16:00:00-04:00",
        "minutes": 120, "setpoint_kw": 5.0, "plan": True}, expect=201)
    await call("POST", f"/api/events/{planned['event_id']}/publish",
               "/api/events/{event_id}/publish")
    await call("POST", f"{event}/cancel", "/api/events/{event_id}/cancel")
    await call("POST", f"{event}/cancel", "/api/events/{event_id}/cancel", expect=409)
    await call("POST", "/api/vens/batt-1/disable", "/api/vens/{ven_id}/disable",
               json={"reason": "meter swap"})
    await call("POST", "/api/vens/batt-1/enable", "/api/vens/{ven_id}/enable")
    await call("GET", "/api/optouts")
    await call("GET", "/api/connectivity")
    await call("GET", "/api/openapi.json")
    health = await call("GET", "/health")
    assert health["time"].endswith("Z")
    async with session.get("/api/telemetry.csv", params={"event_id": posted["event_id"]},
                           headers=AUTH) as response:
        assert response.status == 200 and response.content_type == "text/csv"
        assert "text/csv" in doc["paths"]["/api/telemetry.csv"]["get"]["responses"]["200"][
            "content"]
