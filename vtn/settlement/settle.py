"""Settle one program's season: inputs in, SeasonSettlement out. Pure."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from vtn.settlement import byod, discharge, managed_charging, v2x
from vtn.settlement.dates import local_date
from vtn.settlement.context import SeasonContext, usd
from vtn.settlement.intervals import Series, by_participant
from vtn.settlement.model import (
    EventKind, EventRecord, FleetEventSeries, FleetPoint, ParticipantInfo,
    ParticipantSettlement, RateClass, SeasonSettlement, SettlementInput, TelemetryFlag)
from vtn.settlement.params import ProgramParams, params_for
from vtn.settlement.performance import discharge_kw

PLOT_STEP = timedelta(minutes=5)
PLOT_PAD = timedelta(hours=1)


def season_of(events: tuple[EventRecord, ...], params: ProgramParams) -> int:
    years = {local_date(ev.start_utc, params.timezone).year for ev in events}
    if len(years) != 1:
        raise ValueError(f"events span several years ({sorted(years)}): settle one season at a time")
    return years.pop()


def participants_of(data: SettlementInput) -> list[ParticipantInfo]:
    if data.participants:
        return sorted(data.participants, key=lambda p: p.participant)
    return [ParticipantInfo(p) for p in sorted({iv.participant for iv in data.telemetry})]


def settle(program: str, data: SettlementInput, *,
           default_rate_class: RateClass = RateClass.RESIDENTIAL,
           params: ProgramParams | None = None, fleet: bool = False) -> SeasonSettlement:
    params = params or params_for(program)
    if not data.events:
        raise ValueError("no events: nothing to settle")
    all_events = tuple(sorted(data.events, key=lambda ev: ev.start_utc))
    season = season_of(all_events, params)
    # Only BYOD distinguishes flex alerts; elsewhere every row is an event called.
    if program == "byod_vpp":
        events = tuple(ev for ev in all_events if ev.kind == EventKind.PEAK)
        alerts = tuple(ev for ev in all_events if ev.kind == EventKind.FLEX_ALERT)
    else:
        events, alerts = all_events, ()
    ctx = SeasonContext(season, params.timezone, events, default_rate_class)
    series = by_participant(data.telemetry)
    opted: dict[str, set[str]] = {}
    for o in data.opt_outs:
        opted.setdefault(o.participant, set()).add(o.event_id)

    settle_one = _participant_settler(program, params, ctx, alerts)
    results = tuple(settle_one(info, series.get(info.participant), opted.get(info.participant, set()))
                    for info in participants_of(data))
    results, flag_warnings = _flagged(results, data)
    overrides = {ev.event_id: ev.override for ev in all_events if ev.override}
    if overrides:     # a CSV column only when there is something to flag
        results = tuple(replace(r, details={**r.details, "overridden_events": " ".join(
            e.event_id for e in r.events if e.event_id in overrides)}) for r in results)
    warnings = (_warnings(program, params, ctx) + flag_warnings
                + [f"event {event_id} was dispatched by override of the program rules: {why}"
                   for event_id, why in overrides.items()])
    totals = _totals(program, params, ctx, results)
    fleet_series = fleet_event_series(program, params, ctx, results, series) if fleet else ()
    return SeasonSettlement(program, season, params.timezone.key, results, totals,
                            fleet_series, tuple(warnings), overrides)


def _flagged(results: tuple[ParticipantSettlement, ...], data: SettlementInput
             ) -> tuple[tuple[ParticipantSettlement, ...], list[str]]:
    """Each participant's telemetry flags in its details (JSON); one warning per flagged one."""
    by_participant: dict[str, list[TelemetryFlag]] = {}
    for flag in data.flags:
        by_participant.setdefault(flag.participant, []).append(flag)
    flagged = tuple(replace(r, details={**r.details, "telemetry_flags": [
        f"{f.kind}: {f.detail}" for f in by_participant.get(r.participant, [])]})
        for r in results)
    warnings = [f"{participant}: {len(flags)} telemetry flag(s) "
                f"({', '.join(sorted({f.kind for f in flags}))}): the first received value counts"
                for participant, flags in sorted(by_participant.items())]
    return flagged, warnings


