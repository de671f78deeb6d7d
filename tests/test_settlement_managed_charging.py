"""Managed charging: baseline, load shifted, opt-outs, connectivity, payments.
Expected values are hand-computed in the comments."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from vtn.settlement import (
    EventRecord, EventStatus, OptOut, ParticipantInfo, SettlementInput, TelemetryInterval, settle)
from vtn.settlement.dates import local_window_utc
from vtn.settlement.context import SeasonContext
from vtn.settlement.intervals import Series
from vtn.settlement.managed_charging import baseline_days, baseline_kw
from vtn.settlement.params import ManagedChargingParams

NY = ZoneInfo("America/New_York")
PARAMS = ManagedChargingParams()


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def event_on(day: date, event_id: str | None = None) -> EventRecord:
    start, end = local_window_utc(day, time(13), time(21), NY)     # 13:00-21:00 local, 8 h
    return EventRecord(event_id or f"e{day.isoformat()}", start, end)


def charge(day: date, start_h: int, end_h: int, kw: float, p: str = "p1") -> TelemetryInterval:
    start, end = local_window_utc(day, time(start_h), time(end_h), NY)
    return TelemetryInterval(p, start, end, kw)


def days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def test_baseline_uses_ten_recent_non_event_non_holiday_weekdays():
    # Event Wed 2026-07-15; another event Wed 2026-07-08.
    # Going back: Jul 14, 13, 10, 9, (8 event), 7, 6, (4-5 weekend), (3 = observed July 4th),
    # 2, 1, Jun 30, 29 -> 10 days. Jun 26 would be the 11th.
    target, other = event_on(date(2026, 7, 15)), event_on(date(2026, 7, 8))
    chosen = [date(2026, 7, d) for d in (14, 13, 10, 9, 7, 6, 2, 1)] + [date(2026, 6, 30), date(2026, 6, 29)]
    # 7 kW for 2 h (17:00-19:00) on chosen days; 100 kW on every day that must be ignored.
    telemetry = [charge(d, 17, 19, 7.0 if d in chosen else 100.0)
                 for d in days(date(2026, 6, 20), date(2026, 7, 14))]
    series = Series(telemetry)
    ctx = SeasonContext(2026, NY, (other, target))
    assert baseline_days(target, ctx, series, PARAMS) == chosen
    # 7 kW x 2 h = 14 kWh over the 8 h window = 1.75 kW on each chosen day.
    base, _ = baseline_kw(target, ctx, series, PARAMS)
    assert base == pytest.approx(1.75)


def test_baseline_skips_days_without_data():
    # Only 3 weekdays with data before the event: baseline over those 3.
    # 2, 4, 6 kW over one hour each -> 0.25, 0.5, 0.75 kW over 8 h -> mean 0.5 kW.
    target = event_on(date(2026, 7, 15))
    series = Series([charge(date(2026, 7, 14), 14, 15, 2.0), charge(date(2026, 7, 13), 14, 15, 4.0),
                     charge(date(2026, 7, 10), 14, 15, 6.0)])
    base, chosen = baseline_kw(target, SeasonContext(2026, NY, (target,)), series, PARAMS)
    assert chosen == [date(2026, 7, 14), date(2026, 7, 13), date(2026, 7, 10)]
    assert base == pytest.approx(0.5)


def test_baseline_same_local_hours_across_dst():
    # Event Mon 2026-03-16 (EDT). Baseline days: Mar 13, 12, 11, 10, 9 (EDT) and
    # Mar 6, 5, 4, 3, 2 (EST). 8 kW at 20:00-21:00 local every day -> 1.0 kW each day.
    # A fixed UTC offset would miss the EST days' last hour and give 0.5 kW.
    target = event_on(date(2026, 3, 16))
    series = Series([charge(d, 20, 21, 8.0) for d in days(date(2026, 2, 20), date(2026, 3, 15))])
    base, chosen = baseline_kw(target, SeasonContext(2026, NY, (target,)), series, PARAMS)
    assert len(chosen) == 10 and chosen[-1] == date(2026, 3, 2)
    assert base == pytest.approx(1.0)


def season_with(event_days: list[date], telemetry: list[TelemetryInterval], **kw) -> SettlementInput:
    return SettlementInput(tuple(event_on(d) for d in event_days), tuple(telemetry), **kw)


def test_load_shifted_per_event():
    # Baseline days charge 8 kW 17:00-19:00 (16 kWh / 8 h = 2.0 kW).
    # Event day: charges 2 kW 13:00-14:00 then stops (2 kWh / 8 h = 0.25 kW) and
    # charges after the event (21:00-23:00, outside the window).
    # Shifted = 2.0 - 0.25 = 1.75 kW; 1.75 kW x 8 h = 14 kWh.
    event_day = date(2026, 7, 15)
    telemetry = [charge(d, 17, 19, 8.0) for d in days(date(2026, 6, 25), date(2026, 7, 14))]
    telemetry += [charge(event_day, 13, 14, 2.0), charge(event_day, 14, 21, 0.0),
                  charge(event_day, 21, 23, 8.0)]
    p = settle("managed_charging", season_with([event_day], telemetry)).participants[0]
    e = p.events[0]
    assert (e.baseline_kw, e.actual_kw, e.kw) == pytest.approx((2.0, 0.25, 1.75))
    assert p.details["shifted_kwh"] == pytest.approx(14.0)


def opt_out_season(n_opt_outs: int):
    # 14 weekday events in July 2026 (avoiding the observed July 3rd), data in every event.
    event_days = [d for d in days(date(2026, 7, 6), date(2026, 7, 31)) if d.weekday() < 5][:14]
    telemetry = [charge(d, 13, 21, 0.0) for d in event_days]
    opt_outs = tuple(OptOut("p1", f"e{d.isoformat()}") for d in event_days[:n_opt_outs])
    return settle("managed_charging", season_with(event_days, telemetry, opt_outs=opt_outs)).participants[0]


def test_twelve_opt_outs_keep_the_annual_payment():
    p = opt_out_season(12)
    assert p.details["opt_outs"] == 12
    assert p.details["removal_eligible"] is False
    assert [x.kind for x in p.payments] == ["annual"] and p.payment_usd == 50.0


def test_thirteen_opt_outs_lose_the_season_payment():
    p = opt_out_season(13)
    assert p.details["opt_outs"] == 13
    assert p.details["removal_eligible"] is True
    assert p.payment_usd == 0.0
    assert sum(1 for e in p.events if e.status == EventStatus.OPTED_OUT) == 13


EVENT_DAYS = [date(2026, 7, d) for d in (6, 7, 8, 9, 10, 13)]


def test_three_offline_events_send_no_notice():
    # Online e1, offline e2-e4 (3 in a row), online e5, e6.
    online = [EVENT_DAYS[i] for i in (0, 4, 5)]
    p = settle("managed_charging", season_with(EVENT_DAYS, [charge(d, 13, 21, 0.0) for d in online])).participants[0]
    assert p.details["longest_offline_streak"] == 3
    assert p.details["connectivity_notices"] == []


def test_four_offline_events_notice_then_reconnect():
    # Online e1, offline e2-e5 (4 > 3): notice at the end of e5 (Fri Jul 10 21:00 EDT
    # = Jul 11 01:00 UTC); data again on Jul 13 (within 7 days): still enrolled.
    online = [EVENT_DAYS[0], EVENT_DAYS[5]]
    p = settle("managed_charging", season_with(EVENT_DAYS, [charge(d, 13, 21, 0.0) for d in online])).participants[0]
    notices = p.details["connectivity_notices"]
    assert notices == [{"notice_utc": "2026-07-11T01:00:00+00:00",
                        "reconnect_by_utc": "2026-07-18T01:00:00+00:00", "reconnected": True}]
    assert p.details["unenrolled_utc"] is None
    assert p.payment_usd == 50.0


def test_four_offline_events_without_reconnect_unenrol_and_lose_annual_payment():
    p = settle("managed_charging", season_with(EVENT_DAYS, [charge(EVENT_DAYS[0], 13, 21, 0.0)])).participants[0]
    assert p.details["longest_offline_streak"] == 5
    assert p.details["unenrolled_utc"] == "2026-07-18T01:00:00+00:00"
    assert p.payment_usd == 0.0


def test_enrolment_and_annual_payments_with_dates():
    # Enrolled 2027-04-10 -> first season 2027: $50 on the last business day of
    # May 2027 (May 31 is Memorial Day -> Fri May 28) and $50 in December 2027.
    info = ParticipantInfo("p1", enrolled_utc=t("2027-04-10T15:00:00Z"))
    data = SettlementInput((event_on(date(2027, 7, 14)),), (charge(date(2027, 7, 14), 13, 21, 0.0),), (info,))
    p = settle("managed_charging", data).participants[0]
    assert [(x.kind, x.amount_usd, x.paid_in) for x in p.payments] == [
        ("enrolment", 50.0, "2027-05-28"), ("annual", 50.0, "2027-12")]
    assert p.payment_usd == 100.0
    # Enrolled in an earlier season: only the annual payment.
    info = ParticipantInfo("p1", enrolled_utc=t("2026-04-10T15:00:00Z"))
    p = settle("managed_charging", SettlementInput(data.events, data.telemetry, (info,))).participants[0]
    assert [x.kind for x in p.payments] == ["annual"]


def test_opt_outs_count_even_without_data_and_offline_ignores_opt_outs():
    # No telemetry at all; opted out of e2 and e3. Opt-outs: 2. Offline for all
    # 6 events (opting out by e-mail does not make the device online): notice
    # after the 4th event (Jul 9 21:00 EDT = Jul 10 01:00 UTC), no data -> unenrolled.
    info = ParticipantInfo("p1")
    data = SettlementInput(tuple(event_on(d) for d in EVENT_DAYS), (), (info,),
                           (OptOut("p1", f"e{EVENT_DAYS[1].isoformat()}"),
                            OptOut("p1", f"e{EVENT_DAYS[2].isoformat()}")))
    p = settle("managed_charging", data).participants[0]
    assert p.details["opt_outs"] == 2
    assert p.details["offline_events"] == 6
    assert p.details["connectivity_notices"][0]["notice_utc"] == "2026-07-10T01:00:00+00:00"
    assert p.details["unenrolled_utc"] == "2026-07-17T01:00:00+00:00"
