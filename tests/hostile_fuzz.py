"""Inputs for fuzzing the VTN's OpenADR endpoint, and a VTN to fuzz in a background thread.

Used by tests/test_hostile_fuzz.py (driven by hypothesis) and bench/fuzz_openadr.py
(driven by random.Random): both hand a Random to the same mutators.

- `corpus()`: one valid message of every type a VEN sends, for a registered VEN;
- `structure(rng, ...)`: one of them with an element's text replaced, an element
  dropped, duplicated or moved, or a stranger inserted; re-signed with the VEN's key,
  so it reaches the handlers;
- `byte_flip(rng, ...)`: a signed message with bytes flipped, cut, repeated or inserted.
"""
from __future__ import annotations

import asyncio
import random
import threading
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

from lxml import etree
from openleadr import objects

from flexadr.signing import render
from tests.hostile_peer import REGISTRATION, VEN, Peer, enrol, pki_for, running_vtn, snapshot
from vtn.store import Event, ReportRequest, Store

EVENT = "ev-h"
REPORT_REQUEST = "rr-h"
OK = {"response_code": 200, "response_description": "OK", "request_id": "q0"}
TEXTS = ["", " ", "true", "false", "0", "-1", "00042", "1e39", "-1e308", "NaN", "inf", "-Infinity",
         "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "P100Y", "PT0S",
         "-PT1H", "P", "<x", "&", "]]>", VEN, "stranger", EVENT, REPORT_REQUEST, REGISTRATION,
         "HOSTILE_VTN", "x" * 5000, "\u202e", "\U0001F600", "optOut", "optIn", "W", "k",
         "RealPower", "TELEMETRY_USAGE", "METADATA_TELEMETRY_USAGE", "2.0b", "simpleHttp"]


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _metadata_report() -> objects.Report:
    rate = objects.SamplingRate(min_period=timedelta(seconds=60), max_period=timedelta(seconds=60),
                                on_change=False)
    return objects.Report(report_specifier_id="usage", report_name="METADATA_TELEMETRY_USAGE",
                          report_descriptions=[objects.ReportDescription(
                              r_id="kw", reading_type="Direct Read", report_type="usage",
                              report_subject=objects.Target(ven_id=VEN),
                              report_data_source=objects.Target(resource_id="device"),
                              market_context="http://m", sampling_rate=rate,
                              measurement=objects.Measurement(name="power_real",
                                                              description="RealPower", unit="W",
                                                              scale="k"))])


def corpus() -> list[tuple[str, str, dict]]:
    """(service, message type, payload) of one valid message per type a VEN sends."""
    now = _now()
    interval = objects.ReportInterval(dtstart=now - timedelta(minutes=1), duration=timedelta(minutes=1),
                                      report_payload=objects.ReportPayload(r_id="kw", value=2.5))
    return [
        ("OadrPoll", "oadrPoll", {"ven_id": VEN}),
        ("EiRegisterParty", "oadrQueryRegistration", {"request_id": "q1"}),
        ("EiRegisterParty", "oadrCreatePartyRegistration", {
            "request_id": "q2", "ven_name": VEN, "ven_id": VEN, "registration_id": REGISTRATION,
            "profile_name": "2.0b", "transport_name": "simpleHttp", "transport_address": None,
            "report_only": False, "xml_signature": True, "http_pull_model": True}),
        ("EiRegisterParty", "oadrCancelPartyRegistration", {
            "request_id": "q3", "ven_id": VEN, "registration_id": REGISTRATION}),
        ("EiEvent", "oadrRequestEvent", {"request_id": "q4", "ven_id": VEN}),
        ("EiEvent", "oadrCreatedEvent", {"ven_id": VEN, "response": OK, "event_responses": [
            {**OK, "event_id": EVENT, "modification_number": 0, "opt_type": "optIn"}]}),
        ("EiOpt", "oadrCreateOpt", {
            "request_id": "q5", "ven_id": VEN, **asdict(objects.Opt(
                opt_id="opt-h", opt_type="optOut", opt_reason="notParticipating",
                targets=[objects.Target(resource_id="device")],
                vavailability=objects.Vavailability(components=[objects.VavailabilityComponent(
                    dtstart=now + timedelta(hours=1), duration=timedelta(hours=2))])))}),
        ("EiOpt", "oadrCreateOpt", {
            "request_id": "q6", "ven_id": VEN, **asdict(objects.Opt(
                opt_id="opt-e", opt_type="optOut", opt_reason="participating", event_id=EVENT,
                modification_number=0, targets=[objects.Target(ven_id=VEN)]))}),
        ("EiOpt", "oadrCancelOpt", {"request_id": "q7", "ven_id": VEN, "opt_id": "opt-h"}),
        ("EiReport", "oadrRegisterReport", {"request_id": "q8", "ven_id": VEN,
                                            "reports": [_metadata_report()]}),
        ("EiReport", "oadrUpdateReport", {"request_id": "q9", "ven_id": VEN, "reports": [
            objects.Report(report_request_id=REPORT_REQUEST, report_specifier_id="usage",
                           report_name="TELEMETRY_USAGE", intervals=[interval])]}),
        ("EiReport", "oadrCreatedReport", {"response": OK, "ven_id": VEN,
                                           "pending_reports": [{"report_request_id": REPORT_REQUEST}]}),
        ("EiReport", "oadrCanceledReport", {"response": OK, "ven_id": VEN,
                                            "pending_reports": [{"report_request_id": REPORT_REQUEST}]}),
        ("OadrPoll", "oadrResponse", {"response": OK, "ven_id": VEN}),
    ]


