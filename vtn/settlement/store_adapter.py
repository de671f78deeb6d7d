"""The VTN store as a settlement source.

Two layers, kept apart on purpose:
- `from_store_rows` (pure) is the contract: plain EventRecord /
  TelemetryInterval / ParticipantInfo / OptOut rows in, checked
  SettlementInput out, with the same checks as CSV input;
- `query_season` is the only code that touches the database; when the store's
  models change, only it changes.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone

from vtn.settlement import validate
from vtn.settlement.model import (
    EventRecord, OptOut, ParticipantInfo, SettlementInput, TelemetryFlag, TelemetryInterval)
from vtn.settlement.params import ProgramParams

OPT_OUT = "optOut"     # EventTarget.opt_type of an OpenADR oadrCreatedEvent opt-out


class StoreDataError(ValueError):
    pass


def from_store_rows(events: Sequence[EventRecord], telemetry: Sequence[TelemetryInterval],
                    participants: Sequence[ParticipantInfo] = (), opt_outs: Sequence[OptOut] = (),
                    *, event_data_only: bool = False,
                    flags: Sequence[TelemetryFlag] = ()) -> SettlementInput:
    """Check store rows; problems name the row index and participant.

    `telemetry` is in the order the VTN received it. A VEN's overlapping
    intervals never stop the settlement of anyone: the first received counts,
    the later ones are dropped and the participant is flagged. The store keeps
    telemetry 24x7, so for programs settled on event data only the intervals
    outside every event are dropped here, not reported.
    """
    problems: list[str] = []
    for i in validate.duplicate_ids(events):
        problems.append(f"event row {i}: event_id {events[i].event_id!r} appears twice")
    flags = list(flags)
    dropped = set()
    for a, b in validate.first_received(telemetry):
        dropped.add(b)
        later, first = telemetry[b], telemetry[a]
        flags.append(TelemetryFlag(later.participant, "overlap",
                                   f"interval {later.start_utc.isoformat()}.."
                                   f"{later.end_utc.isoformat()} overlaps the first received "
                                   f"{first.start_utc.isoformat()}..{first.end_utc.isoformat()}: "
                                   f"not counted"))
    telemetry = [iv for i, iv in enumerate(telemetry) if i not in dropped]
    if participants:
        known = {p.participant for p in participants}
        for i in validate.unknown_participants(telemetry, known):
            problems.append(f"telemetry row {i}: unknown participant {telemetry[i].participant!r}")
    if problems:
        raise StoreDataError("; ".join(problems[:20]))
    if event_data_only:
        outside = set(validate.outside_events(telemetry, events))
        telemetry = [iv for i, iv in enumerate(telemetry) if i not in outside]
    return SettlementInput(tuple(events), tuple(telemetry), tuple(participants), tuple(opt_outs),
                           tuple(flags))


def query_season(store, params: ProgramParams, season: int) -> SettlementInput:
    """Read one program's season from a `vtn.store.Store`.

    Events: the program's events starting in the local calendar year `season`,
    excluding cancelled and test events (communication tests are not
    performance events). Participants: the program's enrolled VENs (by
    ven_id). Telemetry: their kW intervals over that year (needed for
    baselines, Clean Peak and yearly cycles), sign-flipped for discharge
    programs, in the order received. Opt-outs: `optOut` answers. Revisions
    (re-sent values that differ) flag the participant: the first received
    value, which the telemetry row keeps, is the one settled.
    """
    from sqlmodel import select

    from vtn.store import Event, EventTarget, TelemetryPoint, TelemetryRevision, Ven

    tz = params.timezone
    year_start = datetime(season, 1, 1, tzinfo=tz).astimezone(timezone.utc)
    year_end = datetime(season + 1, 1, 1, tzinfo=tz).astimezone(timezone.utc)
    sign = -1.0 if params.discharge else 1.0
    with store.session() as s:
        stored_events = s.exec(select(Event).where(
            Event.program_id == params.program, Event.start_utc >= year_start,
            Event.start_utc < year_end, Event.status != "cancelled",
            Event.test_event == False).order_by(Event.start_utc)).all()  # noqa: E712
        vens = s.exec(select(Ven).where(Ven.program_id == params.program).order_by(Ven.ven_id)).all()
        ven_ids = [v.ven_id for v in vens]
        points = s.exec(select(TelemetryPoint).where(
            TelemetryPoint.ven_id.in_(ven_ids), TelemetryPoint.interval_end > year_start,
            TelemetryPoint.interval_start < year_end)
            .order_by(TelemetryPoint.received_at, TelemetryPoint.id)).all()
        revisions = s.exec(select(TelemetryRevision).where(
            TelemetryRevision.ven_id.in_(ven_ids), TelemetryRevision.interval_end > year_start,
            TelemetryRevision.interval_start < year_end)
            .order_by(TelemetryRevision.ven_id, TelemetryRevision.id)).all()
        event_ids = [e.event_id for e in stored_events]
        targets = s.exec(select(EventTarget).where(
            EventTarget.event_id.in_(event_ids), EventTarget.opt_type == OPT_OUT)).all()
    events = [EventRecord(e.event_id, e.start_utc, e.end_utc, override=_override(e))
              for e in stored_events]
    telemetry = [TelemetryInterval(p.ven_id, p.interval_start, p.interval_end, sign * p.kw + 0.0,
                                   soc_pct=p.soc_pct)
                 for p in points if p.kw is not None]       # a missing reading is missing data
    participants = [ParticipantInfo(v) for v in ven_ids]
    opt_outs = [OptOut(t.ven_id, t.event_id) for t in targets]
    flags = [TelemetryFlag(r.ven_id, "revision",
                           f"{r.quantity} of {r.interval_start.isoformat()} re-sent as {r.value} "
                           f"at {r.received_at.isoformat()}: the first received {r.first_value} "
                           f"counts") for r in revisions]
    return from_store_rows(events, telemetry, participants, opt_outs,
                           event_data_only=params.event_data_only, flags=flags)


def _override(event) -> str | None:
    """The flag of an event dispatched past the program rules: which rules, and why."""
    if not event.rule_overrides:
        return None
    rules = sorted({row["rule"] for row in json.loads(event.rule_overrides)})
    return f"{', '.join(rules)} overridden: {event.forced_reason or 'no reason given'}"
