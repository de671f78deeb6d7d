"""Program 3, V2X demonstration: event discharge as in program 1, plug-in
behaviour, and Clean Peak energy valued at the certificate price.

Clean Peak energy of a participant = kWh discharged inside the daily Clean
Peak windows (every day with data) + kWh of charging avoided inside the
windows on event days. Charging avoided on an event day = max(0, baseline -
actual charging kWh in that day's window), baseline = mean charging kWh in the
window over the `baseline_days` most recent earlier non-event days with data.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from vtn.settlement.dates import local_date, local_window_utc
from vtn.settlement.context import SeasonContext, usd
from vtn.settlement.intervals import Series, window_kwh
from vtn.settlement.model import (
    EventPerformance, EventStatus, ParticipantInfo, ParticipantSettlement, Payment,
    TelemetryInterval)
from vtn.settlement.params import CleanPeakWindow, V2XParams
from vtn.settlement.performance import discharge_kw, event_performance, season_kw


def charging_kw(interval: TelemetryInterval) -> float:
    """Charging load: the negative side of the meter, as a positive kW."""
    kw = interval.battery_kw if interval.battery_kw is not None else interval.kw
    return max(-kw, 0.0)


def clean_peak_window(day: date, windows: tuple[CleanPeakWindow, ...]) -> CleanPeakWindow:
    md = (day.month, day.day)
    for w in windows:
        wraps = w.first > w.last      # winter: Dec 1 - Feb 29
        inside = (md >= w.first or md <= w.last) if wraps else (w.first <= md <= w.last)
        if inside:
            return w
    raise ValueError(f"no Clean Peak window covers {day.isoformat()}")


def clean_peak_span_utc(day: date, ctx: SeasonContext, params: V2XParams) -> tuple[datetime, datetime]:
    w = clean_peak_window(day, params.clean_peak_windows)
    return local_window_utc(day, w.start, w.end, ctx.tz)


def days_of(series: Series, ctx: SeasonContext) -> list[date]:
    """Every local date the participant's data touches."""
    if not len(series):
        return []
    first = local_date(series.intervals[0].start_utc, ctx.tz)
    last = local_date(series.intervals[-1].end_utc, ctx.tz)
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


@dataclass(frozen=True)
class CleanPeak:
    discharged_kwh: float
    charging_avoided_kwh: float

    @property
    def total_kwh(self) -> float:
        return self.discharged_kwh + self.charging_avoided_kwh


def clean_peak(series: Series, ctx: SeasonContext, params: V2XParams) -> CleanPeak:
    days = days_of(series, ctx)
    event_days = {local_date(ev.start_utc, ctx.tz) for ev in ctx.events}
    discharged = 0.0
    charged: dict[date, float] = {}     # charging kWh in the window, days with data only
    for day in days:
        span = clean_peak_span_utc(day, ctx, params)
        discharged += window_kwh(series, *span, discharge_kw)
        if any(True for _ in series.within(*span)):
            charged[day] = window_kwh(series, *span, charging_kw)
    avoided = 0.0
    for day in sorted(event_days & charged.keys()):
        prior = [d for d in sorted(charged, reverse=True)
                 if d < day and d not in event_days
                 and (day - d).days <= params.baseline_lookback_days][:params.baseline_days]
        if prior:
            baseline = sum(charged[d] for d in prior) / len(prior)
            avoided += max(0.0, baseline - charged[day])
    return CleanPeak(discharged, avoided)


@dataclass(frozen=True)
class PlugStats:
    plug_ins_utc: tuple[datetime, ...]
    unplugs_utc: tuple[datetime, ...]
    events_plugged_in: int        # plugged in for the whole event
    events_eligible: int          # events after enrolment


def plug_stats(series: Series | None, ctx: SeasonContext, info: ParticipantInfo) -> PlugStats | None:
    """Plug-in/unplug times from changes in `plugged_in` between consecutive
    readings; None when the data carry no plug status."""
    if series is None:
        return None
    known = [iv for iv in series.intervals if iv.plugged_in is not None]
    if not known:
        return None
    plug_ins, unplugs = [], []
    for prev, cur in zip(known, known[1:]):
        if cur.plugged_in and not prev.plugged_in:
            plug_ins.append(cur.start_utc)
        elif prev.plugged_in and not cur.plugged_in:
            unplugs.append(cur.start_utc)
    eligible = [ev for ev in ctx.events
                if info.enrolled_utc is None or ev.start_utc >= info.enrolled_utc]
    plugged = 0
    for ev in eligible:
        ivs = list(series.within(ev.start_utc, ev.end_utc))
        covered = sum(min(iv.end_utc, ev.end_utc).timestamp() - max(iv.start_utc, ev.start_utc).timestamp()
                      for iv in ivs)
        if ivs and covered >= ev.duration_s and all(iv.plugged_in for iv in ivs):
            plugged += 1
    return PlugStats(tuple(plug_ins), tuple(unplugs), plugged, len(eligible))


def _median_local_time(times: tuple[datetime, ...], ctx: SeasonContext) -> str | None:
    if not times:
        return None
    minutes = [t.astimezone(ctx.tz).hour * 60 + t.astimezone(ctx.tz).minute for t in times]
    m = int(statistics.median_low(minutes))
    return f"{m // 60:02d}:{m % 60:02d}"


def settle_participant(info: ParticipantInfo, series: Series | None, opted_out: set[str],
                       ctx: SeasonContext, params: V2XParams) -> ParticipantSettlement:
    events: list[EventPerformance] = [
        event_performance(series, ev, enrolled_utc=info.enrolled_utc,
                          opted_out=ev.event_id in opted_out) for ev in ctx.events]
    kw = round(season_kw(events, len(ctx.events)), 3)
    cp = clean_peak(series, ctx, params) if series is not None else CleanPeak(0.0, 0.0)
    value = usd(cp.total_kwh / 1000.0 * params.cpec_usd_per_mwh)
    plugs = plug_stats(series, ctx, info)
    details = {
        "opt_outs": sum(1 for e in events if e.status == EventStatus.OPTED_OUT),
        "clean_peak_discharged_kwh": round(cp.discharged_kwh, 3),
        "clean_peak_charging_avoided_kwh": round(cp.charging_avoided_kwh, 3),
        "clean_peak_kwh": round(cp.total_kwh, 3),
        "cpec_usd_per_mwh": params.cpec_usd_per_mwh,
        "clean_peak_value_usd": value,
        "plug_ins": len(plugs.plug_ins_utc) if plugs else None,
        "unplugs": len(plugs.unplugs_utc) if plugs else None,
        "median_plug_in_local": _median_local_time(plugs.plug_ins_utc, ctx) if plugs else None,
        "median_unplug_local": _median_local_time(plugs.unplugs_utc, ctx) if plugs else None,
        "events_plugged_in": plugs.events_plugged_in if plugs else None,
        "events_plugged_in_share": (round(plugs.events_plugged_in / plugs.events_eligible, 4)
                                    if plugs and plugs.events_eligible else None),
        "plug_in_times_utc": [t.isoformat() for t in plugs.plug_ins_utc] if plugs else [],
        "unplug_times_utc": [t.isoformat() for t in plugs.unplugs_utc] if plugs else [],
    }
    return ParticipantSettlement(
        participant=info.participant, events=tuple(events), season_kw=kw, payment_usd=value,
        payments=(Payment("clean_peak", value),), details=details)
