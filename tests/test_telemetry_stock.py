"""Telemetry of VENs that are not ours: STOCK openleadr 0.5.36 clients (no project code)
whose reports use openleadr's own measurement names and generated rIDs.

Every value is stored by the meaning the VEN declared in oadrRegisterReport: a
customUnit "power" in W, powerReal in W with siScaleCode k, energy, state of
charge, and TELEMETRY_STATUS as oadrPayloadResourceStatus. What the VTN cannot
store by meaning (a voltage) is kept raw with its rID and metadata, counted and
logged once.
"""
import asyncio
import json
import logging
from datetime import datetime, timedelta, timezone

import pytest
from openleadr import OpenADRClient, enums, objects

from certs.pki import ensure_dev_pki
from flexadr.clock import ceil_to
from tests.test_openadr_20b import REPORT_S, eventually, started_vtn
from ven.openadr20b.client import UPDATE_REPORT, _report_payload
from ven.openadr20b.uplink import resource_status
from vtn import metrics
from vtn.store import Resource, Ven

HOUR = timedelta(hours=1)
RATE = objects.SamplingRate(min_period=timedelta(seconds=1), max_period=HOUR, on_change=False)


def _stock(name, pki, url, reports):
    """A stock client; each report: (measurement, unit, scale, value). rIDs are openleadr's."""
    paths = pki.vens[name]
    client = OpenADRClient(ven_name=name, vtn_url=url, cert=str(paths.cert), key=str(paths.key),
                           ca_file=str(pki.ca.cert), vtn_fingerprint=pki.vtn.fingerprint,
                           show_fingerprint=False)
    r_ids = {}
    for measurement, unit, scale, value in reports:
        _, r_ids[measurement] = client.add_report(
            callback=lambda value=value: value, resource_id="device", measurement=measurement,
            unit=unit, scale=scale, sampling_rate=RATE, report_duration=HOUR)
    _, r_ids["status"] = client.add_report(
        callback=lambda: 1.0, resource_id="device", report_name=enums.REPORT_NAME.TELEMETRY_STATUS,
        report_type=enums.REPORT_TYPE.X_RESOURCE_STATUS,
        reading_type=enums.READING_TYPE.X_NOT_APPLICABLE, sampling_rate=RATE, report_duration=HOUR)
    return client, r_ids


@pytest.fixture
async def site(tmp_path, store):
    names = ["stock-battery", "stock-ev"]
    pki = ensure_dev_pki(tmp_path / "pki", names)
    store.enrol(Ven(ven_id="stock-battery", ven_name="stock-battery",
                    fingerprint=pki.vens["stock-battery"].fingerprint,
                    program_id="connected_solutions", device_kind="battery"),
                [Resource(ven_id="stock-battery", resource_id="device", device_kind="battery",
                          inverter_kw=5.0)])
    store.enrol(Ven(ven_id="stock-ev", ven_name="stock-ev",
                    fingerprint=pki.vens["stock-ev"].fingerprint,
                    program_id="managed_charging", device_kind="ev"),
                [Resource(ven_id="stock-ev", resource_id="device", device_kind="ev",
                          charger_kw=11.0)])
    server, url = await started_vtn(store, pki)
    battery = _stock("stock-battery", pki, url, [
        ("power", "W", "none", -2500.0),              # customUnit "power", in W: -2.5 kW
        ("energy", "kWh", "none", 0.001),             # customUnit "energy", in kWh
        ("stateOfCharge", "%", "none", 61.0)])        # customUnit stateOfCharge
    ev = _stock("stock-ev", pki, url, [
        ("REAL_POWER", "W", "k", 7.2),                # powerReal, W with siScaleCode k: 7.2 kW
        ("ENERGY_REAL", "Wh", "k", 0.004),            # energyReal, kWh
        ("VOLTAGE", "V", "none", 241.0)])             # understood, but not a stored quantity
    clients = [battery[0], ev[0]]
    try:
        await asyncio.wait_for(asyncio.gather(*(c.run() for c in clients)), 30)
        yield server, {"stock-battery": battery, "stock-ev": ev}
    finally:
        for client in clients:
            await client.stop()
        await server.stop()


def _with(store, ven_id, column):
    return [p for p in store.telemetry(ven_id) if getattr(p, column) is not None]


