"""Hostile bodies against a running VTN: each gets the profile's code, nothing is stored,
and the VTN keeps serving (issue 11 items 1, 2, 6, 7; issue 12 item 4)."""
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from openleadr import enums, objects

from tests.hostile_peer import (REGISTRATION, VEN, Peer, answer, code, enrol, pki_for,
                                running_vtn, snapshot)
from vtn.store import ReportRequest, Store, Ven

CODES = enums.STATUS_CODES
NS = ('xmlns:oadr="http://openadr.org/oadr-2.0b/2012/07" '
      'xmlns:ei="http://docs.oasis-open.org/ns/energyinterop/201110"')
# The 332-byte request of issue 11: an internal entity used as the venID.
ENTITY_POLL = (f'<?xml version="1.0"?>\n<!DOCTYPE p [<!ENTITY e "ven-x">]>\n'
               f'<oadr:oadrPayload {NS}><oadr:oadrSignedObject><oadr:oadrPoll ei:schemaVersion="2.0b">'
               f'<ei:venID>&e;</ei:venID></oadr:oadrPoll></oadr:oadrSignedObject>'
               f'</oadr:oadrPayload>').encode()
LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
          + b"".join(b'<!ENTITY %c "%s">' % (ord("b") + i, b"&%c;" % (ord("a") + i) * 10)
                     for i in range(8))
          + b']><oadr:oadrPayload xmlns:oadr="http://openadr.org/oadr-2.0b/2012/07">&i;'
            b'</oadr:oadrPayload>')


async def entity_scenario(root: Path) -> dict:
    """The entity request, then a signed poll, against one VTN: run in a child process, so
    that a segfault fails the test instead of killing pytest."""
    store = Store(f"sqlite:///{root / 'vtn.sqlite'}")
    pki = pki_for(root)
    enrol(store, pki)
    async with running_vtn(store, pki) as url, Peer(pki) as peer:
        first = await peer.post(url, "OadrPoll", ENTITY_POLL)
        laughs = await peer.post(url, "OadrPoll", LAUGHS)
        poll = await peer.post(url, "OadrPoll", peer.sign("oadrPoll", ven_id=VEN))
    return {"first": [first[0], code(first[1]), answer(first[1])[1]["response"]
                      ["response_description"]],
            "laughs": [laughs[0], code(laughs[1])],
            "poll": [poll[0], answer(poll[1])[0]]}


def test_the_entity_request_is_refused_and_the_vtn_keeps_serving(tmp_path):
    assert len(ENTITY_POLL) == 332
    script = ("import asyncio, json, sys; from pathlib import Path; "
              "from tests.test_hostile_input import entity_scenario; "
              "print(json.dumps(asyncio.run(entity_scenario(Path(sys.argv[1])))))")
    child = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True,
                           text=True, timeout=120, cwd=Path(__file__).parent.parent)
    assert child.returncode == 0, f"the VTN process died ({child.returncode}): {child.stderr[-2000:]}"
    result = json.loads(child.stdout.strip().splitlines()[-1])
    assert result["first"][:2] == [200, 400]
    assert "DOCTYPE" in result["first"][2]
    assert result["laughs"] == [200, 400]
    assert result["poll"] == [200, "oadrResponse"]     # served on: nothing queued for the VEN


@pytest.fixture
async def vtn(tmp_path, store):
    pki = pki_for(tmp_path)
    enrol(store, pki)
    async with running_vtn(store, pki) as url, Peer(pki) as peer:
        yield store, url, peer


HOSTILE_IDS = ["<x", 'a"b\'c&d', "</requestID><ei:venID>evil</ei:venID><requestID>",
               "]]><![CDATA[", "\u202e"]


@pytest.mark.parametrize("request_id", HOSTILE_IDS)
async def test_hostile_request_ids_come_back_escaped_and_inject_nothing(vtn, request_id):
    store, url, peer = vtn
    status, body = await peer.post(url, "EiRegisterParty", peer.sign(
        "oadrQueryRegistration", request_id=request_id))
    assert status == 200
    message_type, payload = answer(body)      # XSD-valid
    assert message_type == "oadrCreatedPartyRegistration"
    assert payload["response"]["request_id"] == request_id
    assert body.count("<ei:venID") == 1
    assert "evil" not in (payload.get("ven_id") or "")


