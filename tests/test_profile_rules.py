"""Each 2.0b profile rule the XSD cannot express: a conforming message passes, and
breaking the rule is caught under the rule's name."""
import copy
import json
from datetime import datetime, timedelta, timezone

import pytest
from lxml import etree
from openleadr import messaging

from flexadr import xsd
from flexadr.profile_rules import EI, PYLD, XCAL, echo_violations, event_violations, violations
from vtn.oadr_events import to_oadr
from vtn.store import Event

NOW = datetime(2026, 7, 1, 17, 0, tzinfo=timezone.utc)


def _event(event_id="e1", signal_name="LOAD_DISPATCH", signal_type="setpoint", value=5.0,
           schedule=((3600, 5.0), (3600, 2.0), (3600, 4.0))):
    return Event(event_id=event_id, program_id="p", market_context="http://mc",
                 signal_name=signal_name, signal_type=signal_type, signal_value=value,
                 signal_unit="kW" if signal_name == "LOAD_DISPATCH" else None,
                 start_utc=NOW + timedelta(hours=1), end_utc=NOW + timedelta(hours=4),
                 created_at=NOW, status="far", interval_schedule=json.dumps(schedule))


def _distribute(*events) -> etree._Element:
    message = messaging.create_message(
        "oadrDistributeEvent", request_id="req-1", vtn_id="VTN",
        response={"response_code": 200, "response_description": "OK", "request_id": "req-0"},
        events=[to_oadr(e, "ven-1", NOW) for e in events])
    return xsd.validate(message)


def _rules(tree) -> set[str]:
    return {line.split(":")[0] for line in violations(tree)}


def test_what_the_vtn_sends_conforms():
    tree = _distribute(_event("e1"), _event("e2", "SIMPLE", "level", 1.0, ((10800, 1.0),)))
    assert violations(tree) == []


def _first(tree, path):
    return next(tree.iter(path))


BREAKS = {
    "utc-times": lambda t: setattr(_first(t, f"{XCAL}date-time"), "text", "2026-07-01T18:00:00"),
    "interval-uids": lambda t: setattr(_first(t, f"{XCAL}text"), "text", "1"),
    "interval-durations": lambda t: setattr(
        list(t.iter(f"{XCAL}duration"))[-1], "text", "PT2H"),
    "signal-type": lambda t: setattr(_first(t, f"{EI}signalType"), "text", "price"),
}


@pytest.mark.parametrize("rule", sorted(BREAKS))
def test_breaking_a_rule_is_caught_by_name(rule):
    tree = _distribute(_event())
    BREAKS[rule](tree)
    assert rule in _rules(tree)


def test_duplicate_event_and_signal_ids_are_caught():
    tree = _distribute(_event("e1"), _event("e1"))
    assert "unique-ids" in _rules(tree)
    tree = _distribute(_event("e1"))
    signal = _first(tree, f"{EI}eiEventSignal")
    signal.addnext(copy.deepcopy(signal))
    assert any("signalID" in line for line in violations(tree))


def test_a_ven_sees_which_events_of_a_message_break_which_rule():
    tree = _distribute(_event("good"), _event("bad"), _event("twice"), _event("twice"))
    bad = [e for e in tree.iter(f"{EI}eiEvent")
           if e.findtext(f"{EI}eventDescriptor/{EI}eventID") == "bad"][0]
    _first(bad, f"{EI}signalType").text = "price"
    found = event_violations(tree)
    assert sorted(found) == ["bad", "twice"]
    assert [line.split(":")[0] for line in found["bad"]] == ["signal-type"]
    assert all(line.startswith("unique-ids") for line in found["twice"])


def test_simple_levels_and_current_value():
    tree = _distribute(_event("e1", "SIMPLE", "level", 1.0, ((10800, 1.0),)))
    _first(tree, f"{EI}value").text = "4"
    assert "simple-levels" in _rules(tree)
    tree = _distribute(_event("e1", "SIMPLE", "level", 1.0, ((10800, 1.0),)))
    assert "current-value" not in _rules(tree)
    _first(tree, f"{EI}currentValue").find(f"{EI}payloadFloat/{EI}value").text = "1"
    assert "current-value" in _rules(tree)


def _report_request(*ids):
    message = messaging.create_message("oadrCreateReport", request_id="req-1", ven_id="ven-1",
                                       report_requests=[{
                                           "report_request_id": i,
                                           "report_specifier": {
                                               "report_specifier_id": "spec",
                                               "granularity": timedelta(minutes=15),
                                               "report_back_duration": timedelta(minutes=15),
                                               "specifier_payloads": [{"r_id": "kw",
                                                                       "reading_type": "Direct Read"}]}}
                                           for i in ids])
    return xsd.validate(message)


def test_report_request_ids_must_be_non_zero_and_unique():
    assert violations(_report_request("rr-1", "rr-2")) == []
    assert "report-request-id" in _rules(_report_request("0"))
    assert "report-request-id" in _rules(_report_request("rr-1", "rr-1"))


def test_an_answer_must_echo_the_request_id():
    request = etree.fromstring(messaging.create_message("oadrPoll", ven_id="ven-1").encode())
    asked = request.findtext(f".//{PYLD}requestID")
    assert asked is None                       # oadrPoll has none: nothing to echo
    request = _report_request("rr-1")
    answer = xsd.validate(messaging.create_message(
        "oadrCreatedReport", ven_id="ven-1", pending_reports=[],
        response={"response_code": 200, "response_description": "OK",
                  "request_id": "req-1"}))
    assert echo_violations(request, answer) == []
    answer.find(f".//{EI}eiResponse/{PYLD}requestID").text = "other"
    assert [line.split(":")[0] for line in echo_violations(request, answer)] == ["request-id-echo"]
