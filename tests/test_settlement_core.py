"""Settlement core: time-weighted overlap and the discharge program
(ConnectedSolutions). Every expected value is worked out by hand in the comment
beside it."""
from __future__ import annotations

from datetime import date, datetime, time, timezone
from zoneinfo import ZoneInfo

import pytest

from vtn.settlement import (
    EventRecord, EventStatus, OptOut, ParticipantInfo, RateClass, SettlementInput,
    TelemetryInterval, settle)
from vtn.settlement.dates import last_business_day, local_window_utc, us_holidays
from vtn.settlement.discharge import capped_payment, rate_for
from vtn.settlement.intervals import Series, overlap_s, window_average, window_kwh
from vtn.settlement.params import RateEntry
from vtn.settlement.performance import discharge_kw, event_performance

NY = ZoneInfo("America/New_York")


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def iv(start: str, end: str, kw: float, p: str = "p1", **kw_extra) -> TelemetryInterval:
    return TelemetryInterval(p, t(start), t(end), kw, **kw_extra)


def ev(event_id: str, start: str, end: str) -> EventRecord:
    return EventRecord(event_id, t(start), t(end))


# An ordinary event: 2026-07-20 15:00-17:00 EDT = 19:00-21:00 UTC (2 h).
E1 = ev("e1", "2026-07-20T19:00:00+00:00", "2026-07-20T21:00:00+00:00")


def test_overlap_seconds():
    a, b = t("2026-07-20T19:00:00Z"), t("2026-07-20T21:00:00Z")
    assert overlap_s(a, b, t("2026-07-20T18:30:00Z"), t("2026-07-20T19:30:00Z")) == 1800
    assert overlap_s(a, b, t("2026-07-20T21:00:00Z"), t("2026-07-20T22:00:00Z")) == 0
    assert overlap_s(a, b, t("2026-07-20T17:00:00Z"), t("2026-07-20T18:00:00Z")) == 0


def test_interval_straddling_event_start_is_time_weighted():
    # 60-min interval 18:30-19:30 at 6 kW: only its last 30 min are in the event.
    # 18:30-19:30 -> 0.5 h x 6 kW = 3 kWh; 19:30-21:00 at 2 kW -> 1.5 h x 2 = 3 kWh.
    # 6 kWh over the 2 h event = 3.0 kW (an unweighted mean of the readings gives 4.0).
    s = Series([iv("2026-07-20T18:30:00Z", "2026-07-20T19:30:00Z", 6.0),
                iv("2026-07-20T19:30:00Z", "2026-07-20T21:00:00Z", 2.0)])
    perf = event_performance(s, E1)
    assert perf.kw == pytest.approx(3.0)
    assert perf.status == EventStatus.FULL_DATA


def test_interval_straddling_event_end_is_time_weighted():
    # 15-min intervals at 4 kW to 20:45, then one 20:45-21:15 at 8 kW (half inside).
    # 1.75 h x 4 = 7 kWh + 0.25 h x 8 = 2 kWh -> 9 kWh / 2 h = 4.5 kW.
    ivs = [iv(f"2026-07-20T{h:02d}:{m:02d}:00Z", f"2026-07-20T{h + (m + 15) // 60:02d}:{(m + 15) % 60:02d}:00Z", 4.0)
           for h in (19, 20) for m in (0, 15, 30, 45) if (h, m) != (20, 45)]
    ivs.append(iv("2026-07-20T20:45:00Z", "2026-07-20T21:15:00Z", 8.0))
    assert event_performance(Series(ivs), E1).kw == pytest.approx(4.5)