def _participant_settler(program: str, params: ProgramParams, ctx: SeasonContext,
                         alerts: tuple[EventRecord, ...]
                         ) -> Callable[[ParticipantInfo, Series | None, set[str]], ParticipantSettlement]:
    p = params.settlement
    if program == "connected_solutions":
        return lambda info, s, o: discharge.settle_participant(info, s, o, ctx, p)
    if program == "managed_charging":
        return lambda info, s, o: managed_charging.settle_participant(info, s, o, ctx, p)
    if program == "v2x_demo":
        return lambda info, s, o: v2x.settle_participant(info, s, o, ctx, p)
    if program == "byod_vpp":
        return lambda info, s, o: byod.settle_participant(info, s, o, ctx, p, alerts)
    raise ValueError(f"no settlement rules for program {program!r}")


def _warnings(program: str, params: ProgramParams, ctx: SeasonContext) -> list[str]:
    p = params.settlement
    if program == "connected_solutions":
        return discharge.event_count_warnings(ctx, p)
    if program == "managed_charging" and len(ctx.events) > p.max_events:
        return [f"{len(ctx.events)} events called: the program allows at most {p.max_events}"]
    if program == "byod_vpp":
        return [f"{month}: {n} events called, cap {p.max_events_per_month}"
                for month, n in byod.events_per_month(ctx.events, ctx).items()
                if n > p.max_events_per_month]
    return []


def _sum(results: tuple[ParticipantSettlement, ...], key: str) -> float:
    return sum(r.details.get(key) or 0 for r in results)


def _totals(program: str, params: ProgramParams, ctx: SeasonContext,
            results: tuple[ParticipantSettlement, ...]) -> dict:
    n = len(results)
    totals: dict = {
        "participants": n,
        "events_called": len(ctx.events),
        "fleet_season_kw": round(sum((r.season_kw for r in results), 0.0), 3),
        "mean_season_kw": round(sum(r.season_kw for r in results) / n, 3) if n else 0.0,
        "payment_usd": usd(sum(r.payment_usd for r in results)),
    }
    if program == "connected_solutions":
        totals["lifetime_cap_applied"] = sum(1 for r in results if r.details["lifetime_cap_applied"])
    elif program == "managed_charging":
        totals["opt_outs"] = int(_sum(results, "opt_outs"))
        totals["removal_eligible"] = sum(1 for r in results if r.details["removal_eligible"])
        totals["connectivity_notices"] = sum(len(r.details["connectivity_notices"]) for r in results)
        totals["unenrolled"] = sum(1 for r in results if r.details["unenrolled_utc"])
        totals["shifted_kwh"] = round(_sum(results, "shifted_kwh"), 3)
    elif program == "v2x_demo":
        for key in ("clean_peak_discharged_kwh", "clean_peak_charging_avoided_kwh", "clean_peak_kwh"):
            totals[key] = round(_sum(results, key), 3)
        totals["clean_peak_value_usd"] = usd(_sum(results, "clean_peak_value_usd"))
    elif program == "byod_vpp":
        per_month = byod.events_per_month(ctx.events, ctx)
        cap = params.settlement.max_events_per_month
        totals["events_per_month"] = per_month
        totals["max_events_per_month"] = cap
        totals["months_over_cap"] = [m for m, k in per_month.items() if k > cap]
        totals["floor_violations"] = int(_sum(results, "floor_violations"))
        totals["cycles_over_cap"] = sum(1 for r in results if r.details["cycles_over_cap"])
        totals["flex_alert_export_kwh"] = round(_sum(results, "flex_alert_export_kwh"), 3)
        totals["flex_alert_premium_usd"] = usd(_sum(results, "flex_alert_premium_usd"))
        totals["upfront_capacity_usd"] = usd(_sum(results, "upfront_capacity_usd"))
    return totals


