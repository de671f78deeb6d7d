"""OpenADR 2.0b on the VTN side, spoken to by a STOCK openleadr 0.5.36 client (no project code).

Every message the VTN sends back is validated against the 2.0b XSD.
"""
import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from openleadr import OpenADRClient, enums, objects

from certs.pki import ensure_dev_pki
from flexadr import xsd
from flexadr.clock import SystemClock, ceil_to
from flexadr.demo import _free_port
from schedules import model
from tests.harness import eventually
from vtn import lifecycle
from vtn.service import Vtn, VtnConfig
from vtn.store import Ven

PATH = "/OpenADR2/Simple/2.0b"
INVALID_ID = enums.STATUS_CODES.INVALID_ID   # 452
REPORT_S = 2


class Stock:
    """A stock OpenADRClient with the reports our VEN offers, recording what it receives."""

    def __init__(self, name, pki, url, with_history=False):
        paths = pki.vens[name]
        self.client = OpenADRClient(ven_name=name, vtn_url=url, cert=str(paths.cert),
                                    key=str(paths.key), ca_file=str(pki.ca.cert),
                                    vtn_fingerprint=pki.vtn.fingerprint, show_fingerprint=False)
        self.received: list[str] = []
        self.events: list[dict] = []
        self.client.add_hook("after_receive_xml", lambda xml: xml and self.received.append(xml))
        self.client.add_handler("on_event", self.on_event)
        self.client.add_handler("on_update_event", self.on_event)
        rate = objects.SamplingRate(min_period=timedelta(seconds=1),
                                    max_period=timedelta(hours=1), on_change=False)
        self.tick = 0

        def aligned(value):
            # One dtstart for every point of a tick, so they land in one interval.
            def read():
                return [(ceil_to(datetime.now(timezone.utc), timedelta(seconds=REPORT_S))
                         - timedelta(seconds=REPORT_S), value)]
            return read

        def usage(r_id):
            return aligned({"kw": 3.5, "kwh": 0.25, "soc": 61.0}[r_id])
        for r_id, measurement, unit, scale in [("kw", "REAL_POWER", "W", "k"),
                                               ("kwh", "ENERGY_REAL", "Wh", "k"),
                                               ("soc", "stateOfCharge", "%", "none")]:
            self.client.add_report(callback=usage(r_id), resource_id="device", r_id=r_id,
                                   measurement=measurement, unit=unit, scale=scale,
                                   report_specifier_id=f"{name}-usage", sampling_rate=rate,
                                   report_duration=timedelta(hours=1))
        for r_id, value in [("soc", 61.0), ("plugged_in", 1.0), ("online", 1.0),
                            ("manual_override", 0.0)]:
            self.client.add_report(callback=aligned(value), resource_id="device",
                                   r_id=r_id, report_name=enums.REPORT_NAME.TELEMETRY_STATUS,
                                   report_specifier_id=f"{name}-status", sampling_rate=rate,
                                   report_duration=timedelta(hours=1))
        if with_history:
            def history(date_from, date_to, sampling_interval):
                start = date_from.replace(second=0, microsecond=0)
                return [(start + timedelta(minutes=15 * i), 1.0 + i) for i in range(3)]
            self.client.add_report(callback=history, resource_id="device", r_id="kw",
                                   measurement="REAL_POWER", unit="W", scale="k",
                                   report_name=enums.REPORT_NAME.HISTORY_USAGE,
                                   data_collection_mode="full",
                                   report_specifier_id=f"{name}-history", sampling_rate=rate,
                                   report_duration=timedelta(days=1))

    def on_event(self, event):
        self.events.append(event)
        return "optIn"

    def types(self):
        return [xsd.message_type(xsd.validate(xml)) for xml in self.received]


async def started_vtn(store, pki, telemetry_interval=timedelta(seconds=REPORT_S),
                      run_ticker=True, **config):
    """Our VTN on a free port (polls every second): the server and its OpenADR URL."""
    port = _free_port()
    server = Vtn(VtnConfig("TEST_VTN", "127.0.0.1", port, pki.vtn.cert, pki.vtn.key, pki.ca.cert,
                           poll_interval=timedelta(seconds=1),
                           telemetry_interval=telemetry_interval, **config),
                 store, SystemClock())
    await server.start(run_ticker=run_ticker)
    return server, f"https://127.0.0.1:{port}{PATH}"


