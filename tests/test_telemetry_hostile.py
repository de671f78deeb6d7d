"""Hostile telemetry (issue 11 item 4), sent by a stock openleadr client over mTLS, signed.

Each bad value gets oadrUpdatedReport 454 with the reason, a counted metric and a
quarantine row (raw, with the reason); the good values of the same report are
stored; nothing bad is stored as a reading. A re-sent interval with another value
is a revision: the first received value stays.
"""
import asyncio
import json
from datetime import datetime, timedelta, timezone

import pytest
from openleadr import OpenADRClient, objects

from certs.pki import ensure_dev_pki
from flexadr.clock import ceil_to
from tests.test_openadr_20b import started_vtn
from vtn import metrics, telemetry
from vtn.programs import ensure_program
from vtn.store import Enrolment, Participant, Resource, Ven

INVALID_DATA = 454
STEP = timedelta(minutes=15)          # the requested granularity: the program's telemetry interval
HOUR = timedelta(hours=1)
RATE = objects.SamplingRate(min_period=timedelta(seconds=1), max_period=HOUR, on_change=False)
CHARGER_KW = 7.2                      # enrolled: kW beyond 7.2 x 1.25 = 9 kW is not believed


@pytest.fixture
async def ven(tmp_path, store):
    pki = ensure_dev_pki(tmp_path / "pki", ["stock-ev"])
    ensure_program(store, "managed_charging")
    store.add_participant(Participant(participant_id="p1", name="P", household_id="h1"))
    store.enrol(Ven(ven_id="stock-ev", ven_name="stock-ev", participant_id="p1",
                    fingerprint=pki.vens["stock-ev"].fingerprint, program_id="managed_charging",
                    device_kind="ev"),
                [Resource(ven_id="stock-ev", resource_id="device", device_kind="ev",
                          charger_kw=CHARGER_KW)])
    store.add_enrolment(Enrolment(participant_id="p1", program_id="managed_charging",
                                  ven_id="stock-ev", device_kind="ev",
                                  enrolled_on=datetime(2026, 1, 1).date()))
    server, url = await started_vtn(store, pki)     # the program's 15 minutes win
    paths = pki.vens["stock-ev"]
    client = OpenADRClient(ven_name="stock-ev", vtn_url=url,
                           cert=str(paths.cert), key=str(paths.key), ca_file=str(pki.ca.cert),
                           vtn_fingerprint=pki.vtn.fingerprint, show_fingerprint=False)
    for r_id, measurement, unit, scale in [("kw", "REAL_POWER", "W", "k"),
                                           ("soc", "stateOfCharge", "%", "none")]:
        client.add_report(callback=lambda: 1.0, resource_id="device", r_id=r_id,
                          measurement=measurement, unit=unit, scale=scale, sampling_rate=RATE,
                          report_duration=HOUR)
    try:
        await asyncio.wait_for(client.run(), 20)
        client.scheduler.pause()       # no polls or timed reports: only what a test sends
        yield server, client
    finally:
        await client.stop()
        await server.stop()


def _usage_request(store):
    return [r for r in store.report_requests("stock-ev") if r.report_name == "TELEMETRY_USAGE"][0]


def _interval(r_id, value, start, duration=STEP):
    return objects.ReportInterval(dtstart=start, duration=duration,
                                  report_payload=objects.ReportPayload(r_id=r_id, value=value))


async def _send(server, client, intervals):
    request = _usage_request(server.store)
    report = objects.Report(report_request_id=request.report_request_id,
                            report_specifier_id=request.report_specifier_id,
                            report_name="TELEMETRY_USAGE", intervals=intervals)
    message = client._create_message("oadrUpdateReport", reports=[report], ven_id="stock-ev",
                                     request_id="r1")
    response_type, response = await asyncio.wait_for(
        client._perform_request("EiReport", message), 10)
    # openleadr answers errors as a bare oadrResponse (being paired by the message path)
    assert response_type in ("oadrUpdatedReport", "oadrResponse")
    return response["response"]["response_code"], response["response"]["response_description"]


def _recent(steps_ago):
    return ceil_to(datetime.now(timezone.utc), STEP) - STEP * steps_ago


def _rejected(check):
    return metrics.TELEMETRY_REJECTED.labels(check)._value.get()