def distribute_event() -> tuple[str, dict]:
    """A VTN's oadrDistributeEvent: one event, three LOAD_DISPATCH intervals."""
    now = datetime(2026, 7, 1, 18, tzinfo=timezone.utc)
    event = objects.Event(
        event_descriptor=objects.EventDescriptor(
            event_id="e1", modification_number=0, market_context="http://m", event_status="far",
            created_date_time=now),
        active_period=objects.ActivePeriod(dtstart=now, duration=timedelta(hours=3)),
        event_signals=[objects.EventSignal(
            signal_name="LOAD_DISPATCH", signal_type="setpoint", signal_id="s1",
            intervals=[objects.Interval(dtstart=now + timedelta(hours=i), duration=timedelta(hours=1),
                                        signal_payload=v, uid=i)
                       for i, v in enumerate((5.0, 2.0, 4.0))])],
        targets=[objects.Target(ven_id=VEN)])
    return "oadrDistributeEvent", {"request_id": "d1", "vtn_id": "V", "events": [event],
                                   "response": {**OK, "request_id": "d0"}}


def structure(rng: random.Random, peer: Peer, messages: list[tuple[str, str, dict]]) -> tuple[str, bytes]:
    """A structure-aware mutation of one corpus message, re-signed by `peer`."""
    service, message_type, payload = rng.choice(messages)
    root = etree.fromstring(render(message_type, **payload).encode())
    elements = _below(root)
    for _ in range(rng.randint(1, 3)):
        element = rng.choice(elements)
        parent = element.getparent()
        operation = rng.randrange(10)     # 0-4: new text, the most likely to pass the XSD
        if operation <= 4 or parent is None:
            element.text = rng.choice(TEXTS) if rng.random() < 0.8 else _noise(rng)
        elif operation == 5:
            parent.remove(element)
        elif operation == 6:
            parent.insert(parent.index(element), _copy(element))
        elif operation == 7:
            element.append(etree.Element(f"{{{etree.QName(element).namespace}}}stranger"))
        elif operation == 8:
            rng.choice(elements).append(_copy(element))
        else:
            element.set(rng.choice(["Id", "schemaVersion", "{http://openadr.org/oadr-2.0b/2012/07}Id"]),
                        rng.choice(TEXTS))
        elements = _below(root)
    if rng.random() < 0.1:
        service = rng.choice(["OadrPoll", "EiRegisterParty", "EiEvent", "EiOpt", "EiReport"])
    return service, peer.signer.envelope(etree.tostring(root, encoding="unicode")).encode()