async def test_hostile_ids_in_an_opt_come_back_escaped(vtn):
    store, url, peer = vtn
    before = snapshot(store)
    status, body = await peer.post(url, "EiOpt", peer.sign(
        "oadrCreateOpt", opt_id="<o>&", opt_type="optOut", opt_reason="participating",
        event_id="</ei:eventID><x/>", modification_number=0, request_id="<r>", ven_id=VEN,
        created_date_time=datetime.now(timezone.utc), targets=[objects.Target(ven_id=VEN)]))
    message_type, payload = answer(body)
    assert (message_type, payload["response"]["response_code"]) == ("oadrCreatedOpt",
                                                                    CODES.INVALID_ID)
    assert (payload["opt_id"], payload["response"]["request_id"]) == ("<o>&", "<r>")
    assert snapshot(store) == before


@pytest.mark.parametrize("content_type", ["text/plain", "", "application/json"])
async def test_a_wrong_content_type_gets_400_not_500(vtn, content_type):
    store, url, peer = vtn
    status, body = await peer.post(url, "OadrPoll", peer.sign("oadrPoll", ven_id=VEN), content_type)
    assert (status, code(body)) == (200, 400)


async def test_a_body_over_the_limit_gets_400(vtn):
    from flexadr.oadr_xml import MAX_BYTES
    store, url, peer = vtn
    status, body = await peer.post(url, "OadrPoll", b"<p>" + b" " * MAX_BYTES + b"</p>")
    assert (status, code(body)) == (200, 400)
    assert "larger than" in answer(body)[1]["response"]["response_description"]


async def test_a_bare_signed_object_gets_400(vtn):
    store, url, peer = vtn
    bare = (f'<oadr:oadrPayload {NS}><oadr:oadrSignedObject oadr:Id="oadrSignedObject"/>'
            f'</oadr:oadrPayload>')
    status, body = await peer.post(url, "OadrPoll", bare)
    assert (status, answer(body)[0], code(body)) == (200, "oadrResponse", 400)


async def test_an_unsigned_poll_with_a_ven_id_gets_463(vtn):
    store, url, peer = vtn
    unsigned = (f'<oadr:oadrPayload {NS}><oadr:oadrSignedObject oadr:Id="oadrSignedObject">'
                f'<oadr:oadrPoll ei:schemaVersion="2.0b"><ei:venID>{VEN}</ei:venID></oadr:oadrPoll>'
                f'</oadr:oadrSignedObject></oadr:oadrPayload>')
    status, body = await peer.post(url, "OadrPoll", unsigned)
    message_type, payload = answer(body)
    assert (status, payload["response"]["response_code"]) == (200, CODES.NOT_REGISTERED_OR_AUTHORIZED)
    assert payload["ven_id"] == VEN                    # venID filled where known


async def test_another_vens_certificate_cannot_speak_for_it(tmp_path, vtn):
    store, url, _ = vtn
    async with Peer(pki_for(tmp_path), "stranger") as stranger:
        status, body = await stranger.post(url, "OadrPoll", stranger.sign("oadrPoll", ven_id=VEN))
    assert code(body) == CODES.NOT_REGISTERED_OR_AUTHORIZED


async def test_a_message_for_another_service_gets_459_paired(vtn):
    store, url, peer = vtn
    status, body = await peer.post(url, "EiEvent", peer.sign(
        "oadrCancelPartyRegistration", request_id="r9", ven_id=VEN, registration_id=REGISTRATION))
    message_type, payload = answer(body)
    assert (message_type, payload["response"]["response_code"]) == (
        "oadrCanceledPartyRegistration", CODES.COMPLIANCE_ERROR)
    assert (payload["response"]["request_id"], payload["ven_id"]) == ("r9", VEN)


def _request(store) -> ReportRequest:
    request = ReportRequest(report_request_id="rr-h", ven_id=VEN, report_specifier_id="usage",
                            report_name="TELEMETRY_USAGE", r_ids="kw", granularity_s=60,
                            report_back_duration_s=60, created_at=datetime.now(timezone.utc))
    store.add_report_request(request)
    return request


async def test_an_interval_in_year_9999_gets_454_and_is_kept_only_in_quarantine(vtn):
    store, url, peer = vtn
    _request(store)
    before = snapshot(store)
    report = objects.Report(report_request_id="rr-h", report_specifier_id="usage",
                            report_name="TELEMETRY_USAGE", intervals=[objects.ReportInterval(
                                dtstart=datetime(9999, 12, 31, 23, 59, tzinfo=timezone.utc),
                                duration=timedelta(minutes=15),
                                report_payload=objects.ReportPayload(r_id="kw", value=1.0))])
    status, body = await peer.post(url, "EiReport", peer.sign(
        "oadrUpdateReport", request_id="u1", ven_id=VEN, reports=[report]))
    message_type, payload = answer(body)
    assert (status, message_type) == (200, "oadrUpdatedReport")
    assert payload["response"]["response_code"] == CODES.INVALID_DATA
    assert payload["response"]["request_id"] == "u1"
    after = snapshot(store)
    quarantined = after.pop("telemetryquarantine")
    assert len(quarantined) == 1 and "9999" in quarantined[0]
    assert after == {name: rows for name, rows in before.items() if name != "telemetryquarantine"}


