"""After the replay: each program settled over the window (from the VTN's telemetry
and, for the check, from device truth), and the short report."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from flexadr.replay import FLEX_ALERT, ReplayResult
from flexadr.replay_scenario import NEW_YORK
from schedules import sources
from schedules.planner import EventKind
from vtn.settlement import settle
from vtn.settlement.model import EventKind as SettledKind
from vtn.settlement.model import (EventRecord, OptOut, ParticipantInfo, SeasonSettlement,
                                  TelemetryInterval)
from vtn.settlement.intervals import Series, window_average
from vtn.settlement.params import params_for
from vtn.settlement.store_adapter import OPT_OUT, from_store_rows
from vtn.store import CANCELLED, Event

SETTLED_KINDS = {EventKind.DISPATCH.value: SettledKind.PEAK, FLEX_ALERT: SettledKind.FLEX_ALERT}


def settled_events(result: ReplayResult, program_id: str) -> list[Event]:
    """The events settlement counts: called and not withdrawn, no test, no standing window."""
    return [e for e in result.store.events(program_id=program_id)
            if e.status != CANCELLED and result.kinds.get(e.event_id) in SETTLED_KINDS]


def intervals(result: ReplayResult, ven_id: str, truth: bool = False,
              start: datetime | None = None, end: datetime | None = None) -> list[TelemetryInterval]:
    """The VEN's telemetry as the VTN stored it (wall time, kW into the device), all of it
    or what overlaps [start, end); truth=True puts what the device did over each of those
    intervals in place of what was reported, so gaps stay gaps."""
    device = result.devices[result.store.ven(ven_id).ven_name]
    return [TelemetryInterval(ven_id, p.interval_start, p.interval_end,
                              device.mean_kw(p.interval_start, p.interval_end) if truth else p.kw)
            for p in result.store.telemetry(ven_id, start, end) if p.kw is not None]


def settle_program(result: ReplayResult, program_id: str, truth: bool = False) -> SeasonSettlement:
    """`vtn settle` over the window, in history time, from the VTN's telemetry (or from
    device truth over the same intervals)."""
    params = params_for(program_id)
    t = result.timeline
    sign = -1.0 if params.discharge else 1.0
    events = [EventRecord(e.event_id, t.to_history(e.start_utc), t.to_history(e.end_utc),
                          SETTLED_KINDS[result.kinds[e.event_id]])
              for e in settled_events(result, program_id)]
    telemetry, participants, opt_outs = [], [], []
    for ven in result.store.vens(program_id):
        telemetry += [replace(iv, start_utc=t.to_history(iv.start_utc),
                              end_utc=t.to_history(iv.end_utc), kw=sign * iv.kw + 0.0)
                      for iv in intervals(result, ven.ven_id, truth)]
        spec = result.devices[ven.ven_name].spec
        participants.append(ParticipantInfo(ven.ven_id, capacity_kwh=spec.capacity_kwh,
                                            enrolled_kw=spec.max_discharge_kw or None))
    for event in events:
        opt_outs += [OptOut(target.ven_id, event.event_id)
                     for target in result.store.targets(event.event_id)
                     if target.opt_type == OPT_OUT]
    data = from_store_rows(events, telemetry, participants, opt_outs,
                           event_data_only=params.event_data_only)
    return settle(program_id, data)


@dataclass(frozen=True)
class VenEvent:
    """One VEN in one event: full-event average kW in the program's sense (discharge
    programs: out of the device), missing data as 0, reported and device truth."""
    ven_id: str
    event_id: str
    opt: str
    reported_kw: float
    device_kw: float             # over the intervals reported (gaps count 0 on both sides)
    device_event_kw: float       # over the whole event: what the device really did
    coverage: float              # share of the event with telemetry


def ven_rows(result: ReplayResult, program_id: str) -> list[VenEvent]:
    sign = -1.0 if params_for(program_id).discharge else 1.0
    rows = []
    for event in settled_events(result, program_id):
        for target in result.store.targets(event.event_id):
            span = event.start_utc, event.end_utc
            reported = window_average(Series(intervals(result, target.ven_id, False, *span)),
                                      *span)
            truth = window_average(Series(intervals(result, target.ven_id, True, *span)), *span)
            device = result.devices[target.ven_id]
            whole = device.mean_kw(event.start_utc, event.end_utc)
            rows.append(VenEvent(target.ven_id, event.event_id, target.opt_type or "none",
                                 sign * reported.kw + 0.0, sign * truth.kw + 0.0,
                                 sign * whole + 0.0,
                                 reported.covered_s / (event.end_utc - event.start_utc).total_seconds()))
    return rows


@dataclass(frozen=True)
class AnnualPeak:
    hour_start_utc: datetime
    mw: float
    covered_by: str | None       # event_id of the ConnectedSolutions event over that hour


def annual_peak(result: ReplayResult, load_csv) -> AnnualPeak:
    """The year's highest hourly load and whether a ConnectedSolutions event spanned it."""
    load = sources.read_isone_csv(load_csv).load
    year = result.options.first_day.year
    best = None
    for t_s, mw in zip(load.t, load.mw):
        start = datetime.fromtimestamp(int(t_s), tz=NEW_YORK)
        if start.year == year and (best is None or mw > best[1]):
            best = (start, float(mw))
    start = best[0].astimezone(result.timeline.history_start.tzinfo)
    covering = None
    for e in settled_events(result, "connected_solutions"):
        if result.timeline.to_history(e.start_utc) <= start and \
                start + timedelta(hours=1) <= result.timeline.to_history(e.end_utc):
            covering = e.event_id
    return AnnualPeak(start, best[1], covering)


