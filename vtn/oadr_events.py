"""Store rows -> openleadr objects for the messages the VTN sends (pure)."""
from __future__ import annotations

from datetime import datetime, timedelta

from openleadr import enums, objects

from vtn import event_intervals
from vtn.store import CANCELLED, Event, ReportRequest

# OpenADR 2.0b event status by position of `now` against the event; "near"
# starts when the VEN should be getting ready (the ramp-up of the spec).
NEAR_WINDOW_S = 60


def status_at(event: Event, now: datetime) -> str:
    """The status an event has at `now`: cancelled is sticky, the rest follow the clock."""
    if event.status == CANCELLED:
        return enums.EVENT_STATUS.CANCELLED
    if now >= event.end_utc:
        return enums.EVENT_STATUS.COMPLETED
    if now >= event.start_utc:
        return enums.EVENT_STATUS.ACTIVE
    if (event.start_utc - now).total_seconds() <= NEAR_WINDOW_S:
        return enums.EVENT_STATUS.NEAR
    return enums.EVENT_STATUS.FAR


event_status = status_at   # the walking skeleton's name


def in_profile_order(events: list[objects.Event]) -> list[objects.Event]:
    """The 2.0b order for oadrDistributeEvent: active events first, then by priority
    (1 is highest; 0 or none is lowest), then by start. Statuses are taken as given."""
    def key(event: objects.Event):
        priority = event.event_descriptor.priority or float("inf")
        active = event.event_descriptor.event_status == enums.EVENT_STATUS.ACTIVE
        return (not active, priority, event.active_period.dtstart)
    return sorted(events, key=key)


# openleadr's default itemBase says 50 Hz / 230 V; every program here is on New England's
# 60 Hz grid with 240 V split-phase residential service.
GRID_POWER = objects.PowerAttributes(hertz=60, voltage=240, ac=True)


def _measurement(event: Event) -> objects.Measurement | None:
    if event.signal_unit != "kW":
        return None
    power = enums.MEASUREMENTS.REAL_POWER
    return objects.Measurement(name=power.name, description=power.description, unit=power.unit,
                               scale="k", power_attributes=GRID_POWER)


def _intervals(event: Event) -> list[objects.Interval]:
    """The signal's intervals, uid 0..n, back to back from the event's start."""
    intervals, start = [], event.start_utc
    steps = event_intervals.loads(event.interval_schedule, event.signal_value,
                           event.end_utc - event.start_utc)
    for uid, step in enumerate(steps):
        intervals.append(objects.Interval(dtstart=start, duration=step.duration,
                                          signal_payload=step.value, uid=uid))
        start += step.duration
    return intervals


def to_oadr(event: Event, ven_id: str, now: datetime) -> objects.Event:
    duration = event.end_utc - event.start_utc
    signal = objects.EventSignal(
        intervals=_intervals(event),
        signal_name=event.signal_name,
        signal_type=event.signal_type,
        signal_id=f"{event.event_id}-0",
        measurement=_measurement(event),
    )
    oadr_event = objects.Event(
        event_descriptor=objects.EventDescriptor(
            event_id=event.event_id,
            modification_number=event.modification_number,
            market_context=event.market_context,
            event_status=status_at(event, now),
            created_date_time=event.created_at,
            modification_date_time=event.modified_at or event.created_at,
            test_event=event.test_event,
        ),
        active_period=objects.ActivePeriod(dtstart=event.start_utc, duration=duration),
        event_signals=[signal],
        targets=[objects.Target(ven_id=ven_id)],
        response_required="always",
    )
    # objects.Event derives the status from the wall clock; ours comes from the store and our clock.
    oadr_event.event_descriptor.event_status = status_at(event, now)
    return oadr_event


def to_report_request(request: ReportRequest,
                      reading_types: dict[str, str]) -> objects.ReportRequest:
    """A stored report request -> oadrReportRequest (for oadrRegisteredReport / oadrCreateReport).

    A one-shot request (HISTORY_USAGE backfill) has granularity 0: the VEN answers
    once with the last `report_back_duration` of data.
    """
    r_ids = [r_id for r_id in request.r_ids.split(",") if r_id]
    specifier = objects.ReportSpecifier(
        report_specifier_id=request.report_specifier_id,
        granularity=timedelta(seconds=request.granularity_s),
        report_back_duration=timedelta(seconds=request.report_back_duration_s),
        specifier_payloads=[objects.SpecifierPayload(
            r_id=r_id, reading_type=reading_types.get(r_id, enums.READING_TYPE.DIRECT_READ))
            for r_id in r_ids])
    return objects.ReportRequest(report_request_id=request.report_request_id,
                                 report_specifier=specifier)