def enrolled_stock_vens(store, root, names=("stock-1", "stock-2")):
    """A test PKI with a certificate per stock VEN, each enrolled in ConnectedSolutions."""
    pki = ensure_dev_pki(root, names)
    for name in names:
        store.enrol(Ven(ven_id=name, ven_name=name, fingerprint=pki.vens[name].fingerprint,
                        program_id="connected_solutions", device_kind="battery"))
    return pki


@pytest.fixture
async def vtn(tmp_path, store):
    pki = enrolled_stock_vens(store, tmp_path / "pki")
    server, url = await started_vtn(store, pki)
    yield server, pki, url
    await server.stop()


@pytest.fixture
async def stock(vtn):
    server, pki, url = vtn
    ven = Stock("stock-1", pki, url, with_history=True)
    await asyncio.wait_for(ven.client.run(), 20)
    yield ven
    await ven.client.stop()


def _publish(store, minutes_ahead=30):
    start = datetime.now(timezone.utc) + timedelta(minutes=minutes_ahead)
    return lifecycle.publish(store, model.load("connected_solutions"), start,
                             start + timedelta(hours=2), ["stock-1"], SystemClock(),
                             setpoint_kw=5)


async def test_stock_ven_registers_gets_an_event_opts_out_and_reports(vtn, stock,
                                                                     vtn_sent_messages):
    server, _, _ = vtn
    store = server.store
    ven = store.ven("stock-1")
    assert stock.client.registration_id == ven.registration_id and ven.last_seen_at is not None

    # EiReport: both telemetry reports requested at the program's interval, and created.
    requests = {r.report_name: r for r in store.report_requests("stock-1")}
    assert requests["TELEMETRY_USAGE"].granularity_s == REPORT_S
    assert set(requests["TELEMETRY_USAGE"].r_ids.split(",")) == {"kw", "kwh", "soc"}
    assert set(requests["TELEMETRY_STATUS"].r_ids.split(",")) == {
        "soc", "plugged_in", "online", "manual_override"}
    await eventually(lambda: all(store.report_request(r.report_request_id).acknowledged_at
                                 for r in requests.values() if not r.one_shot),
                     what="oadrCreatedReport")

    # EiEvent: delivered at a poll, answered, recorded.
    event = _publish(store)
    await eventually(lambda: store.target(event.event_id, "stock-1").opt_type == "optIn",
                     what="optIn stored")

    # EiOpt: the participant opts out of that event.
    opt_id = await asyncio.wait_for(stock.client.create_opt(
        opt_type="optOut", opt_reason="participating", targets=[{"ven_id": "stock-1"}],
        event_id=event.event_id, modification_number=0), 10)
    assert opt_id
    target = store.target(event.event_id, "stock-1")
    assert (target.opt_type, target.opt_source) == ("optOut", "eiOpt")
    assert [(o.opt_id, o.opt_type, o.event_id) for o in store.opts("stock-1")] == [
        (opt_id, "optOut", event.event_id)]

    # Telemetry: both reports stored, kW in kW, flags as booleans.
    points = await eventually(
        lambda: [p for p in store.telemetry("stock-1")
                 if p.kw is not None and p.plugged_in is not None], what="telemetry")
    point = points[0]
    assert (point.kw, point.kwh, point.soc_pct) == (3.5, 0.25, 61.0)
    assert (point.plugged_in, point.online, point.manual_override) == (True, True, False)
    assert point.interval_end - point.interval_start == timedelta(seconds=REPORT_S)

    # HISTORY_USAGE: requested once, queued for the poll, answered with the backfill.
    history = [r for r in store.report_requests("stock-1") if r.report_name == "HISTORY_USAGE"]
    assert len(history) == 1 and history[0].one_shot
    backfill = await eventually(
        lambda: [p for p in store.telemetry("stock-1") if p.kw in (1.0, 2.0, 3.0)],
        what="history backfill")
    assert sorted(p.kw for p in backfill) == [1.0, 2.0, 3.0]
    assert all(p.interval_end - p.interval_start == timedelta(seconds=REPORT_S) for p in backfill)

    # Every message the VTN sent validates (checked again on all of them at teardown).
    assert len(vtn_sent_messages) > 10
    types = set(stock.types())
    for expected in ["oadrCreatedPartyRegistration", "oadrRegisteredReport", "oadrCreateReport",
                     "oadrDistributeEvent", "oadrCreatedOpt", "oadrUpdatedReport", "oadrResponse"]:
        assert expected in types, (expected, types)