def report(result: ReplayResult, settlements: dict[str, SeasonSettlement], peak: AnnualPeak) -> str:
    header = (f"{'program':<20} {'events':>6} {'withdrawn':>9} {'standing':>8} {'VENs':>5} "
              f"{'opt-outs':>8} {'fleet kW':>9} {'device kW':>9} {'data %':>6} {'payments $':>11}")
    lines = [header, "-" * len(header)]
    for pid in result.programs:
        events = result.store.events(program_id=pid)
        kinds = [result.kinds.get(e.event_id) for e in events]
        called = sum(1 for e, k in zip(events, kinds) if k in SETTLED_KINDS and e.status != CANCELLED)
        withdrawn = sum(1 for e, k in zip(events, kinds) if k != EventKind.STANDING.value
                        and e.status == CANCELLED)
        standing = sum(1 for k in kinds if k == EventKind.STANDING.value)
        rows = ven_rows(result, pid)
        per_event = max(1, called)
        reported = sum(r.reported_kw for r in rows) / per_event
        device = sum(r.device_event_kw for r in rows) / per_event
        opted = sum(1 for r in rows if r.opt == "optOut")
        coverage = 100 * sum(r.coverage for r in rows) / len(rows) if rows else 0.0
        paid = settlements[pid].totals["payment_usd"] if pid in settlements else 0.0
        lines.append(f"{pid:<20} {called:>6} {withdrawn:>9} {standing:>8} "
                     f"{len(result.store.vens(pid)):>5} {opted:>8} {reported:>9.1f} "
                     f"{device:>9.1f} {coverage:>6.1f} {paid:>11.2f}")
    local = peak.hour_start_utc.astimezone(NEW_YORK)
    lines.append("-" * len(header))
    lines.append(f"annual peak {local.year}: {local:%Y-%m-%d} hour starting {local:%H:%M} "
                 f"{local.tzname()}, {peak.mw:,.0f} MW: "
                 + ("covered by a ConnectedSolutions event" if peak.covered_by else "NOT covered"))
    lines.append(f"storm: {result.storm.event} {result.storm.onset_utc.astimezone(NEW_YORK):%m-%d %H:%M}"
                 f"-{result.storm.end_utc.astimezone(NEW_YORK):%H:%M}; emergency "
                 f"{result.emergency.type} {result.emergency.start.astimezone(NEW_YORK):%m-%d %H:%M}"
                 f"-{result.emergency.end.astimezone(NEW_YORK):%H:%M} (BYOD flex alert); "
                 f"silent device: {result.silent}; notices mailed: {len(result.mails)}")
    return "\n".join(lines)
