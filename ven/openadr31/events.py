"""A 3.1 event object as the agent's Event (ven/events.py), whose vocabulary the policy speaks.

Payload types become the 2.0b signals the VTN maps them to (docs/openadr3.md), so one
event reaches a 2.0b and a 3.1 agent with the same meaning:

    DISPATCH_SETPOINT (KW, W)         -> LOAD_DISPATCH setpoint (power delivered, kW)
    IMPORT_CAPACITY_LIMIT (PERCENT)   -> LOAD_CONTROL x-loadControlCapacity (fraction)
    IMPORT_CAPACITY_LIMIT (KW, W)     -> LOAD_CONTROL x-loadControlSetpoint (kW)
    CHARGE_STATE_SETPOINT (PERCENT, KWH, WH) -> CHARGE_STATE setpoint
    SIMPLE                            -> SIMPLE level

Other payload types are kept under their 3.1 name; the policy supports none of them, so
an event carrying only those is opted out of ("not supported").

Intervals follow the User Guide: the event's intervalPeriod is every interval's default;
an interval without its own start follows the previous one; a 'now' start (0001-01-01)
is the moment the event is read; a payload with n values is n sub-intervals.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from flexadr.oadr3_time import NOW, parse_duration, parse_time
from ven.events import NO_PRIORITY, Event, Interval, Signal, Targets


class EventError(ValueError):
    """An event object this agent cannot read (named field, what is wrong)."""


# (payload type, units) -> (2.0b signal name, type, itemUnits, siScaleCode, factor)
_SIGNALS = {
    ("DISPATCH_SETPOINT", None): ("LOAD_DISPATCH", "setpoint", None, None, 1.0),
    ("DISPATCH_SETPOINT", "KW"): ("LOAD_DISPATCH", "setpoint", None, None, 1.0),
    ("DISPATCH_SETPOINT", "W"): ("LOAD_DISPATCH", "setpoint", "W", "none", 1.0),
    ("IMPORT_CAPACITY_LIMIT", "PERCENT"): ("LOAD_CONTROL", "x-loadControlCapacity", None, None,
                                           0.01),
    ("IMPORT_CAPACITY_LIMIT", "KW"): ("LOAD_CONTROL", "x-loadControlSetpoint", None, None, 1.0),
    ("IMPORT_CAPACITY_LIMIT", "W"): ("LOAD_CONTROL", "x-loadControlSetpoint", "W", "none", 1.0),
    ("CHARGE_STATE_SETPOINT", None): ("CHARGE_STATE", "setpoint", "%", None, 1.0),
    ("CHARGE_STATE_SETPOINT", "PERCENT"): ("CHARGE_STATE", "setpoint", "%", None, 1.0),
    ("CHARGE_STATE_SETPOINT", "KWH"): ("CHARGE_STATE", "setpoint", "Wh", "k", 1.0),
    ("CHARGE_STATE_SETPOINT", "WH"): ("CHARGE_STATE", "setpoint", "Wh", "none", 1.0),
    ("SIMPLE", None): ("SIMPLE", "level", None, None, 1.0),
}


def from_31(body: dict, now: datetime, own_name: str, ven_id: str | None) -> Event:
    """A 3.1 event object (as GET /events gives it) -> Event; EventError if unreadable."""
    try:
        return _event(body, now, own_name, ven_id)
    except (KeyError, TypeError, ValueError, IndexError) as err:
        if isinstance(err, EventError):
            raise
        raise EventError(f"event {body.get('id') if isinstance(body, dict) else body!r}: "
                         f"{err!r}") from None


def _event(body: dict, now: datetime, own_name: str, ven_id: str | None) -> Event:
    units = {d["payloadType"]: (d.get("units") or "").upper() or None
             for d in body.get("payloadDescriptors") or () if "payloadType" in d}
    default = body.get("intervalPeriod") or {}
    by_type: dict[str, list[tuple[datetime, timedelta, float]]] = {}
    at: datetime | None = None
    for n, interval in enumerate(body["intervals"]):
        own = interval.get("intervalPeriod") or {}
        start = _start(own.get("start"), default.get("start") if n == 0 else None, at, now)
        duration = parse_duration(own.get("duration") or default.get("duration") or "")
        if duration <= timedelta(0):
            raise EventError(f"event {body['id']}: interval {n} lasts {duration}")
        for payload in interval["payloads"]:
            values = [float(v) for v in payload["values"]]
            step = duration / len(values)
            for k, value in enumerate(values):
                by_type.setdefault(payload["type"], []).append((start + k * step, step, value))
        at = start + duration
    if at is None:
        raise EventError(f"event {body['id']}: no intervals")
    signals = tuple(_signal(kind, units.get(kind), steps) for kind, steps in by_type.items())
    first = min(i.start for s in signals for i in s.intervals)
    end = max(i.end for s in signals for i in s.intervals)
    priority = body.get("priority")
    return Event(
        event_id=body["id"], modification_number=0, status="", start=first,
        duration=end - first, signals=signals, targets=_targets(body, own_name, ven_id),
        # 3.1: a lower number is a higher priority, 0 the highest; 2.0b's 0 means "none".
        priority=NO_PRIORITY if priority is None else int(priority) + 1,
        start_after=parse_duration(default.get("randomizeStart") or "PT0S"),
        market_context=body.get("programID", ""))


def _start(own: str | None, default: str | None, previous_end: datetime | None,
           now: datetime) -> datetime:
    """An interval's start: its own, else the event's (first interval), else the previous end."""
    for text in (own, default):
        if text:
            start = parse_time(text)
            if start != NOW:
                return start
    if previous_end is not None:
        return previous_end
    return now                 # a 'do it now' event


def _signal(kind: str, unit: str | None, steps: list) -> Signal:
    # Without units a dispatch speaks kW, as the VTN's programs do. A pair the table does
    # not know keeps its 3.1 name, which the policy does not act on.
    name, signal_type, item_units, scale, factor = _SIGNALS.get(
        (kind, unit), (kind, "3.1", unit, None, 1.0))
    intervals = tuple(Interval(uid, start, duration, value * factor)
                      for uid, (start, duration, value) in enumerate(sorted(steps)))
    return Signal(name=name, type=signal_type, signal_id=kind, intervals=intervals,
                  unit=item_units, scale=scale)


def _targets(body: dict, own_name: str, ven_id: str | None) -> Targets:
    """3.1 targets are VEN names; the VTN hides them down to this VEN's own."""
    names = tuple(body.get("targets") or ())
    if not names:
        return Targets()
    return Targets(ven_ids=tuple(ven_id if name == own_name and ven_id else name
                                 for name in names))