async def test_an_rid_that_looks_like_a_boolean_stays_a_string(vtn):
    """rID "true" used to cancel the VEN's report requests, store a row, then answer 500."""
    store, url, peer = vtn
    request = _request(store)
    report = objects.Report(
        report_specifier_id="usage", report_name="METADATA_TELEMETRY_USAGE",
        report_descriptions=[objects.ReportDescription(
            r_id="true", reading_type="Direct Read", report_type="usage",
            report_subject=objects.Target(ven_id=VEN), report_data_source=objects.Target(ven_id=VEN),
            market_context="http://m", sampling_rate=objects.SamplingRate(
                min_period=timedelta(seconds=60), max_period=timedelta(seconds=60),
                on_change=False),
            measurement=objects.Measurement(name="power_real", description="RealPower", unit="W",
                                            scale="k"))])
    status, body = await peer.post(url, "EiReport", peer.sign(
        "oadrRegisterReport", request_id="g1", ven_id=VEN, reports=[report], report_request_id="0"))
    message_type, payload = answer(body)
    assert (status, message_type, payload["response"]["response_code"]) == (
        200, "oadrRegisteredReport", 200)
    assert [r.r_id for r in store.report_registrations(VEN)] == ["true"]
    assert store.report_request(request.report_request_id).cancelled_at is not None   # replaced


async def test_a_handler_that_fails_half_way_leaves_the_store_as_it_was(vtn):
    """oadrRegisterReport cancels the requests it replaces before it reads each report; one
    without a reportName (optional in the XSD) used to fail after the cancellation."""
    from lxml import etree

    from flexadr.signing import render
    store, url, peer = vtn
    request = _request(store)
    before = snapshot(store)
    report = objects.Report(report_specifier_id="usage", report_name="METADATA_TELEMETRY_USAGE",
                            report_descriptions=[])
    root = etree.fromstring(render("oadrRegisterReport", request_id="g2", ven_id=VEN,
                                   reports=[report]).encode())
    for name in root.iter("{http://docs.oasis-open.org/ns/energyinterop/201110}reportName"):
        name.getparent().remove(name)
    body = peer.signer.envelope(etree.tostring(root, encoding="unicode"))
    status, answer_body = await peer.post(url, "EiReport", body)
    message_type, payload = answer(answer_body)
    assert (status, message_type, payload["response"]["response_code"]) == (
        200, "oadrRegisteredReport", CODES.INVALID_DATA)
    assert store.report_request(request.report_request_id).cancelled_at is None
    assert snapshot(store) == before


def test_a_store_transaction_keeps_all_or_nothing(store):
    now = datetime.now(timezone.utc)
    store.enrol(Ven(ven_id="t1", ven_name="t1", fingerprint="fp-t1", program_id="p",
                    device_kind="battery"))
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.set_registration("t1", "reg", now)
            store.enqueue("t1", "oadrRequestReregistration", {}, now)
            assert store.ven("t1").registration_id == "reg"     # visible inside the block
            raise RuntimeError("the handler fails after two writes")
    assert store.ven("t1").registration_id is None and store.pending_messages("t1") == []
    with store.transaction():
        store.set_registration("t1", "reg", now)
        store.enqueue("t1", "oadrRequestReregistration", {}, now)
    assert store.ven("t1").registration_id == "reg" and len(store.pending_messages("t1")) == 1


async def test_a_negative_sampling_rate_gets_454_not_an_invalid_answer(vtn):
    """Found by bench/fuzz_openadr.py: the requested interval came back as P-1DT23H."""
    from lxml import etree

    from flexadr.signing import render
    from tests.hostile_fuzz import corpus
    store, url, peer = vtn
    _request(store)
    before = snapshot(store)
    payload = next(p for _, t, p in corpus() if t == "oadrRegisterReport")
    root = etree.fromstring(render("oadrRegisterReport", **payload).encode())
    for period in ("oadrMinPeriod", "oadrMaxPeriod"):
        for duration in root.iter(f"{{http://openadr.org/oadr-2.0b/2012/07}}{period}"):
            duration.text = "-PT1H"
    status, body = await peer.post(url, "EiReport", peer.signer.envelope(
        etree.tostring(root, encoding="unicode")))
    message_type, answer_payload = answer(body)
    assert (message_type, answer_payload["response"]["response_code"]) == (
        "oadrRegisteredReport", CODES.INVALID_DATA)
    assert snapshot(store) == before
