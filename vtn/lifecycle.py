"""Publishing events: a program's rules + a window -> stored event with its targets."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Sequence

from flexadr.clock import Clock
from schedules.model import Program
from vtn.store import Event, Store


class EventOutsideRules(ValueError):
    pass


def publish(store: Store, program: Program, start_utc: datetime, end_utc: datetime,
            ven_ids: Sequence[str], clock: Clock, setpoint_kw: float | None = None,
            test_event: bool = False) -> Event:
    """Store an event for `ven_ids`; they receive it at their next poll."""
    if end_utc <= start_utc:
        raise EventOutsideRules(f"event ends ({end_utc}) before it starts ({start_utc})")
    value = program.signal.value if program.signal.value is not None else setpoint_kw
    if value is None:
        raise EventOutsideRules(f"program {program.id} needs a setpoint in {program.signal.unit}")
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
        created_at=clock.now(),
    )
    return store.add_event(event, ven_ids)
