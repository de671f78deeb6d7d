"""OpenADR 2.0b profile rules the XSD cannot express, checked on a parsed message (pure).

The schema says which elements exist; the profile (and the Alliance's test
harness) also requires, among others: UTC times, interval uids 0..n in order,
interval durations that add up to the active period, SIMPLE levels 0-3 with
currentValue 0 unless the event is active, unique event and signal IDs, a
signalType that fits the signalName, non-zero unique reportRequestIDs, and an
answer that echoes the request's requestID.

`violations(tree)` lists what a message breaks, one line per finding with the
rule's name first, so a test can say which rule failed. Outgoing violations are
bugs (tests check every message the VTN and VEN send); incoming ones are answered
with an error code: by the VTN's message path, and by the VEN per event
(`event_violations`: 454 and optOut for an event that breaks a rule).
"""
from __future__ import annotations

from collections import Counter
from datetime import timedelta

from lxml import etree
from openleadr.utils import parse_duration

EI = "{http://docs.oasis-open.org/ns/energyinterop/201110}"
PYLD = "{http://docs.oasis-open.org/ns/energyinterop/201110/payloads}"
OADR = "{http://openadr.org/oadr-2.0b/2012/07}"
XCAL = "{urn:ietf:params:xml:ns:icalendar-2.0}"

# The 2.0b specification's table of signalName and the signalTypes each may carry.
SIGNAL_TYPES = {
    "SIMPLE": {"level"},
    "simple": {"level"},
    "ELECTRICITY_PRICE": {"price", "priceRelative", "priceMultiplier"},
    "ENERGY_PRICE": {"price", "priceRelative", "priceMultiplier"},
    "DEMAND_CHARGE": {"price", "priceRelative", "priceMultiplier"},
    "BID_PRICE": {"price"},
    "BID_LOAD": {"setpoint"},
    "BID_ENERGY": {"setpoint"},
    "CHARGE_STATE": {"setpoint", "delta", "multiplier"},
    "LOAD_DISPATCH": {"setpoint", "delta", "multiplier", "level"},
    "LOAD_CONTROL": {"x-loadControlCapacity", "x-loadControlLevelOffset",
                     "x-loadControlPercentOffset", "x-loadControlSetpoint"},
}
SIMPLE_LEVELS = {0.0, 1.0, 2.0, 3.0}


def violations(tree: etree._Element) -> list[str]:
    """Every profile rule the message breaks (empty when it conforms)."""
    found = _utc_times(tree) + _report_request_ids(tree)
    events = list(tree.iter(f"{EI}eiEvent"))
    found += _unique("unique-ids", "eventID", [e.findtext(f"{EI}eventDescriptor/{EI}eventID")
                                               for e in events])
    for event in events:
        found += _event(event)
    return found


def event_violations(tree: etree._Element) -> dict[str, list[str]]:
    """Per eventID, the rules that event breaks (events that conform are left out): a VEN
    refuses the events that break the profile and executes the rest of the message."""
    events = list(tree.iter(f"{EI}eiEvent"))
    ids = [e.findtext(f"{EI}eventDescriptor/{EI}eventID") for e in events]
    repeated = _unique("unique-ids", "eventID", ids)
    found: dict[str, list[str]] = {}
    for event, event_id in zip(events, ids):
        lines = _utc_times(event) + _event(event)
        lines += [line for line in repeated if repr(event_id) in line]
        if lines:
            found.setdefault(event_id, []).extend(lines)
    return found


def echo_violations(request: etree._Element, response: etree._Element) -> list[str]:
    """The answer's eiResponse must carry the request's requestID."""
    asked = request.findtext(f".//{PYLD}requestID")
    answered = response.findtext(f".//{EI}eiResponse/{PYLD}requestID")
    if asked is not None and answered != asked:
        return [f"request-id-echo: the request's requestID {asked!r} came back as {answered!r}"]
    return []


def _utc_times(tree: etree._Element) -> list[str]:
    return [f"utc-times: {element.text!r} is not UTC (needs a trailing Z)"
            for element in tree.iter(f"{XCAL}date-time")
            if not (element.text or "").strip().endswith("Z")]


def _report_request_ids(tree: etree._Element) -> list[str]:
    ids = [element.text for element in tree.iter(f"{EI}reportRequestID")
           if element.getparent().tag == f"{OADR}oadrReportRequest"]
    found = [f"report-request-id: reportRequestID {i!r} is zero or empty"
             for i in ids if (i or "").strip() in ("", "0")]
    return found + _unique("report-request-id", "reportRequestID", ids)


def _unique(rule: str, what: str, ids: list[str | None]) -> list[str]:
    return [f"{rule}: {what} {value!r} appears {count} times"
            for value, count in Counter(ids).items() if count > 1]


def _event(event: etree._Element) -> list[str]:
    event_id = event.findtext(f"{EI}eventDescriptor/{EI}eventID")
    status = event.findtext(f"{EI}eventDescriptor/{EI}eventStatus")
    period = event.find(f"{EI}eiActivePeriod/{XCAL}properties")
    found = []
    duration = _duration(period.findtext(f"{XCAL}duration/{XCAL}duration")) if period is not None \
        else None
    signals = event.findall(f"{EI}eiEventSignals/{EI}eiEventSignal")
    found += _unique("unique-ids", f"signalID in event {event_id}",
                     [s.findtext(f"{EI}signalID") for s in signals])
    for signal in signals:
        found += [f"{line} (event {event_id})" for line in _signal(signal, status, duration)]
    return found


def _signal(signal: etree._Element, status: str | None, period: timedelta | None) -> list[str]:
    name, kind = signal.findtext(f"{EI}signalName"), signal.findtext(f"{EI}signalType")
    found = []
    allowed = SIGNAL_TYPES.get(name)
    if allowed is not None and kind not in allowed:
        found.append(f"signal-type: signalType {kind!r} does not fit signalName {name!r} "
                     f"(allowed: {', '.join(sorted(allowed))})")
    intervals = signal.findall(f"{{urn:ietf:params:xml:ns:icalendar-2.0:stream}}intervals/"
                               f"{EI}interval")
    uids = [interval.findtext(f"{XCAL}uid/{XCAL}text") for interval in intervals]
    if uids != [str(i) for i in range(len(intervals))]:
        found.append(f"interval-uids: uids {uids} are not 0..{len(intervals) - 1} in order")
    durations = [_duration(i.findtext(f"{XCAL}duration/{XCAL}duration")) for i in intervals]
    if period is not None and None not in durations and sum(durations, timedelta(0)) != period:
        found.append(f"interval-durations: the intervals last {sum(durations, timedelta(0))}, "
                     f"the active period {period}")
    if name in ("SIMPLE", "simple"):
        found += _simple(signal, intervals, status)
    return found


def _simple(signal: etree._Element, intervals: list[etree._Element], status: str | None) -> list[str]:
    found = []
    for interval in intervals:
        value = _float(interval.findtext(f"{EI}signalPayload/{EI}payloadFloat/{EI}value"))
        if value not in SIMPLE_LEVELS:
            found.append(f"simple-levels: SIMPLE level {value} is not one of 0, 1, 2, 3")
    current = _float(signal.findtext(f"{EI}currentValue/{EI}payloadFloat/{EI}value"))
    if current is not None and status != "active" and current != 0:
        found.append(f"current-value: currentValue {current} in a {status} event (must be 0 "
                     f"unless active)")
    return found


def _duration(text: str | None) -> timedelta | None:
    try:
        return parse_duration(text.strip()) if text else None
    except (ValueError, AttributeError, TypeError):
        return None


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None