@pytest.mark.parametrize("minutes", [1, 5, 15, 60])
def test_any_interval_length_gives_the_same_average(minutes):
    # 3 kW for the first hour, 5 kW for the second: 4.0 kW whatever the interval length.
    ivs = []
    start = t("2026-07-20T19:00:00Z")
    n = 120 // minutes
    for i in range(n):
        a = start.timestamp() + i * minutes * 60
        ivs.append(TelemetryInterval("p1", datetime.fromtimestamp(a, timezone.utc),
                                     datetime.fromtimestamp(a + minutes * 60, timezone.utc),
                                     3.0 if i < n // 2 else 5.0))
    assert event_performance(Series(ivs), E1).kw == pytest.approx(4.0)


def test_device_starting_to_discharge_partway_is_averaged_over_full_event():
    # Idle (0 kW) 19:00-19:30, then 6 kW 19:30-21:00 in 5-min intervals:
    # 1.5 h x 6 kW = 9 kWh / 2 h = 4.5 kW (not 6 kW).
    ivs = [iv("2026-07-20T19:00:00Z", "2026-07-20T19:30:00Z", 0.0)]
    for i in range(18):
        a = t("2026-07-20T19:30:00Z").timestamp() + 300 * i
        ivs.append(TelemetryInterval("p1", datetime.fromtimestamp(a, timezone.utc),
                                     datetime.fromtimestamp(a + 300, timezone.utc), 6.0))
    assert event_performance(Series(ivs), E1).kw == pytest.approx(4.5)


def test_missing_data_counts_zero_and_is_flagged_partial():
    # Data only for the first hour at 4 kW: 4 kWh / 2 h = 2.0 kW.
    s = Series([iv("2026-07-20T19:00:00Z", "2026-07-20T20:00:00Z", 4.0)])
    perf = event_performance(s, E1)
    assert perf.kw == pytest.approx(2.0)
    assert perf.status == EventStatus.PARTIAL_DATA
    assert perf.covered_s == 3600


def test_unplugged_charging_and_battery_meter_rules():
    # Unplugged car: 0 whatever the meter; charging is not discharge;
    # the battery's own meter beats net export (solar curtailment earns nothing).
    assert discharge_kw(iv("2026-07-20T19:00:00Z", "2026-07-20T20:00:00Z", 5.0, plugged_in=False)) == 0
    assert discharge_kw(iv("2026-07-20T19:00:00Z", "2026-07-20T20:00:00Z", -3.0)) == 0
    assert discharge_kw(iv("2026-07-20T19:00:00Z", "2026-07-20T20:00:00Z", 7.0, battery_kw=4.0)) == 4.0
    # Hour 1 unplugged (meter says 5 kW), hour 2 plugged at 5 kW: 5 kWh / 2 h = 2.5 kW.
    s = Series([iv("2026-07-20T19:00:00Z", "2026-07-20T20:00:00Z", 5.0, plugged_in=False),
                iv("2026-07-20T20:00:00Z", "2026-07-20T21:00:00Z", 5.0, plugged_in=True)])
    assert event_performance(s, E1).kw == pytest.approx(2.5)


def test_opt_out_and_late_enrolment_count_zero_even_with_discharge():
    s = Series([iv("2026-07-20T19:00:00Z", "2026-07-20T21:00:00Z", 5.0)])
    assert event_performance(s, E1, opted_out=True).kw == 0
    late = event_performance(s, E1, enrolled_utc=t("2026-07-21T00:00:00Z"))
    assert (late.kw, late.status) == (0, EventStatus.NOT_ENROLLED)


def test_dst_fall_back_event_lasts_two_real_hours():
    # 2026-11-01 01:00 EDT (-04:00) to 02:00 EST (-05:00) =
    # 05:00Z-07:00Z, two real hours although the wall clock moves one hour.
    e = ev("dst", "2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00")
    assert e.duration_s == 7200
    # 3 kW then 5 kW for an hour each: 8 kWh / 2 h = 4.0 kW.
    s = Series([iv("2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", 3.0),
                iv("2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00", 5.0)])
    assert event_performance(s, e).kw == pytest.approx(4.0)


def test_local_window_follows_the_wall_clock_across_dst():
    # 17:00-21:00 local: EST (-5) on Mar 7 2026, EDT (-4) from Mar 8 2026.
    assert local_window_utc(date(2026, 3, 7), time(17), time(21), NY) == (
        t("2026-03-07T22:00:00Z"), t("2026-03-08T02:00:00Z"))
    assert local_window_utc(date(2026, 3, 8), time(17), time(21), NY) == (
        t("2026-03-08T21:00:00Z"), t("2026-03-09T01:00:00Z"))


def test_holidays_and_business_days():
    h = us_holidays(2026)
    assert date(2026, 7, 3) in h             # July 4 2026 is a Saturday: observed Friday
    assert date(2026, 6, 19) in h and date(2026, 9, 7) in h   # Juneteenth, Labor Day
    assert date(2026, 7, 6) not in h
    assert last_business_day(2027, 5) == date(2027, 5, 28)   # May 31 2027 is Memorial Day
    assert last_business_day(2026, 5) == date(2026, 5, 29)   # May 31 2026 is a Sunday


def test_window_kwh_is_kw_times_overlapping_hours():
    s = Series([iv("2026-07-20T18:00:00Z", "2026-07-20T20:00:00Z", 3.0)])
    assert window_kwh(s, t("2026-07-20T19:00:00Z"), t("2026-07-20T21:00:00Z")) == pytest.approx(3.0)
    assert window_average(s, t("2026-07-20T19:00:00Z"), t("2026-07-20T21:00:00Z")).kw == pytest.approx(1.5)


# ---------------------------------------------------------------- season and payment

EVENTS = (ev("e1", "2026-07-20T19:00:00Z", "2026-07-20T21:00:00Z"),
          ev("e2", "2026-07-21T19:00:00Z", "2026-07-21T22:00:00Z"),
          ev("e3", "2026-07-22T19:00:00Z", "2026-07-22T21:00:00Z"),
          ev("e4", "2026-07-23T19:00:00Z", "2026-07-23T21:00:00Z"))


def flat(p: str, e: EventRecord, kw: float) -> TelemetryInterval:
    return TelemetryInterval(p, e.start_utc, e.end_utc, kw)


def test_season_with_one_zero_event_and_payment():
    # 4, 0 (no data), 5, 3 kW -> 12 / 4 events = 3.0 kW; 3.0 x $275 = $825.00.
    data = SettlementInput(EVENTS, (flat("p1", EVENTS[0], 4), flat("p1", EVENTS[2], 5),
                                    flat("p1", EVENTS[3], 3)))
    p = settle("connected_solutions", data).participants[0]
    assert [e.kw for e in p.events] == [4, 0, 5, 3]
    assert p.events[1].status == EventStatus.NO_DATA
    assert p.season_kw == 3.0
    assert p.payment_usd == 825.00


def test_commercial_rate():
    # 3.0 kW x $200 = $600.00.
    data = SettlementInput(EVENTS, tuple(flat("p1", e, 3) for e in EVENTS))
    p = settle("connected_solutions", data, default_rate_class=RateClass.COMMERCIAL).participants[0]
    assert p.payment_usd == 600.00
    assert p.details["rate_usd_per_kw"] == 200.0


def test_late_enrolment_counts_earlier_events_as_zero():
    # Enrolled 2026-07-22 (after e1, e2); 4 kW in every event, even before enrolment.
    # e1, e2 -> 0 (not enrolled), e3, e4 -> 4: 8 / 4 = 2.0 kW; 2.0 x 275 = $550.00.
    info = ParticipantInfo("p1", enrolled_utc=t("2026-07-22T12:00:00Z"))
    data = SettlementInput(EVENTS, tuple(flat("p1", e, 4) for e in EVENTS), (info,))
    p = settle("connected_solutions", data).participants[0]
    assert [e.status for e in p.events[:2]] == [EventStatus.NOT_ENROLLED] * 2
    assert p.season_kw == 2.0
    assert p.payment_usd == 550.00


def test_opt_out_counts_zero_in_the_season():
    # 4 kW in all 4 events, opted out of e2: 12 / 4 = 3.0 kW.
    data = SettlementInput(EVENTS, tuple(flat("p1", e, 4) for e in EVENTS),
                           opt_outs=(OptOut("p1", "e2"),))
    assert settle("connected_solutions", data).participants[0].season_kw == 3.0


def test_participant_with_no_data_at_all_gets_zero():
    info = (ParticipantInfo("p1"), ParticipantInfo("p2"))
    data = SettlementInput(EVENTS, tuple(flat("p1", e, 2) for e in EVENTS), info)
    result = settle("connected_solutions", data)
    p2 = result.participants[1]
    assert (p2.participant, p2.season_kw, p2.payment_usd) == ("p2", 0.0, 0.0)
    assert result.totals["payment_usd"] == 550.00      # 2 kW x 275 for p1 only


def test_lifetime_cap():
    # 10 kW x $275 = $2,750, but $23,500 already paid: only $1,500 left under $25,000.
    info = ParticipantInfo("p1", lifetime_paid_usd=23_500)
    data = SettlementInput(EVENTS, tuple(flat("p1", e, 10) for e in EVENTS), (info,))
    p = settle("connected_solutions", data).participants[0]
    assert p.details["uncapped_payment_usd"] == 2750.00
    assert p.payment_usd == 1500.00
    assert p.details["lifetime_cap_applied"] is True
    assert capped_payment(2750, 25_000, 25_000) == 0
    assert capped_payment(2750, 30_000, 25_000) == 0
    assert capped_payment(100, 0, 25_000) == 100


RATES = (RateEntry(date(2024, 1, 1), {RateClass.RESIDENTIAL: 275.0, RateClass.COMMERCIAL: 200.0}),
         RateEntry(date(2027, 1, 1), {RateClass.RESIDENTIAL: 300.0, RateClass.COMMERCIAL: 180.0}))


def test_rate_locked_five_years_from_installation():
    # Installed 2025-03-01 at the 2024 rates: locked until 2030-03-01.
    installed = date(2025, 3, 1)
    locked = rate_for(RATES, RateClass.RESIDENTIAL, date(2028, 6, 1), installed, 5)
    assert (locked.usd_per_kw, locked.locked_until) == (275.0, date(2030, 3, 1))
    # Season 2030 starts 2030-06-01, after the lock: the rate in force then.
    assert rate_for(RATES, RateClass.RESIDENTIAL, date(2030, 6, 1), installed, 5).usd_per_kw == 300.0
    # No new installation: the season's rate.
    assert rate_for(RATES, RateClass.COMMERCIAL, date(2028, 6, 1), None, 5).usd_per_kw == 180.0
    assert rate_for(RATES, RateClass.COMMERCIAL, date(2028, 6, 1), installed, 5).usd_per_kw == 200.0


def test_event_count_warning():
    data = SettlementInput(EVENTS, tuple(flat("p1", e, 1) for e in EVENTS))
    warnings = settle("connected_solutions", data).warnings
    assert any("at least 30" in w for w in warnings)


def test_events_of_two_years_are_refused():
    events = (EVENTS[0], ev("x", "2027-07-20T19:00:00Z", "2027-07-20T21:00:00Z"))
    with pytest.raises(ValueError, match="several years"):
        settle("connected_solutions", SettlementInput(events, ()))


def test_rate_lock_and_capacity_limit_are_reported_per_participant():
    # Installed 2024-08-15 (local): locked until 2029-08-15; 60 kW enrolled > 50 kW limit.
    info = ParticipantInfo("p1", installed_utc=t("2024-08-15T16:00:00Z"), enrolled_kw=60.0)
    data = SettlementInput(EVENTS, tuple(flat("p1", e, 2) for e in EVENTS), (info,))
    d = settle("connected_solutions", data).participants[0].details
    assert d["rate_locked_until"] == "2029-08-15"
    assert d["capacity_over_limit"] is True


# ---------------------------------------------------------------- properties

from hypothesis import given, settings, strategies as st  # noqa: E402


@settings(max_examples=60, deadline=None)
@given(kws=st.lists(st.floats(0, 50, allow_nan=False), min_size=1, max_size=12),
       cut_s=st.integers(1, 599), offset_s=st.integers(-3600, 3600))
def test_splitting_an_interval_never_changes_the_average(kws, cut_s, offset_s):
    # 10-min intervals placed anywhere around the event; cutting one in two
    # at any second must give the same time-weighted average.
    start = E1.start_utc.timestamp() + offset_s
    ivs = [TelemetryInterval("p1", datetime.fromtimestamp(start + 600 * i, timezone.utc),
                             datetime.fromtimestamp(start + 600 * (i + 1), timezone.utc), kw)
           for i, kw in enumerate(kws)]
    first = ivs[0]
    mid = datetime.fromtimestamp(first.start_utc.timestamp() + cut_s, timezone.utc)
    split = [TelemetryInterval("p1", first.start_utc, mid, first.kw),
             TelemetryInterval("p1", mid, first.end_utc, first.kw)] + ivs[1:]
    whole = event_performance(Series(ivs), E1)
    parts = event_performance(Series(split), E1)
    assert parts.kw == pytest.approx(whole.kw, abs=1e-9)
    assert parts.covered_s == pytest.approx(whole.covered_s)
    assert 0 <= whole.kw <= max(kws) + 1e-9