def fleet_event_series(program: str, params: ProgramParams, ctx: SeasonContext,
                       results: tuple[ParticipantSettlement, ...],
                       series: dict[str, Series]) -> tuple[FleetEventSeries, ...]:
    """Fleet kW on a 5-minute grid from an hour before to an hour after each
    event, with the baseline the program measures against: 0 kW for discharge
    programs (no event, no discharge), the summed participants' baseline over
    the event hours for managed charging."""
    charging = program == "managed_charging"
    kw_of = managed_charging.charging_kw if charging else discharge_kw
    out = []
    for i, ev in enumerate(ctx.events):
        baseline = sum((r.events[i].baseline_kw or 0.0) for r in results) if charging else 0.0
        t0 = ev.start_utc - PLOT_PAD
        kws, covered = _binned_fleet_kw(series, t0, ev.end_utc + PLOT_PAD, kw_of)
        points = []
        for k, (kw, cov) in enumerate(zip(kws, covered)):
            t = t0 + k * PLOT_STEP
            inside = ev.start_utc <= t < ev.end_utc
            # No data from anyone around the event is a gap in the plot, not 0 kW.
            points.append(FleetPoint(t, kw if cov > 0 or inside else float("nan"),
                                     baseline if inside or not charging else float("nan")))
        out.append(FleetEventSeries(ev.event_id, ev.start_utc, ev.end_utc, tuple(points),
                                    sum(r.events[i].kw for r in results)))
    return tuple(out)


def _binned_fleet_kw(series: dict[str, Series], start_utc, end_utc, kw_of) -> tuple[list[float], list[float]]:
    """Sum of all participants' time-weighted kW per PLOT_STEP bin, and the
    seconds of data per bin; one pass over the intervals, not one look-up per bin."""
    step_s = PLOT_STEP.total_seconds()
    n = math.ceil((end_utc - start_utc).total_seconds() / step_s)
    kw_s, covered = [0.0] * n, [0.0] * n
    t0 = start_utc.timestamp()
    for s in series.values():
        for iv in s.within(start_utc, end_utc):
            a = max(iv.start_utc.timestamp(), t0) - t0
            b = min(iv.end_utc.timestamp(), t0 + n * step_s) - t0
            kw = kw_of(iv)
            for k in range(int(a // step_s), min(n, math.ceil(b / step_s))):
                share = min(b, (k + 1) * step_s) - max(a, k * step_s)
                if share > 0:
                    kw_s[k] += kw * share
                    covered[k] += share
    return [x / step_s for x in kw_s], covered


def to_json_dict(result: SeasonSettlement) -> dict:
    """The `vtn settle --format json` document."""
    return {
        "program": result.program,
        "season": result.season,
        "timezone": result.timezone,
        "participants": [_participant_json(p, result.overrides) for p in result.participants],
        "totals": result.totals,
        "warnings": list(result.warnings),
        "overridden_events": dict(result.overrides),
    }


def _participant_json(p: ParticipantSettlement, overrides: dict[str, str]) -> dict:
    events = []
    for e in p.events:
        row = {"event_id": e.event_id, "kw": round(e.kw, 3), "status": str(e.status),
               "covered_s": round(e.covered_s, 1)}
        if e.event_id in overrides:
            row["override"] = overrides[e.event_id]
        if e.baseline_kw is not None or e.actual_kw is not None:
            row["baseline_kw"] = None if e.baseline_kw is None else round(e.baseline_kw, 3)
            row["actual_kw"] = None if e.actual_kw is None else round(e.actual_kw, 3)
        events.append(row)
    return {
        "participant": p.participant,
        "events": events,
        "season_kw": p.season_kw,
        "payment_usd": p.payment_usd,
        "payments": [{"kind": x.kind, "amount_usd": x.amount_usd, "paid_in": x.paid_in}
                     for x in p.payments],
        **p.details,
    }
