"""Event lifecycle: publish -> far -> near -> active -> completed, or modified / cancelled.

Every transition is stored with its time (EventTransition). Publication and
modification queue an oadrDistributeEvent for every target VEN (they get it at
their next poll); time-driven transitions are applied by `advance`, which the
VTN runs periodically, and need no message (the VEN derives them from the
event's active period).
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Sequence

from flexadr.clock import Clock
from schedules.model import Program
from vtn import event_intervals
from vtn.oadr_events import status_at
from vtn.store import CANCELLED, COMPLETED, PENDING, Event, Store


class EventOutsideRules(ValueError):
    pass


class EventNotChangeable(ValueError):
    pass


def publish(store: Store, program: Program, start_utc: datetime, end_utc: datetime,
            ven_ids: Sequence[str], clock: Clock, setpoint_kw: float | None = None,
            test_event: bool = False, follow_up: timedelta | None = None,
            planned: bool = False, steps: Sequence[event_intervals.Step] | None = None,
            forced_reason: str | None = None, rule_overrides: str | None = None) -> Event:
    """Store an event for `ven_ids`; they receive it at their next poll.

    planned=True stores it as 'pending': nobody sees it until `publish_planned`.
    `steps`: the signal's value interval by interval (covering the event exactly)
    instead of one value throughout.
    """
    if start_utc.tzinfo is None or end_utc.tzinfo is None:
        raise EventOutsideRules("event times need a UTC offset")
    if end_utc <= start_utc:
        raise EventOutsideRules(f"event ends ({end_utc}) before it starts ({start_utc})")
    now = clock.now()
    if end_utc <= now:
        raise EventOutsideRules(f"event ends ({end_utc}) in the past")
    interval_schedule = None
    if steps is not None:
        try:
            steps = event_intervals.checked(steps, end_utc - start_utc)
        except event_intervals.ScheduleError as err:
            raise EventOutsideRules(str(err)) from err
        interval_schedule = event_intervals.dumps(steps)
    value = (steps[0].value if steps is not None
             else program.signal.value if program.signal.value is not None else setpoint_kw)
    if value is None:
        raise EventOutsideRules(f"program {program.id} needs a setpoint in {program.signal.unit}")
    if not ven_ids:
        raise EventOutsideRules(f"program {program.id} has no VEN to send the event to")
    program_row = store.program(program.id)
    if follow_up is None and program_row is not None and program_row.follow_up_s:
        follow_up = timedelta(seconds=program_row.follow_up_s)
    event = Event(
        event_id=f"{program.id}-{uuid.uuid4().hex[:12]}",
        program_id=program.id,
        market_context=program.market_context,
        signal_name=program.signal.name,
        signal_type=program.signal.type,
        signal_value=value,
        signal_unit=program.signal.unit,
        start_utc=start_utc,
        end_utc=end_utc,
        test_event=test_event,
        created_at=now,
        status=PENDING if planned else status_at_publication(start_utc, end_utc, now),
        follow_up_at=(start_utc - follow_up) if follow_up else None,
        interval_schedule=interval_schedule,
        forced_reason=forced_reason,
        rule_overrides=rule_overrides,
    )
    return store.add_event(event, ven_ids)


def publish_planned(store: Store, event_id: str, clock: Clock) -> Event:
    """Send a planned (pending) event to its targets."""
    event = store.event(event_id)
    if event is None:
        raise EventNotChangeable(f"no event {event_id}")
    if event.status != PENDING:
        raise EventNotChangeable(f"event {event_id} is {event.status}, not pending")
    now = clock.now()
    if event.end_utc <= now:
        raise EventOutsideRules(f"event {event_id} ended at {event.end_utc}")
    return store.publish_planned(event_id, status_at_publication(event.start_utc, event.end_utc,
                                                                 now), now)


def status_at_publication(start_utc: datetime, end_utc: datetime, now: datetime) -> str:
    probe = Event(event_id="", program_id="", market_context="", signal_name="", signal_type="",
                  signal_value=0, start_utc=start_utc, end_utc=end_utc, created_at=now,
                  status=PENDING)
    return status_at(probe, now)


def modify(store: Store, event_id: str, clock: Clock, *, start_utc: datetime | None = None,
           end_utc: datetime | None = None, signal_value: float | None = None,
           steps: Sequence[event_intervals.Step] | None = None,
           forced_reason: str | None = None, rule_overrides: str | None = None) -> Event:
    """Change an event: its modification number goes up and every target gets it again.

    `steps` replaces the interval schedule (covering the new period exactly)."""
    event = changeable(store, event_id)
    start = start_utc or event.start_utc
    end = end_utc or event.end_utc
    if end <= start:
        raise EventOutsideRules(f"event ends ({end}) before it starts ({start})")
    changes = {"start_utc": start, "end_utc": end}
    if steps is not None:
        try:
            steps = event_intervals.checked(steps, end - start)
        except event_intervals.ScheduleError as err:
            raise EventOutsideRules(str(err)) from err
        changes["signal_value"] = steps[0].value
        changes["interval_schedule"] = event_intervals.dumps(steps)
    elif signal_value is not None:      # one value throughout replaces any profile
        changes["signal_value"] = signal_value
        changes["interval_schedule"] = None
    elif event.interval_schedule is not None and end - start != event.end_utc - event.start_utc:
        steps = event_intervals.loads(event.interval_schedule, event.signal_value,
                                      event.end_utc - event.start_utc)
        changes["interval_schedule"] = event_intervals.dumps(
            event_intervals.fit(steps, end - start))
    if forced_reason is not None:
        changes["forced_reason"] = forced_reason
    if rule_overrides is not None:
        changes["rule_overrides"] = rule_overrides
    now = clock.now()
    if event.follow_up_at is not None:
        changes["follow_up_at"] = start - (event.start_utc - event.follow_up_at)
    if event.status != PENDING:
        changes["status"] = status_at_publication(start, end, now)
    return store.modify_event(event_id, now, "modified", **changes)


def cancel(store: Store, event_id: str, clock: Clock) -> Event:
    """Cancel an event; every target gets the cancellation at its next poll."""
    changeable(store, event_id)
    return store.modify_event(event_id, clock.now(), "cancelled", status=CANCELLED)


def changeable(store: Store, event_id: str) -> Event:
    """The event, if it may still be modified or cancelled; EventNotChangeable if not."""
    event = store.event(event_id)
    if event is None:
        raise EventNotChangeable(f"no event {event_id}")
    if event.status in (CANCELLED, COMPLETED):
        raise EventNotChangeable(f"event {event_id} is {event.status}")
    return event


def advance(store: Store, clock: Clock) -> list[tuple[str, str]]:
    """Apply the time-driven transitions that are due; returns (event_id, new status)."""
    now = clock.now()
    changed = []
    for event in store.open_events():
        if event.status == PENDING:
            continue
        status = status_at(event, now)
        if store.set_event_status(event.event_id, event.status, status, now):
            changed.append((event.event_id, status))
    return changed
