"""Program 2, EV managed charging: load shifted per event against a baseline,
opt-outs with the removal threshold, the connectivity rule, and the fixed
enrolment / annual payments.

Baseline method (docs/settlement.md): for an event on local day D, the
participant's average charging kW over the SAME local clock hours on the 10
most recent weekdays before D that are neither holidays nor event days and on
which the device reported data (a day with no data at all is an offline day,
not a day without charging). Load shifted = baseline kW - actual kW over the
full event, missing data counting 0 kW.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from vtn.settlement.dates import is_holiday, last_business_day, local_date, local_window_utc
from vtn.settlement.context import SeasonContext, usd
from vtn.settlement.intervals import Series, window_average
from vtn.settlement.model import (
    EventPerformance, EventRecord, EventStatus, ParticipantInfo, ParticipantSettlement,
    Payment, TelemetryInterval)
from vtn.settlement.params import ManagedChargingParams
from vtn.settlement.performance import season_kw

SEASON_END = (9, 30)


def charging_kw(interval: TelemetryInterval) -> float:
    # Managed charging is V1G: a negative reading is not charging load.
    return max(interval.kw, 0.0)


def baseline_days(event: EventRecord, ctx: SeasonContext, series: Series,
                  params: ManagedChargingParams) -> list[date]:
    """The comparable days of an event, most recent first (see module doc)."""
    event_day = local_date(event.start_utc, ctx.tz)
    event_days = {local_date(ev.start_utc, ctx.tz) for ev in ctx.events}
    start_t = event.start_utc.astimezone(ctx.tz).time()
    end_t = event.end_utc.astimezone(ctx.tz).time()
    chosen: list[date] = []
    for back in range(1, params.baseline_lookback_days + 1):
        day = event_day - timedelta(days=back)
        if day.weekday() >= 5 or is_holiday(day) or day in event_days:
            continue
        start_utc, end_utc = local_window_utc(day, start_t, end_t, ctx.tz)
        if any(True for _ in series.within(start_utc, end_utc)):
            chosen.append(day)
            if len(chosen) == params.baseline_days:
                break
    return chosen


def baseline_kw(event: EventRecord, ctx: SeasonContext, series: Series,
                params: ManagedChargingParams) -> tuple[float | None, list[date]]:
    days = baseline_days(event, ctx, series, params)
    if not days:
        return None, days
    start_t = event.start_utc.astimezone(ctx.tz).time()
    end_t = event.end_utc.astimezone(ctx.tz).time()
    kws = [window_average(series, *local_window_utc(d, start_t, end_t, ctx.tz), charging_kw).kw
           for d in days]
    return sum(kws) / len(kws), days


def shifted_event(series: Series | None, event: EventRecord, ctx: SeasonContext,
                  params: ManagedChargingParams, *, enrolled_utc: datetime | None,
                  opted_out: bool) -> EventPerformance:
    if enrolled_utc is not None and event.start_utc < enrolled_utc:
        return EventPerformance(event.event_id, 0.0, EventStatus.NOT_ENROLLED)
    if series is None:
        status = EventStatus.OPTED_OUT if opted_out else EventStatus.NO_DATA
        return EventPerformance(event.event_id, 0.0, status)
    actual = window_average(series, event.start_utc, event.end_utc, charging_kw)
    base, _ = baseline_kw(event, ctx, series, params)
    if opted_out:
        status = EventStatus.OPTED_OUT
    elif actual.covered_s == 0:
        status = EventStatus.NO_DATA
    else:
        status = EventStatus.FULL_DATA if actual.complete else EventStatus.PARTIAL_DATA
    # No shift is credited without a baseline, for an opt-out, or while offline.
    credited = status in (EventStatus.FULL_DATA, EventStatus.PARTIAL_DATA) and base is not None
    kw = base - actual.kw if credited else 0.0
    return EventPerformance(event.event_id, kw, status, covered_s=actual.covered_s,
                            baseline_kw=base, actual_kw=actual.kw)


@dataclass(frozen=True)
class ConnectivityNotice:
    notice_utc: datetime          # end of the event that made the streak exceed the limit
    reconnect_by_utc: datetime
    reconnected: bool


def connectivity(performances: list[EventPerformance], events: tuple[EventRecord, ...],
                 series: Series | None, params: ManagedChargingParams
                 ) -> tuple[list[ConnectivityNotice], datetime | None, int]:
    """Notices sent, the unenrolment time (if any) and the longest offline streak.

    Offline for an event = no telemetry at all during it, whether or not the
    participant opted out (opt-outs come by e-mail/text, not from the device).
    The notice goes out
    once the device has been offline for MORE than `offline_events_notify`
    consecutive events; it is unenrolled if no telemetry arrives within
    `reconnect_days` of the notice.
    """
    notices: list[ConnectivityNotice] = []
    unenrolled_utc: datetime | None = None
    streak = longest = 0
    for perf, event in zip(performances, events):
        if perf.status == EventStatus.NOT_ENROLLED:
            continue
        if perf.covered_s > 0:
            streak = 0
            continue
        streak += 1
        longest = max(longest, streak)
        if streak == params.offline_events_notify + 1 and unenrolled_utc is None:
            deadline = event.end_utc + timedelta(days=params.reconnect_days)
            back = series is not None and any(True for _ in series.within(event.end_utc, deadline))
            notices.append(ConnectivityNotice(event.end_utc, deadline, back))
            if not back:
                unenrolled_utc = deadline
    return notices, unenrolled_utc, longest


def enrolment_payment(info: ParticipantInfo, ctx: SeasonContext,
                      params: ManagedChargingParams) -> Payment | None:
    """$50 for the participant's first season, paid the last business day of
    May before it. First season = the first whose end follows enrolment; a
    participant enrolling after that May date is paid on enrolment."""
    if info.enrolled_utc is None:
        return None   # enrolled in an earlier season: nothing this season
    enrolled_day = local_date(info.enrolled_utc, ctx.tz)
    first_season = enrolled_day.year + (enrolled_day > date(enrolled_day.year, *SEASON_END))
    if first_season != ctx.season:
        return None
    may_day = last_business_day(ctx.season, 5)
    return Payment("enrolment", params.enrolment_payment_usd,
                   max(may_day, enrolled_day).isoformat())


def settle_participant(info: ParticipantInfo, series: Series | None, opted_out: set[str],
                       ctx: SeasonContext, params: ManagedChargingParams) -> ParticipantSettlement:
    events = [shifted_event(series, ev, ctx, params, enrolled_utc=info.enrolled_utc,
                            opted_out=ev.event_id in opted_out) for ev in ctx.events]
    opt_outs = sum(1 for e in events if e.status == EventStatus.OPTED_OUT)
    removal = opt_outs > params.opt_out_removal_threshold
    notices, unenrolled_utc, longest_offline = connectivity(events, ctx.events, series, params)
    payments = []
    enrol = enrolment_payment(info, ctx, params)
    if enrol is not None:
        payments.append(enrol)
    december = datetime(ctx.season, params.annual_payment_month, 1, tzinfo=ctx.tz)
    still_enrolled = unenrolled_utc is None or unenrolled_utc >= december.astimezone(timezone.utc)
    # More than the threshold of opt-outs forfeits the season's (annual) payment.
    if still_enrolled and not removal:
        payments.append(Payment("annual", params.annual_payment_usd,
                                f"{ctx.season}-{params.annual_payment_month:02d}"))
    kw = season_kw(events, len(ctx.events))
    shifted_kwh = sum(e.kw * ev.duration_s / 3600 for e, ev in zip(events, ctx.events))
    details = {
        "opt_outs": opt_outs,
        "opt_out_removal_threshold": params.opt_out_removal_threshold,
        "removal_eligible": removal,
        "offline_events": sum(1 for e in events
                              if e.status != EventStatus.NOT_ENROLLED and e.covered_s == 0),
        "longest_offline_streak": longest_offline,
        "connectivity_notices": [
            {"notice_utc": n.notice_utc.isoformat(), "reconnect_by_utc": n.reconnect_by_utc.isoformat(),
             "reconnected": n.reconnected} for n in notices],
        "unenrolled_utc": unenrolled_utc.isoformat() if unenrolled_utc else None,
        "shifted_kwh": round(shifted_kwh, 3),
        "baseline_method": f"{params.baseline_days} most recent non-event non-holiday weekdays, same local hours",
    }
    return ParticipantSettlement(
        participant=info.participant, events=tuple(events), season_kw=round(kw, 3),
        payment_usd=usd(sum(p.amount_usd for p in payments)), payments=tuple(payments),
        details=details)
