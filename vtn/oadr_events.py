"""Store rows -> openleadr event objects for oadrDistributeEvent."""
from __future__ import annotations

from datetime import datetime

from openleadr import enums, objects

from vtn.store import Event

# OpenADR 2.0b event status by position of `now` against the event; "near"
# starts when the VEN should be getting ready (the ramp-up of the spec).
NEAR_WINDOW_S = 60


def event_status(event: Event, now: datetime) -> str:
    if event.cancelled:
        return enums.EVENT_STATUS.CANCELLED
    if now >= event.end_utc:
        return enums.EVENT_STATUS.COMPLETED
    if now >= event.start_utc:
        return enums.EVENT_STATUS.ACTIVE
    if (event.start_utc - now).total_seconds() <= NEAR_WINDOW_S:
        return enums.EVENT_STATUS.NEAR
    return enums.EVENT_STATUS.FAR


def _measurement(event: Event) -> objects.Measurement | None:
    if event.signal_unit != "kW":
        return None
    power = enums.MEASUREMENTS.REAL_POWER
    return objects.Measurement(name=power.name, description=power.description, unit=power.unit,
                               scale="k", power_attributes=power.power_attributes)


def to_oadr(event: Event, ven_id: str, now: datetime) -> objects.Event:
    duration = event.end_utc - event.start_utc
    signal = objects.EventSignal(
        intervals=[objects.Interval(dtstart=event.start_utc, duration=duration,
                                    signal_payload=event.signal_value, uid=0)],
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
            event_status=event_status(event, now),
            created_date_time=event.created_at,
            modification_date_time=event.created_at,
            test_event=event.test_event,
        ),
        active_period=objects.ActivePeriod(dtstart=event.start_utc, duration=duration),
        event_signals=[signal],
        targets=[objects.Target(ven_id=ven_id)],
        response_required="always",
    )
    # objects.Event derives the status from the wall clock; ours comes from the store and our clock.
    oadr_event.event_descriptor.event_status = event_status(event, now)
    return oadr_event
