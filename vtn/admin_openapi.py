"""The admin API's OpenAPI 3.1 document, derived from the models that do the work: request
bodies from the pydantic models that validate them (vtn.operator_input, via the routes
table in vtn.admin), answers from the store's SQLModel rows the handlers dump, plus the few
composite answers described here. Every property of an answer is listed as required: the
handlers dump whole rows, so every key is always there (null where the type allows)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, TypeAdapter

from vtn.store import (Enrolment, Event, EventTarget, EventTransition, OptAvailability,
                       OptSchedule, Participant, Program, Ven)

REF = "#/components/schemas/{model}"


class OptOutRow(BaseModel):
    event_id: str
    ven_id: str
    opt_type: str
    source: str | None
    at: datetime | None


class SeasonCount(BaseModel):
    count: int
    limit: int | None
    over_limit: bool


class UnenrolDue(BaseModel):
    ven_id: str
    participant_id: str | None
    notified_at: datetime
    unenrol_after: datetime


class Connectivity(BaseModel):
    offline_streaks: dict[str, list[str]]
    to_unenrol: list[UnenrolDue]


class Health(BaseModel):
    status: str
    database: str
    vtn_id: str
    time: datetime


class Problem(BaseModel):
    field: str
    problem: str


class Error(BaseModel):
    """Every refusal: `error` always; `field` and `problems` for bad input (400), `rules`
    and `reasons` for an enrolment the program's rules refuse (409)."""
    error: str
    field: str | None = None
    problems: list[Problem] | None = None
    rules: list[str] | None = None
    reasons: list[str] | None = None


def _with(model: type, **extra: Any) -> dict:
    """A row's schema with more required keys (`{**row.model_dump(), ...}` answers)."""
    return {"allOf": [{"$ref": REF.format(model=model.__name__)},
                      {"type": "object", "required": sorted(extra), "properties": extra}]}


def _ref(model: type) -> dict:
    return {"$ref": REF.format(model=model.__name__)}


def _list(item: dict) -> dict:
    return {"type": "array", "items": item}


EVENT_DETAIL = _with(Event, targets=_list(_ref(EventTarget)),
                     transitions=_list(_ref(EventTransition)))
OPT_OUTS = {"type": "object", "required": ["event_opt_outs", "opt_schedules", "season_counts"],
            "properties": {
                "event_opt_outs": _list(_ref(OptOutRow)),
                "opt_schedules": _list(_with(OptSchedule, availability=_list(_ref(OptAvailability)))),
                "season_counts": {"type": "object", "additionalProperties": _ref(SeasonCount)}}}
# vtn.audit.as_dict: before/after are the JSON objects the row stores.
AUDIT_ROW = {"type": "object",
             "required": ["id", "at", "actor", "action", "subject_type", "subject_id",
                          "before", "after", "reason"],
             "properties": {"id": {"type": "integer"}, "at": {"type": "string",
                                                              "format": "date-time"},
                            "actor": {"type": "string"}, "action": {"type": "string"},
                            "subject_type": {"type": "string"}, "subject_id": {"type": "string"},
                            "before": {"type": ["object", "null"]},
                            "after": {"type": ["object", "null"]},
                            "reason": {"type": ["string", "null"]}}}
CSV, TEXT = {"text/csv": {"type": "string"}}, {"text/plain": {"type": "string"}}