async def test_modification_and_cancellation_reach_the_stock_ven(vtn, stock):
    server, _, _ = vtn
    store = server.store
    event = _publish(store)
    await eventually(lambda: stock.events, what="event delivered")
    lifecycle.modify(store, event.event_id, SystemClock(), signal_value=7.5)
    await eventually(lambda: any(e["event_descriptor"]["modification_number"] == 1
                                 for e in stock.events), what="modification delivered")
    modified = [e for e in stock.events if e["event_descriptor"]["modification_number"] == 1][0]
    assert modified["event_signals"][0]["intervals"][0]["signal_payload"] == 7.5
    lifecycle.cancel(store, event.event_id, SystemClock())
    await eventually(lambda: any(e["event_descriptor"]["event_status"] == "cancelled"
                                 for e in stock.events), what="cancellation delivered")
    cancelled = [e for e in stock.events if e["event_descriptor"]["event_status"] == "cancelled"]
    assert cancelled[0]["event_descriptor"]["modification_number"] == 2
    assert [t.to_status for t in store.transitions(event.event_id)] == ["far", "far", "cancelled"]
    stock.types()


async def test_availability_schedule_is_stored_and_cancelled(vtn, stock):
    store = vtn[0].store
    start = datetime(2026, 7, 1, 18, 0, tzinfo=timezone.utc)
    availability = objects.Vavailability(components=[
        objects.VavailabilityComponent(dtstart=start, duration=timedelta(hours=2)),
        objects.VavailabilityComponent(dtstart=start + timedelta(days=1),
                                       duration=timedelta(hours=1))])
    opt_id = await asyncio.wait_for(stock.client.create_opt(
        opt_type="optOut", opt_reason="notParticipating", targets=[{"resource_id": "device"}],
        vavailability=availability), 10)
    opt = store.opts("stock-1")[0]
    assert (opt.opt_id, opt.opt_reason, opt.resource_ids) == (opt_id, "notParticipating", "device")
    assert [(a.start_utc, a.end_utc) for a in store.availability(opt.id)] == [
        (start, start + timedelta(hours=2)),
        (start + timedelta(days=1), start + timedelta(days=1, hours=1))]
    assert await asyncio.wait_for(stock.client.cancel_opt(opt_id), 10) is True
    assert store.opts("stock-1")[0].cancelled_at is not None
    assert {"oadrCreatedOpt", "oadrCanceledOpt"} <= set(stock.types())


async def test_reregistration_requested_by_the_vtn_keeps_the_ven_registered(vtn, stock):
    server, _, _ = vtn
    store = server.store
    before = {r.report_request_id for r in store.report_requests("stock-1", active_only=True)}
    server.request_reregistration("stock-1")
    await eventually(lambda: "oadrRequestReregistration" in stock.types(), what="re-registration")
    after = await eventually(
        lambda: {r.report_request_id for r in store.report_requests("stock-1", active_only=True)
                 } - before, what="reports registered again")
    assert len(after) == 3   # usage, status, history
    assert store.ven("stock-1").registration_id == stock.client.registration_id


async def test_query_and_cancel_registration(vtn):
    server, pki, url = vtn
    ven = Stock("stock-2", pki, url)
    try:
        message_type, payload = await asyncio.wait_for(ven.client.query_registration(), 10)
        assert message_type == "oadrCreatedPartyRegistration"
        assert payload["profiles"][0]["profile_name"] == "2.0b"
        await asyncio.wait_for(ven.client.run(), 20)
        assert server.store.ven("stock-2").registration_id == ven.client.registration_id
        await asyncio.wait_for(ven.client.cancel_party_registration(), 10)
        assert ven.client.registration_id is None
        assert server.store.ven("stock-2").registration_id is None
        assert all(r.cancelled_at for r in server.store.report_requests("stock-2"))
        assert "oadrCanceledPartyRegistration" in ven.types()
        # It can come back: registering again gives a new registration.
        await asyncio.wait_for(ven.client.create_party_registration(ven_id="stock-2"), 10)
        assert server.store.ven("stock-2").registration_id == ven.client.registration_id
    finally:
        await ven.client.stop()


# --- bad input: a specific OpenADR code and nothing changed --------------------------------

async def _send(stock, service, message_type, **payload):
    message = stock.client._create_message(message_type, ven_id="stock-1", **payload)
    response_type, response = await asyncio.wait_for(
        stock.client._perform_request(service, message), 10)
    xsd.validate(stock.received[-1])
    return response_type, response