def byte_flip(rng: random.Random, peer: Peer, messages: list[tuple[str, str, dict]]) -> tuple[str, bytes]:
    """A signed corpus message with its bytes damaged."""
    service, message_type, payload = rng.choice(messages)
    data = bytearray(peer.sign(message_type, **payload).encode())
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(data) + 1)
        operation = rng.randrange(5)
        if operation == 0:
            data[at:at + 1] = bytes([rng.randrange(256)])
        elif operation == 1:
            del data[at:at + rng.randint(1, 64)]
        elif operation == 2:
            data[at:at] = data[at:at + rng.randint(1, 200)]
        elif operation == 3:
            data[at:at] = rng.choice([b"<", b"&", b"<!DOCTYPE x>", b"&e;", b"\x00", b"\xff\xfe",
                                      b"<![CDATA[", b"<?pi?>", b"<!-- -->"])
        else:
            del data[at:]
    return service, bytes(data)


def _below(root: etree._Element) -> list[etree._Element]:
    """Everything under oadrSignedObject (the signed object itself keeps its Id)."""
    return list(root.iter())[1:] or [root]


def _copy(element: etree._Element) -> etree._Element:
    return etree.fromstring(etree.tostring(element))


def _noise(rng: random.Random) -> str:
    alphabet = "abc<>&;\"'0123456789.-+eE:TZP \t\n\u00e9\u202e"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))


class Rig:
    """A VTN on SQLite with one registered VEN, an event and a report request, served from a
    background event loop so that synchronous drivers (hypothesis) can post to it."""

    def __init__(self, root: Path):
        self.root = root
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.store = Store(f"sqlite:///{root / 'fuzz.sqlite'}")
        self.pki = pki_for(root)
        enrol(self.store, self.pki)
        now = _now()
        self.store.add_event(Event(event_id=EVENT, program_id="connected_solutions",
                                   market_context="http://m", signal_name="LOAD_DISPATCH",
                                   signal_type="setpoint", signal_value=2.0, start_utc=now,
                                   end_utc=now + timedelta(days=7), created_at=now), [VEN])
        self.store.add_report_request(ReportRequest(
            report_request_id=REPORT_REQUEST, ven_id=VEN, report_specifier_id="usage",
            report_name="TELEMETRY_USAGE", r_ids="kw", granularity_s=60,
            report_back_duration_s=60, created_at=now))
        self._vtn = running_vtn(self.store, self.pki)
        self.url = self._run(self._vtn.__aenter__())
        self.peer = self._run(Peer(self.pki).__aenter__())
        self.messages = corpus()

    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def post(self, service: str, body: bytes) -> tuple[int, str]:
        return self._run(self.peer.post(self.url, service, body))

    def keep_registered(self) -> None:
        """Undo an accepted oadrCancelPartyRegistration, so later inputs reach the handlers."""
        if self.store.ven(VEN).registration_id != REGISTRATION:
            self.store.set_registration(VEN, REGISTRATION, _now())

    def snapshot(self) -> dict[str, list]:
        return snapshot(self.store)

    def close(self) -> None:
        self._run(self.peer.__aexit__(None, None, None))
        self._run(self._vtn.__aexit__(None, None, None))
        self.store.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def judge(rig: Rig, service: str, body: bytes) -> tuple[str, str | None]:
    """Send one input: (what it got, e.g. "oadrCreatedOpt 454", and a problem or None).

    A problem is an HTTP status other than 200, an answer that is not valid 2.0b, or a
    refused input (any code but 200, or a reregistration request) that changed the store.
    """
    from flexadr import oadr_xml, xsd
    before = rig.snapshot()
    status, text = rig.post(service, body)
    if status != 200:
        return f"HTTP {status}", f"HTTP {status}: {text[:200]}"
    if not text:
        return "empty", None
    try:
        answer_type, payload = oadr_xml.payload(xsd.validate(text))
    except (xsd.SchemaViolation, oadr_xml.Malformed) as err:
        return "invalid answer", f"the answer is not valid 2.0b: {err}"
    code = (payload.get("response") or {}).get("response_code")
    label = f"{answer_type} {code}" if code is not None else answer_type
    if code == 469:
        return label, f"{label}: the message path failed (an uncaught exception, logged)"
    refused = code != 200
    if refused and rig.snapshot() != before:
        return label, f"{label}: the store changed"
    return label, None
