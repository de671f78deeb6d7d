"""V2X demonstration and BYOD VPP settlement, hand-computed."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from vtn.settlement import (
    EventKind, EventRecord, ParticipantInfo, SettlementInput, TelemetryInterval, settle)
from vtn.settlement.dates import local_window_utc
from vtn.settlement.context import SeasonContext
from vtn.settlement.intervals import Series
from vtn.settlement.params import CLEAN_PEAK_WINDOWS, PARAMS
from vtn.settlement.v2x import clean_peak, clean_peak_window, plug_stats

NY = ZoneInfo("America/New_York")
V2X = PARAMS["v2x_demo"].settlement


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def iv(start: str, end: str, kw: float, p: str = "p1", **extra) -> TelemetryInterval:
    return TelemetryInterval(p, t(start), t(end), kw, **extra)


def local(day: date, start_h: int, end_h: int, kw: float, p: str = "p1", **extra) -> TelemetryInterval:
    start, end = local_window_utc(day, time(start_h), time(end_h), NY)
    return TelemetryInterval(p, start, end, kw, **extra)


@pytest.mark.parametrize("day, season, start_h, end_h", [
    (date(2026, 3, 1), "spring", 17, 21), (date(2026, 5, 14), "spring", 17, 21),
    (date(2026, 5, 15), "summer", 16, 20), (date(2026, 9, 14), "summer", 16, 20),
    (date(2026, 9, 15), "fall", 16, 20), (date(2026, 11, 30), "fall", 16, 20),
    (date(2026, 12, 1), "winter", 16, 20), (date(2027, 1, 15), "winter", 16, 20),
    (date(2028, 2, 29), "winter", 16, 20),
])
def test_clean_peak_windows_by_season(day, season, start_h, end_h):
    w = clean_peak_window(day, CLEAN_PEAK_WINDOWS)
    assert (w.season, w.start, w.end) == (season, time(start_h), time(end_h))


def test_clean_peak_discharge_on_the_dst_day():
    # Same UTC hour 21:30-22:30 at 10 kW on two days:
    # Mar 7 (EST): 16:30-17:30 local, window from 17:00 -> 0.5 h x 10 = 5 kWh;
    # Mar 8 (EDT, DST starts): 17:30-18:30 local, fully inside -> 10 kWh. Total 15 kWh.
    series = Series([iv("2026-03-07T21:30:00Z", "2026-03-07T22:30:00Z", 10.0),
                     iv("2026-03-08T21:30:00Z", "2026-03-08T22:30:00Z", 10.0)])
    cp = clean_peak(series, SeasonContext(2026, NY, ()), V2X)
    assert cp.discharged_kwh == pytest.approx(15.0)
    assert cp.charging_avoided_kwh == 0


def test_charging_avoided_on_event_days_against_prior_days():
    # Summer window 16:00-20:00. Prior non-event days charge 2, 3, 4 kW for 2 h in
    # the window (4, 6, 8 kWh: baseline 6 kWh). Event day Jul 10: charges 1 kW for
    # 2 h (2 kWh) -> 4 kWh avoided. Event day Jul 11 charges 5 kW x 2 h = 10 kWh
    # (> its baseline: mean of Jul 9, 8, 7 = 6 kWh) -> 0, never negative.
    ctx = SeasonContext(2026, NY, tuple(
        EventRecord(f"e{d}", *local_window_utc(date(2026, 7, d), time(16), time(19), NY)) for d in (10, 11)))
    series = Series([local(date(2026, 7, 7), 16, 18, -2.0), local(date(2026, 7, 8), 16, 18, -3.0),
                     local(date(2026, 7, 9), 16, 18, -4.0), local(date(2026, 7, 10), 16, 18, -1.0),
                     local(date(2026, 7, 11), 16, 18, -5.0)])
    cp = clean_peak(series, ctx, V2X)
    assert cp.charging_avoided_kwh == pytest.approx(4.0)
    assert cp.discharged_kwh == 0


def test_v2x_season_payment_is_clean_peak_value():
    # One event Jul 10 16:00-19:00 local; discharge 8 kW 16:00-18:00 (16 kWh, all
    # inside the 16:00-20:00 window) and 8 kW 20:00-21:00 (outside: no Clean Peak).
    # Event kW = 16 kWh / 3 h = 5.333 kW. Clean Peak 16 kWh x $65/MWh = $1.04.
    event = EventRecord("e1", *local_window_utc(date(2026, 7, 10), time(16), time(19), NY))
    data = SettlementInput((event,), (local(date(2026, 7, 10), 16, 18, 8.0),
                                      local(date(2026, 7, 10), 20, 21, 8.0)))
    result = settle("v2x_demo", data)
    p = result.participants[0]
    assert p.events[0].kw == pytest.approx(16 / 3)
    assert p.details["clean_peak_discharged_kwh"] == 16.0
    assert p.payment_usd == 1.04
    assert result.totals["clean_peak_value_usd"] == 1.04


def test_plug_in_statistics():
    # Readings (hourly, Jul 10 local): 12-13 unplugged, 13-18 plugged, 18-19 unplugged,
    # 19-22 plugged. Plug-ins at 13:00 and 19:00, unplug at 18:00.
    # Event A 14:00-17:00: plugged throughout. Event B 17:00-20:00: unplugged 18-19.
    day = date(2026, 7, 10)
    series = Series([local(day, 12, 13, 0.0, plugged_in=False), local(day, 13, 18, 3.0, plugged_in=True),
                     local(day, 18, 19, 0.0, plugged_in=False), local(day, 19, 22, 3.0, plugged_in=True)])
    events = (EventRecord("a", *local_window_utc(day, time(14), time(17), NY)),
              EventRecord("b", *local_window_utc(day, time(17), time(20), NY)))
    stats = plug_stats(series, SeasonContext(2026, NY, events), ParticipantInfo("p1"))
    assert [x.astimezone(NY).hour for x in stats.plug_ins_utc] == [13, 19]
    assert [x.astimezone(NY).hour for x in stats.unplugs_utc] == [18]
    assert (stats.events_plugged_in, stats.events_eligible) == (1, 2)
    # Through settle: share 0.5, event B earns 3 kW for 2 of 3 h = 2.0 kW.
    p = settle("v2x_demo", SettlementInput(events, tuple(series.intervals))).participants[0]
    assert p.details["events_plugged_in_share"] == 0.5
    assert p.details["median_plug_in_local"] == "13:00"
    assert p.events[1].kw == pytest.approx(2.0)


# ---------------------------------------------------------------- BYOD

def byod_event(event_id: str, day: date, kind: EventKind = EventKind.PEAK) -> EventRecord:
    return EventRecord(event_id, *local_window_utc(day, time(17), time(20), NY), kind)


def test_events_per_month_in_local_time_against_the_cap():
    # 8 events in July plus one at 2026-07-31 21:00 EDT (= Aug 1 01:00 UTC):
    # 9 in July local time, over the cap of 8; August has 1.
    events = [byod_event(f"e{d}", date(2026, 7, d)) for d in range(1, 9)]
    events.append(EventRecord("late", t("2026-08-01T01:00:00Z"), t("2026-08-01T02:00:00Z")))
    events.append(byod_event("aug", date(2026, 8, 5)))
    result = settle("byod_vpp", SettlementInput(tuple(events), ()))
    assert result.totals["events_per_month"] == {"2026-07": 9, "2026-08": 1}
    assert result.totals["months_over_cap"] == ["2026-07"]
    assert result.warnings == ("2026-07: 9 events called, cap 8",)


def test_cycles_floor_violations_flex_alert_and_upfront():
    # Capacity 10 kWh. Discharge 5 kW for 12 h on 10 days = 600 kWh -> 60 cycles > 50.
    # Dec 31 2025 local discharge is outside the 2026 year and not counted.
    # Floor: soc 19 % while discharging -> violation; soc 19 % idle and 25 %
    # discharging -> none. Flex alert Aug 20 17:00-19:00: export 3 kW for
    # 1.5 h = 4.5 kWh x $2.00 = $9.00. Upfront: 5 kW x $850 = $4,250 (enrolled 2026).
    days = [date(2026, 6, 1) + timedelta(days=i) for i in range(10)]
    telemetry = [local(d, 0, 12, 5.0, soc_pct=60.0) for d in days]
    telemetry.append(local(date(2025, 12, 31), 0, 12, 5.0))
    telemetry += [local(date(2026, 7, 1), 17, 18, 2.0, soc_pct=19.0),
                  local(date(2026, 7, 1), 18, 19, 0.0, soc_pct=19.0),
                  local(date(2026, 7, 2), 17, 18, 2.0, soc_pct=25.0)]
    alert_start, _ = local_window_utc(date(2026, 8, 20), time(17), time(19), NY)
    telemetry.append(TelemetryInterval("p1", alert_start, alert_start + timedelta(minutes=90), 3.0))
    events = (byod_event("e1", date(2026, 7, 1)), byod_event("e2", date(2026, 7, 2)),
              EventRecord("fa", *local_window_utc(date(2026, 8, 20), time(17), time(19), NY),
                          EventKind.FLEX_ALERT))
    info = ParticipantInfo("p1", enrolled_utc=t("2026-05-01T12:00:00Z"), capacity_kwh=10.0, enrolled_kw=5.0)
    result = settle("byod_vpp", SettlementInput(events, tuple(telemetry), (info,)))
    p = result.participants[0]
    # 600 + 2 (Jul 1) + 2 (Jul 2) + 4.5 (flex export is discharge too) = 608.5 kWh
    assert p.details["discharged_kwh"] == pytest.approx(608.5)
    assert p.details["full_equivalent_cycles"] == pytest.approx(60.85)
    assert p.details["cycles_over_cap"] is True
    assert p.details["floor_violations"] == 1
    assert p.details["flex_alert_export_kwh"] == 4.5
    assert p.details["flex_alert_premium_usd"] == 9.0
    assert p.details["upfront_capacity_usd"] == 4250.0
    assert p.payment_usd == 4259.0
    # Flex alerts are not peak events: 2 events; e1: 2 kWh / 3 h, e2 the same.
    assert [e.event_id for e in p.events] == ["e1", "e2"]
    assert p.season_kw == pytest.approx(0.667)
    assert result.totals["floor_violations"] == 1