async def test_opt_for_an_event_the_ven_never_got_is_refused(vtn, stock):
    store = vtn[0].store
    response_type, response = await _send(
        stock, "EiOpt", "oadrCreateOpt", opt_id="o-x", opt_type="optOut",
        opt_reason="participating", event_id="no-such-event", modification_number=0,
        request_id="r1", created_date_time=datetime.now(timezone.utc),
        targets=[objects.Target(ven_id="stock-1")])
    assert (response_type, response["response"]["response_code"]) == ("oadrCreatedOpt", INVALID_ID)
    assert store.opts("stock-1") == []
    response_type, response = await _send(stock, "EiOpt", "oadrCancelOpt", opt_id="never-sent",
                                          request_id="r2")
    assert response["response"]["response_code"] == INVALID_ID


async def test_report_for_a_request_that_was_never_made_is_refused(vtn, stock):
    store = vtn[0].store
    now = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)
    report = objects.Report(report_request_id="never-requested", report_specifier_id="x",
                            report_name="TELEMETRY_USAGE", intervals=[objects.ReportInterval(
                                dtstart=now, report_payload=objects.ReportPayload(r_id="kw",
                                                                                  value=9.0))])
    response_type, response = await _send(stock, "EiReport", "oadrUpdateReport",
                                          request_id="r1", reports=[report])
    assert response["response"]["response_code"] == INVALID_ID
    assert [p for p in store.telemetry("stock-1") if p.interval_start == now] == []


async def test_a_resent_report_with_durations_is_stored_once(vtn, stock):
    store = vtn[0].store
    request = [r for r in store.report_requests("stock-1") if r.report_name == "TELEMETRY_USAGE"][0]
    start = datetime(2026, 6, 30, 12, 0, tzinfo=timezone.utc)
    step = timedelta(seconds=REPORT_S)     # the requested granularity
    intervals = []
    for i in range(3):
        for r_id, value in [("kw", 2.0 + i), ("kwh", 0.001), ("soc", 50.0 + i)]:
            intervals.append(objects.ReportInterval(
                dtstart=start + step * i, duration=step,
                report_payload=objects.ReportPayload(r_id=r_id, value=value)))
    report = objects.Report(report_request_id=request.report_request_id,
                            report_specifier_id=request.report_specifier_id,
                            report_name="TELEMETRY_USAGE", intervals=intervals)
    for _ in range(2):
        response_type, response = await _send(stock, "EiReport", "oadrUpdateReport",
                                              request_id="r1", reports=[report])
        assert (response_type, response["response"]["response_code"]) == ("oadrUpdatedReport", 200)
    stored = [p for p in store.telemetry("stock-1", start, start + timedelta(hours=1))]
    assert [(p.interval_start, p.interval_end, p.kw, p.soc_pct) for p in stored] == [
        (start + step * i, start + step * (i + 1), 2.0 + i, 50.0 + i) for i in range(3)]
    assert store.revisions("stock-1") == [] and store.quarantine("stock-1") == []


async def test_cancelling_someone_elses_registration_id_is_refused(vtn, stock):
    store = vtn[0].store
    registration = store.ven("stock-1").registration_id
    response_type, response = await _send(stock, "EiRegisterParty", "oadrCancelPartyRegistration",
                                          registration_id="not-mine", request_id="r1")
    assert response["response"]["response_code"] == INVALID_ID
    assert store.ven("stock-1").registration_id == registration


async def test_the_vtn_cancels_a_report(vtn, stock):
    server, _, _ = vtn
    store = server.store
    usage = [r for r in store.report_requests("stock-1") if r.report_name == "TELEMETRY_USAGE"][0]
    await eventually(lambda: any(r["report_request_id"] == usage.report_request_id
                                 for r in stock.client.report_requests), what="report running")
    server.cancel_report(usage.report_request_id)
    await eventually(lambda: "oadrCancelReport" in stock.types(), what="oadrCancelReport")
    await eventually(lambda: all(r["report_request_id"] != usage.report_request_id
                                 for r in stock.client.report_requests), what="VEN stopped it")
    assert store.report_request(usage.report_request_id).cancelled_at is not None
    status = [r for r in store.report_requests("stock-1") if r.report_name == "TELEMETRY_STATUS"]
    assert status[0].cancelled_at is None
