"""Program 1, ConnectedSolutions: pay season kW x rate, rate locked 5 years
from a new installation, lifetime cap per account."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from vtn.settlement.context import SeasonContext, usd
from vtn.settlement.intervals import Series
from vtn.settlement.model import ParticipantInfo, ParticipantSettlement, Payment, RateClass
from vtn.settlement.params import DischargeParams, RateEntry
from vtn.settlement.performance import event_performance, season_kw

SEASON_START = (6, 1)   # the season runs June 1 - September 30


@dataclass(frozen=True)
class Rate:
    usd_per_kw: float
    locked_until: date | None    # None: the current rate, not a lock


def add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:           # Feb 29 -> Feb 28
        return day.replace(year=day.year + years, day=28)


def rate_for(rates: tuple[RateEntry, ...], rate_class: RateClass, season_start: date,
             installed: date | None, lock_years: int) -> Rate:
    """The rate of a season: the one in force at installation while the lock
    lasts (season starts before installation + lock_years), else the season's."""
    locked_until = add_years(installed, lock_years) if installed else None
    if locked_until is not None and season_start < locked_until:
        rate_date = installed
    else:
        rate_date, locked_until = season_start, None
    in_force = [r for r in rates if r.effective_from <= rate_date]
    entry = max(in_force, key=lambda r: r.effective_from) if in_force else \
        min(rates, key=lambda r: r.effective_from)
    return Rate(entry.usd_per_kw[rate_class], locked_until)


def capped_payment(raw_usd: float, paid_before_usd: float, cap_usd: float) -> float:
    """What is left under the lifetime cap, never negative."""
    return max(0.0, min(raw_usd, cap_usd - paid_before_usd))


def settle_participant(info: ParticipantInfo, series: Series | None, opted_out: set[str],
                       ctx: SeasonContext, params: DischargeParams) -> ParticipantSettlement:
    events = tuple(
        event_performance(series, ev, enrolled_utc=info.enrolled_utc,
                          opted_out=ev.event_id in opted_out)
        for ev in ctx.events)
    # Round the season figure before pricing it, so the report's season_kw x
    # rate is exactly the payment a reader can recompute.
    kw = round(season_kw(events, len(ctx.events)), 3)
    rate_class = info.rate_class or ctx.default_rate_class
    season_start = date(ctx.season, *SEASON_START)
    installed = _local_date(info.installed_utc, ctx.tz)
    rate = rate_for(params.rates, rate_class, season_start, installed, params.rate_lock_years)
    raw_usd = usd(kw * rate.usd_per_kw)
    paid_usd = usd(capped_payment(raw_usd, info.lifetime_paid_usd, params.lifetime_cap_usd))
    details = {
        "rate_class": str(rate_class),
        "rate_usd_per_kw": rate.usd_per_kw,
        "rate_locked_until": rate.locked_until.isoformat() if rate.locked_until else None,
        "uncapped_payment_usd": raw_usd,
        "lifetime_paid_before_usd": usd(info.lifetime_paid_usd),
        "lifetime_cap_applied": paid_usd < raw_usd,
        "capacity_over_limit": (info.enrolled_kw is not None
                                and info.enrolled_kw > params.max_inverter_kw),
    }
    return ParticipantSettlement(
        participant=info.participant, events=events, season_kw=kw, payment_usd=paid_usd,
        payments=(Payment("performance", paid_usd),), details=details)


def event_count_warnings(ctx: SeasonContext, params: DischargeParams) -> list[str]:
    n = len(ctx.events)
    warnings = []
    if n > params.max_events:
        warnings.append(f"{n} events called: the program allows at most {params.max_events}")
    if n < params.min_events:
        warnings.append(f"{n} events called: the regular program calls at least "
                        f"{params.min_events} (targeted commercial: at most "
                        f"{params.max_targeted_events})")
    return warnings


def _local_date(when_utc: datetime | None, tz: ZoneInfo) -> date | None:
    return when_utc.astimezone(tz).date() if when_utc else None