HOSTILE = [
    # (name, r_id, value, start, duration, reason, metric label)
    ("NaN kW", "kw", "NaN", None, STEP, "kw nan is not a finite number", "kw"),
    ("+Inf kW", "kw", "INF", None, STEP, "kw inf is not a finite number", "kw"),
    ("-Inf kW", "kw", "-INF", None, STEP, "kw -inf is not a finite number", "kw"),
    ("1e39 kW", "kw", "1e39", None, STEP, "kw 1e+39 is beyond +-9 kW", "kw"),
    ("just over the enrolled charger", "kw", "9.5", None, STEP, "kw 9.5 is beyond +-9 kW", "kw"),
    ("SoC 1e9 %", "soc", "1e9", None, STEP, "soc_pct 1e+09 is outside 0-100 %", "soc_pct"),
    ("negative SoC", "soc", "-3", None, STEP, "soc_pct -3 is outside 0-100 %", "soc_pct"),
    ("interval in 1970", "kw", "3.0", datetime(1970, 1, 1, tzinfo=timezone.utc), STEP,
     "before enrolment", "interval"),
    ("interval in 2099", "kw", "3.0", datetime(2099, 1, 1, tzinfo=timezone.utc), STEP,
     "in the future", "interval"),
    ("100-year duration", "kw", "3.0", None, timedelta(days=36500),
     "is longer than the requested 0:15:00", "interval"),
    ("zero duration", "kw", "3.0", None, timedelta(0), "is not positive", "interval"),
]


@pytest.mark.parametrize("name, r_id, value, start, duration, reason, check", HOSTILE,
                         ids=[case[0] for case in HOSTILE])
async def test_a_hostile_value_is_quarantined_and_the_rest_of_the_report_stored(
        ven, name, r_id, value, start, duration, reason, check):
    server, client = ven
    store = server.store
    good_at, bad_at = _recent(4), start or _recent(2)
    before = _rejected(check)
    code, description = await _send(server, client, [
        _interval("kw", 3.0, good_at), _interval(r_id, value, bad_at, duration)])
    assert code == INVALID_DATA
    assert description.startswith("1 value(s) quarantined: ") and reason in description
    assert _rejected(check) == before + 1
    (row,) = store.quarantine("stock-ev")
    assert reason in row.reason and row.r_id == r_id and row.interval_start == bad_at
    assert row.report_name == "TELEMETRY_USAGE"
    assert json.loads(row.payload)["r_id"] == r_id         # the raw payload, as received
    # The good value is stored; nothing of the bad one is, anywhere.
    assert [(p.interval_start, p.kw) for p in store.telemetry("stock-ev")] == [(good_at, 3.0)]
    assert store.raw_telemetry("stock-ev") == [] and store.revisions("stock-ev") == []


async def test_too_many_intervals_quarantine_the_whole_report(ven):
    server, client = ven
    store = server.store
    start = _recent(4 * 24 * 30)
    intervals = [_interval("kw", 1.0, start + STEP * i) for i in range(1900)]
    code, description = await _send(server, client, intervals)
    assert code == INVALID_DATA
    assert f"1900 intervals in one report: at most {telemetry.MAX_INTERVALS}" in description
    (row,) = store.quarantine("stock-ev")
    assert row.interval_start is None and len(json.loads(row.payload)) == 1900
    assert store.telemetry("stock-ev") == []


async def test_a_resent_interval_with_another_value_is_a_revision_not_an_overwrite(ven):
    server, client = ven
    store = server.store
    at = _recent(3)
    revisions_before = metrics.TELEMETRY_REVISIONS._value.get()
    for value in (3.0, 3.0, 4.5):     # the same value again changes nothing
        assert await _send(server, client, [_interval("kw", value, at),
                                            _interval("soc", 40.0, at)]) == (200, "OK")
    (point,) = store.telemetry("stock-ev")
    assert (point.kw, point.soc_pct) == (3.0, 40.0)                # the first received stays
    (revision,) = store.revisions("stock-ev")
    assert (revision.quantity, json.loads(revision.first_value), json.loads(revision.value)) == (
        "kw", 3.0, 4.5)
    assert revision.interval_start == at
    assert metrics.TELEMETRY_REVISIONS._value.get() == revisions_before + 1
    # A re-send of the same start with another duration is a revision of its end.
    assert await _send(server, client, [_interval("kw", 3.0, at, STEP / 2)]) == (200, "OK")
    assert [r.quantity for r in store.revisions("stock-ev")] == ["kw", "interval_end"]
    assert store.telemetry("stock-ev")[0].interval_end == at + STEP
