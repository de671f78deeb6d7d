"""Storm alerts: the real NWS CAP ATOM feed and api.weather.gov GeoJSON -> exclusions."""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone

import pytest

from flexadr import data as shipped
from schedules import model, storms
from schedules.model import StormAction, StormRule

UTC = timezone.utc
FEED = "raw/nws_cap_atom_us_2018-08-15_IBM-cap.xml"
CS = model.load("connected_solutions")
BYOD = model.load("byod_vpp")


@pytest.fixture(scope="module")
def feed() -> list[storms.Alert]:
    return storms.parse_alerts(shipped.read_bytes(FEED))


def test_real_feed_parses_every_alert_with_codes_and_times(feed):
    assert len(feed) == 163
    assert sum(a.event == "Severe Thunderstorm Warning" for a in feed) == 10
    ma = [a for a in feed if "MAZ020" in a.ugc]
    assert len(ma) == 1 and ma[0].event == "Air Quality Alert"
    assert ma[0].fips6 == ("025001", "025005", "025007", "025019")
    assert ma[0].onset_utc == datetime(2018, 8, 15, 20, 1, tzinfo=UTC)    # 16:01 EDT
    assert ma[0].end_utc == datetime(2018, 8, 16, 20, 15, tzinfo=UTC)
    assert all(a.sent_utc.tzinfo is not None and a.end_utc >= a.onset_utc for a in feed)


def test_shipped_storm_rules_ignore_new_england_air_quality_alerts(feed):
    # The only New England alerts that day are Air Quality Alerts: not storms.
    for name in ("connected_solutions", "managed_charging", "v2x_demo", "byod_vpp"):
        assert storms.exclusions(model.load(name), feed) == []


def test_zone_type_and_severity_filters(feed):
    rule = StormRule(zones=("CAC065",), event_types=("Severe Thunderstorm Warning",),
                     before=timedelta(hours=1), action=StormAction.NO_DISCHARGE_CHARGE_FULL)
    prog = dataclasses.replace(BYOD, storms=(rule,))
    got = storms.exclusions(prog, feed)
    assert len(got) == 2          # Riverside alone, and Riverside + San Diego
    first = got[0]
    assert first.start_utc == datetime(2018, 8, 15, 21, 37, tzinfo=UTC)   # 15:37 PDT - 1 h
    assert first.end_utc == datetime(2018, 8, 16, 0, 0, tzinfo=UTC)       # 17:00 PDT
    assert first.action is StormAction.NO_DISCHARGE_CHARGE_FULL
    # by FIPS6 instead of UGC: the same two
    by_fips = dataclasses.replace(prog, storms=(dataclasses.replace(rule, zones=("006065",)),))
    assert len(storms.exclusions(by_fips, feed)) == 2
    # Air Quality Alerts have severity Unknown: below the default Severe
    aq = StormRule(zones=("MAZ020",), event_types=("Air Quality Alert",))
    assert storms.exclusions(dataclasses.replace(CS, storms=(aq,)), feed) == []
    aq_any = dataclasses.replace(aq, min_severity="Unknown", before=timedelta(hours=48))
    (only,) = storms.exclusions(dataclasses.replace(CS, storms=(aq_any,)), feed)
    assert only.start_utc == datetime(2018, 8, 13, 20, 1, tzinfo=UTC)     # two days before
    assert only.known_utc == datetime(2018, 8, 15, 20, 1, tzinfo=UTC)


def test_known_at_and_active_respect_issue_time(feed):
    aq = StormRule(zones=("MAZ020",), event_types=("Air Quality Alert",), min_severity="Unknown",
                   before=timedelta(hours=24), action=StormAction.NO_DISCHARGE_CHARGE_FULL)
    periods = storms.exclusions(dataclasses.replace(BYOD, storms=(aq,)), feed)
    before_issue = datetime(2018, 8, 15, 19, tzinfo=UTC)
    assert storms.known_at(periods, before_issue) == []
    # in the exclusion period but not yet known: not active
    assert storms.active(periods, before_issue) == []
    assert len(storms.active(periods, datetime(2018, 8, 15, 21, tzinfo=UTC))) == 1
    assert storms.active(periods, datetime(2018, 8, 16, 21, tzinfo=UTC)) == []


GEOJSON = {
    "type": "FeatureCollection",
    "features": [{
        "id": "https://api.weather.gov/alerts/urn:oid:2.49.0.1.840.0.x.001.1",
        "type": "Feature",
        "geometry": None,
        "properties": {
            "id": "urn:oid:2.49.0.1.840.0.x.001.1",
            "areaDesc": "Cumberland; York",
            "geocode": {"SAME": ["023005", "023031"], "UGC": ["MEZ023", "MEZ024"]},
            "sent": "2024-08-18T09:12:00-04:00",
            "effective": "2024-08-18T09:12:00-04:00",
            "onset": "2024-08-20T08:00:00-04:00",
            "expires": "2024-08-18T17:15:00-04:00",
            "ends": "2024-08-21T02:00:00-04:00",
            "status": "Actual", "messageType": "Alert", "category": "Met",
            "severity": "Severe", "certainty": "Likely", "urgency": "Expected",
            "event": "Tropical Storm Warning",
        },
    }, {
        "id": "x2", "type": "Feature", "geometry": None,
        "properties": {
            "id": "x2", "areaDesc": "York", "geocode": {"SAME": ["023031"], "UGC": ["MEZ024"]},
            "sent": "2024-08-18T10:00:00-04:00", "effective": "2024-08-18T10:00:00-04:00",
            "expires": "2024-08-18T12:00:00-04:00", "status": "Test", "messageType": "Alert",
            "severity": "Severe", "event": "Tropical Storm Warning",
        },
    }],
}


def test_geojson_alert_gives_managed_charging_two_days_before_predicted_outage():
    alerts = storms.parse_alerts(json.dumps(GEOJSON))
    assert len(alerts) == 2 and alerts[0].fips6 == ("023005", "023031")
    mc = model.load("managed_charging")
    (period,) = storms.exclusions(mc, alerts)        # the Test message is ignored
    assert period.start_utc == datetime(2024, 8, 18, 12, tzinfo=UTC)   # onset 12:00Z - 48 h
    assert period.end_utc == datetime(2024, 8, 21, 6, tzinfo=UTC)
    assert period.action is StormAction.NO_EVENT


def _watch(start_h: float, end_h: float, known_h: float) -> storms.Exclusion:
    t0 = datetime(2024, 8, 18, 12, tzinfo=UTC)
    return storms.Exclusion(t0 + timedelta(hours=start_h), t0 + timedelta(hours=end_h),
                            t0 + timedelta(hours=known_h),
                            StormAction.NO_DISCHARGE_CHARGE_FULL, "Severe Thunderstorm Warning")


def test_storm_watch_lasts_through_overlapping_warnings_known_by_now():
    now = datetime(2024, 8, 18, 13, tzinfo=UTC)
    chain = [_watch(0, 2, 0), _watch(1.5, 4, 0.5), _watch(6, 8, 0)]      # the third is later
    assert storms.warning_until(chain, now) == datetime(2024, 8, 18, 16, tzinfo=UTC)
    assert storms.warning_until([_watch(0, 2, 3)], now) is None          # not issued yet
    assert storms.warning_until([_watch(-3, 0.5, -3)], now) is None      # over
    no_event = dataclasses.replace(_watch(0, 2, 0), action=StormAction.NO_EVENT)
    assert storms.warning_until([no_event], now) is None                 # not a storm watch
