"""Program 4, bring-your-own-device VPP: events per month against the cap,
full-equivalent cycles against the yearly cap, state-of-charge floor
violations, export during flex alerts at the premium, upfront capacity payment.
"""
from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone

from vtn.settlement.dates import local_date
from vtn.settlement.context import SeasonContext, usd
from vtn.settlement.intervals import Series, window_kwh
from vtn.settlement.model import (
    EventRecord, EventStatus, ParticipantInfo, ParticipantSettlement, Payment,
    TelemetryInterval)
from vtn.settlement.params import ByodParams
from vtn.settlement.performance import discharge_kw, event_performance, season_kw


def export_kw(interval: TelemetryInterval) -> float:
    """Energy exported to the grid is what the site meter sends out: net kW."""
    return max(interval.kw, 0.0)


def events_per_month(events: tuple[EventRecord, ...], ctx: SeasonContext) -> dict[str, int]:
    """Peak events called per local calendar month ('YYYY-MM')."""
    counts = Counter(ev.start_utc.astimezone(ctx.tz).strftime("%Y-%m") for ev in events)
    return dict(sorted(counts.items()))


def year_span_utc(ctx: SeasonContext) -> tuple[datetime, datetime]:
    """The local calendar year of the season, in UTC."""
    start = datetime(ctx.season, 1, 1, tzinfo=ctx.tz)
    end = datetime(ctx.season + 1, 1, 1, tzinfo=ctx.tz)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)


def full_equivalent_cycles(series: Series | None, capacity_kwh: float | None,
                           ctx: SeasonContext) -> tuple[float, float | None]:
    """(kWh discharged in the year, cycles = that / usable capacity)."""
    if series is None:
        return 0.0, (0.0 if capacity_kwh else None)
    kwh = window_kwh(series, *year_span_utc(ctx), discharge_kw)
    return kwh, (kwh / capacity_kwh if capacity_kwh else None)


def floor_violations(series: Series | None, min_soc_pct: float) -> list[datetime]:
    """Intervals that discharged while the state of charge was below the floor."""
    if series is None:
        return []
    return [iv.start_utc for iv in series.intervals
            if iv.soc_pct is not None and iv.soc_pct < min_soc_pct and discharge_kw(iv) > 0]


def flex_alert_export_kwh(series: Series | None, alerts: tuple[EventRecord, ...]) -> float:
    if series is None:
        return 0.0
    return sum((window_kwh(series, a.start_utc, a.end_utc, export_kw) for a in alerts), 0.0)


def upfront_payment(info: ParticipantInfo, ctx: SeasonContext, params: ByodParams) -> Payment | None:
    """Paid once, for the enrolled kW, in the year of enrolment."""
    if info.enrolled_utc is None or info.enrolled_kw is None:
        return None
    enrolled_day = local_date(info.enrolled_utc, ctx.tz)
    if enrolled_day.year != ctx.season:
        return None
    return Payment("upfront", usd(info.enrolled_kw * params.upfront_usd_per_kw),
                   enrolled_day.isoformat())


def settle_participant(info: ParticipantInfo, series: Series | None, opted_out: set[str],
                       ctx: SeasonContext, params: ByodParams,
                       flex_alerts: tuple[EventRecord, ...]) -> ParticipantSettlement:
    events = tuple(event_performance(series, ev, enrolled_utc=info.enrolled_utc,
                                     opted_out=ev.event_id in opted_out) for ev in ctx.events)
    kw = round(season_kw(events, len(ctx.events)), 3)
    discharged_kwh, cycles = full_equivalent_cycles(series, info.capacity_kwh, ctx)
    violations = floor_violations(series, params.min_soc_pct)
    flex_kwh = flex_alert_export_kwh(series, flex_alerts)
    payments = []
    if flex_kwh > 0:
        payments.append(Payment("flex_alert", usd(flex_kwh * params.flex_alert_premium_usd_per_kwh)))
    upfront = upfront_payment(info, ctx, params)
    if upfront is not None:
        payments.append(upfront)
    details = {
        "opt_outs": sum(1 for e in events if e.status == EventStatus.OPTED_OUT),
        "discharged_kwh": round(discharged_kwh, 3),
        "capacity_kwh": info.capacity_kwh,
        "full_equivalent_cycles": round(cycles, 3) if cycles is not None else None,
        "cycle_cap": params.cycle_cap_per_year,
        "cycles_over_cap": cycles is not None and cycles > params.cycle_cap_per_year,
        "floor_violations": len(violations),
        "floor_violation_times_utc": [t.isoformat() for t in violations],
        "flex_alert_export_kwh": round(flex_kwh, 3),
        "flex_alert_premium_usd": usd(flex_kwh * params.flex_alert_premium_usd_per_kwh),
        "upfront_capacity_usd": upfront.amount_usd if upfront else 0.0,
    }
    return ParticipantSettlement(
        participant=info.participant, events=events, season_kw=kw,
        payment_usd=usd(sum(p.amount_usd for p in payments)), payments=tuple(payments),
        details=details)