# (method, path) -> (status, JSON schema, or {media type: schema} for non-JSON answers)
ANSWERS: dict[tuple[str, str], tuple[int, dict]] = {
    ("GET", "/api/openapi.json"): (200, {"type": "object", "required": ["openapi", "paths"]}),
    ("GET", "/api/programs"): (200, _list(_ref(Program))),
    ("PUT", "/api/programs/{program_id}"): (200, _ref(Program)),
    ("POST", "/api/participants"): (201, _ref(Participant)),
    ("GET", "/api/enrolments"): (200, _list(_ref(Enrolment))),
    ("POST", "/api/enrolments"): (201, _ref(Enrolment)),
    ("GET", "/api/vens"): (200, _list(_with(Ven, online={"type": "boolean"}))),
    **{("POST", f"/api/vens/{{ven_id}}/{verb}"): (200, _ref(Ven))
       for verb in ("disable", "enable", "revoke", "cancel-registration", "reregister")},
    ("GET", "/api/events"): (200, _list(_ref(Event))),
    ("POST", "/api/events"): (201, _ref(Event)),
    ("POST", "/api/events/{event_id}/publish"): (200, _ref(Event)),
    ("GET", "/api/events/{event_id}"): (200, EVENT_DETAIL),
    ("PATCH", "/api/events/{event_id}"): (200, _ref(Event)),
    ("POST", "/api/events/{event_id}/cancel"): (200, _ref(Event)),
    ("GET", "/api/optouts"): (200, OPT_OUTS),
    ("GET", "/api/telemetry.csv"): (200, {"media": CSV}),
    ("GET", "/api/connectivity"): (200, _ref(Connectivity)),
    ("GET", "/api/audit"): (200, _list(AUDIT_ROW)),
    ("GET", "/metrics"): (200, {"media": TEXT}),
}
ANSWER_MODELS = (Program, Participant, Enrolment, Ven, Event, EventTarget, EventTransition,
                 OptSchedule, OptAvailability, OptOutRow, SeasonCount, Connectivity, UnenrolDue,
                 Health, Error, Problem)
PARTIAL_ANSWERS = {"Error"}      # keys present only for some refusals
REFUSALS = {"400": "bad input: the field and the problem", "401": "no or wrong token or session",
            "403": "the caller's role may not do this", "404": "no such object",
            "409": "refused: the state or the enrolment rules",
            "422": "refused by the dispatch rules: each violation with its rule",
            "429": "too many failed tokens from this address"}


def _schemas(models, mode: str, all_required: bool) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for model in models:
        schema = TypeAdapter(model).json_schema(ref_template=REF, mode=mode)
        found.update(schema.pop("$defs", {}))
        found[model.__name__] = schema
    if all_required:
        for name, schema in found.items():
            if "properties" in schema and name not in PARTIAL_ANSWERS:
                schema["required"] = list(schema["properties"])
    return found


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def document(routes) -> dict:
    """routes: vtn.admin.AdminApi.routes, (method, path, handler, summary, request model)."""
    components = _schemas(ANSWER_MODELS, "serialization", all_required=True)
    components.update(_schemas([m for *_, m in routes if m is not None], "validation",
                               all_required=False))
    paths: dict[str, dict] = {}
    for method, path, _, summary, request_model in routes:
        status, answer = ANSWERS[(method, path)]
        content = ({media: {"schema": s} for media, s in answer["media"].items()}
                   if "media" in answer else _json(answer))
        responses = {str(status): {"description": "OK", "content": content}}
        responses.update({code: {"description": text, "content": _json(_ref(Error))}
                          for code, text in REFUSALS.items()})
        operation: dict = {"summary": summary, "security": [{"bearer": []}],
                           "responses": responses}
        if request_model is not None:
            operation["requestBody"] = {
                "required": bool(components[request_model.__name__].get("required")),
                "content": _json(_ref(request_model))}
        params = [part[1:-1] for part in path.split("/") if part.startswith("{")]
        if params:
            operation["parameters"] = [{"name": p, "in": "path", "required": True,
                                        "schema": {"type": "string"}} for p in params]
        paths.setdefault(path, {})[method.lower()] = operation
    paths["/health"] = {"get": {"summary": "Liveness: the database answers (no token)",
                                "responses": {"200": {"description": "ok",
                                                      "content": _json(_ref(Health))},
                                              "503": {"description": "no database",
                                                      "content": _json(_ref(Health))}}}}
    return {"openapi": "3.1.0", "info": {"title": "flexadr VTN admin API", "version": "1"},
            "components": {"schemas": components,
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "paths": paths}