async def test_stock_usage_values_are_stored_by_their_declared_meaning(site, caplog):
    server, vens = site
    store = server.store
    raw_before = metrics.TELEMETRY_UNINTERPRETED._value.get()
    caplog.set_level(logging.WARNING, logger="vtn.service")

    battery = await eventually(lambda: [p for p in _with(store, "stock-battery", "kw")
                                        if p.kwh is not None and p.soc_pct is not None],
                               what="battery telemetry")
    assert (battery[0].kw, battery[0].kwh, battery[0].soc_pct) == (-2.5, 0.001, 61.0)
    # No duration sent: the interval is the requested granularity.
    assert battery[0].interval_end - battery[0].interval_start == timedelta(seconds=REPORT_S)
    ev = await eventually(lambda: [p for p in _with(store, "stock-ev", "kw") if p.kwh is not None],
                          what="ev telemetry")
    assert (ev[0].kw, ev[0].kwh) == (pytest.approx(7.2), pytest.approx(0.004))

    # Not one value of either VEN is NULL in the columns it declared.
    await eventually(lambda: len(store.telemetry("stock-ev")) >= 2, what="a second ev report")
    assert all(p.kw is not None for p in store.telemetry("stock-ev"))
    assert all(p.kw == -2.5 for p in store.telemetry("stock-battery") if p.kw is not None)
    assert store.quarantine() == []

    # The voltage (and the stock payloadFloat status, which has no itemBase and a generated
    # rID) are kept raw with their rID and metadata: counted, logged once per VEN and rID.
    voltage_r_id = vens["stock-ev"][1]["VOLTAGE"]
    voltage = await eventually(lambda: [r for r in store.raw_telemetry("stock-ev")
                                        if r.r_id == voltage_r_id], what="raw voltage")
    assert json.loads(voltage[0].payload)["value"] == 241.0
    declared = json.loads(voltage[0].registration)
    assert (declared["item_name"], declared["unit"], declared["report_name"]) == (
        "voltage", "V", "TELEMETRY_USAGE")
    await eventually(lambda: len([r for r in store.raw_telemetry("stock-ev")
                                  if r.r_id == voltage_r_id]) >= 2, what="a second voltage")
    assert metrics.TELEMETRY_UNINTERPRETED._value.get() - raw_before >= 2
    logged = [r for r in caplog.records if f"rID {voltage_r_id}: kept raw" in r.getMessage()]
    assert len(logged) == 1


async def test_stock_resource_status_is_stored_field_by_field(site):
    server, vens = site
    store = server.store
    client, r_ids = vens["stock-ev"]
    request = [r for r in store.report_requests("stock-ev")
               if r.report_name == "TELEMETRY_STATUS"][0]
    start = ceil_to(datetime.now(timezone.utc), timedelta(seconds=REPORT_S)) - 10 * HOUR
    status = {**resource_status(online=True, manual_override=True),
              "load_control_state": {"oadrCapacity": 0.5, "oadrLevelOffset": -1.5,
                                     "oadrPercentOffset": -20.0, "oadrSetPoint": 3.3}}
    report = objects.Report(
        report_request_id=request.report_request_id,
        report_specifier_id=request.report_specifier_id, report_name="TELEMETRY_STATUS",
        intervals=[objects.ReportInterval(dtstart=start, duration=timedelta(seconds=REPORT_S),
                                          report_payload=_report_payload(r_ids["status"], status))])
    # The message a third-party VEN sends (openleadr cannot render this payload itself),
    # signed with the stock client's own key.
    message = client._create_message(UPDATE_REPORT, reports=[report], ven_id="stock-ev",
                                     request_id="status-1")
    response_type, response = await asyncio.wait_for(
        client._perform_request("EiReport", message), 10)
    assert (response_type, response["response"]["response_code"]) == ("oadrUpdatedReport", 200)
    (point,) = [p for p in store.telemetry("stock-ev") if p.interval_start == start]
    assert (point.online, point.manual_override) == (True, True)
    assert (point.load_capacity, point.load_level_offset, point.load_percent_offset,
            point.load_setpoint) == (0.5, -1.5, -20.0, 3.3)
    assert point.kw is None and store.quarantine() == []
