"""One model underneath: the store's rows as OpenADR 3.1 objects, and 3.1 payloads as 2.0b signals.

A 3.1 event is the stored Event a 2.0b VEN receives as oadrDistributeEvent; its intervals
are the event's interval schedule (vtn/event_intervals.py), the 2.0b signal's intervals
one for one. Targets are VEN names (venName). See docs/openadr3.md for the full table,
including what has no counterpart.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from flexadr.oadr3_time import NOW, iso, iso_duration
from schedules import model
from vtn import event_intervals
from vtn.event_intervals import Step
from vtn.openadr31.problems import Problem, bad_request
from vtn.openadr31.schemas import EventRequest, IntervalPeriod
from vtn.openadr31.telemetry import later
from vtn.store import Event, Oadr3Report, Oadr3Subscription, Program, Resource, Ven

PROGRAM_ID, DEVICE_KIND = "PROGRAM_ID", "DEVICE_KIND"     # private VEN/resource attribute types


@dataclass(frozen=True)
class PayloadMapping:
    """A 2.0b signal (name, type) and its 3.1 payload type; value_3 = value_2b * scale."""
    signal_name: str
    signal_type: str
    payload_type: str
    units: str | None
    scale: float = 1.0


PAYLOADS = (
    PayloadMapping("LOAD_DISPATCH", "setpoint", "DISPATCH_SETPOINT", "KW"),
    # 2.0b capacity is a fraction of the device's capacity; 3.1 says it in PERCENT.
    PayloadMapping("LOAD_CONTROL", "x-loadControlCapacity", "IMPORT_CAPACITY_LIMIT", "PERCENT",
                   100.0),
    PayloadMapping("SIMPLE", "level", "SIMPLE", None),
    PayloadMapping("ELECTRICITY_PRICE", "price", "PRICE", None),
)
# 3.1 payload types with no 2.0b signal in this VTN's programs: refused with a 400.
NO_COUNTERPART = ("CHARGE_STATE_SETPOINT", "EXPORT_CAPACITY_LIMIT", "CONTROL_SETPOINT",
                  "EXPORT_PRICE", "GHG", "CURVE", "OLS", "ALERT_GRID_EMERGENCY")


def payload_for(signal_name: str, signal_type: str) -> PayloadMapping | None:
    for mapping in PAYLOADS:
        if (mapping.signal_name, mapping.signal_type) == (signal_name, signal_type):
            return mapping
    return None


def _metadata(object_id: str, object_type: str, created: datetime | None,
              modified: datetime | None) -> dict:
    return {"id": object_id, "createdDateTime": iso(created),
            "modificationDateTime": iso(modified or created), "objectType": object_type}


def program_json(row: Program) -> dict:
    """A program file, as 3.1 sees it: its id is the name, its signal the payload descriptor."""
    path = model.PROGRAMS_DIR / f"{row.program_id}.toml"
    changed = (datetime.fromtimestamp(Path(path).stat().st_mtime, timezone.utc)
               if path.exists() else None)
    body = _metadata(row.program_id, "PROGRAM", changed, changed)
    body["programName"] = row.program_id
    body["attributes"] = [{"type": "PROGRAM_LONG_NAME", "values": [row.name]},
                          {"type": "MARKET_CONTEXT", "values": [row.market_context]}]
    try:
        signal = model.load(row.program_id).signal
    except (model.ProgramError, OSError):
        signal = None
    mapping = payload_for(signal.name, signal.type) if signal else None
    if mapping is not None:
        body["payloadDescriptors"] = [_event_descriptor(mapping)]
    return body


def _event_descriptor(mapping: PayloadMapping) -> dict:
    descriptor = {"objectType": "EVENT_PAYLOAD_DESCRIPTOR", "payloadType": mapping.payload_type}
    if mapping.units:
        descriptor["units"] = mapping.units
    return descriptor


def event_json(event: Event, target_names: list[str]) -> dict:
    body = _metadata(event.event_id, "EVENT", event.created_at, event.modified_at)
    body.update(programID=event.program_id, eventName=event.event_id, targets=target_names,
                intervalPeriod={"start": iso(event.start_utc),
                                "duration": iso_duration(event.end_utc - event.start_utc)})
    mapping = payload_for(event.signal_name, event.signal_type)
    if mapping is None:
        # A signal this table does not know is still shown, under its 2.0b name.
        mapping = PayloadMapping(event.signal_name, event.signal_type, event.signal_name,
                                 event.signal_unit)
    body["payloadDescriptors"] = [_event_descriptor(mapping)]
    steps = event_intervals.loads(event.interval_schedule, event.signal_value,
                                  event.end_utc - event.start_utc)
    # Even intervals need only the event's period; uneven ones each carry their own.
    uneven = len({step.duration for step in steps}) > 1
    body["intervalPeriod"]["duration"] = iso_duration(steps[0].duration)
    body["intervals"], at = [], event.start_utc
    for n, step in enumerate(steps):
        interval = {"id": n, "payloads": [{"type": mapping.payload_type,
                                           "values": [step.value * mapping.scale]}]}
        if uneven:
            interval["intervalPeriod"] = {"start": iso(at), "duration": iso_duration(step.duration)}
        body["intervals"].append(interval)
        at += step.duration
    return body


# --- a 3.1 event body as the stored event's schedule ------------------------------------
def event_schedule(body: EventRequest, program: model.Program,
                   now: datetime) -> tuple[datetime, datetime, list[Step]]:
    """Start, end and the value of every interval, as the program's 2.0b signal carries
    them; or a 400 naming the field. Intervals follow each other (an absolute start must
    be the previous interval's end), as the 2.0b signal's intervals do."""
    signal = payload_for(program.signal.name, program.signal.type)
    if signal is None:
        raise Problem(409, f"program {program.id}'s signal {program.signal.name} "
                      f"{program.signal.type} has no 3.1 payload type here")
    default = body.intervalPeriod
    start = _own(body.intervals[0].intervalPeriod, "start")
    if start in (None, NOW):        # the first interval's 'now' is the event's start if given
        start = _own(default, "start") or start
    if start is None:
        raise bad_request("intervalPeriod.start", "an event needs a start")
    start = now if start == NOW else start
    steps, at = [], start
    for i, interval in enumerate(body.intervals):
        own = interval.intervalPeriod
        where = "intervalPeriod" if i == 0 else f"intervals.{i}.intervalPeriod"
        if i and _own(own, "start") not in (None, NOW, at):
            raise bad_request(f"{where}.start", f"starts {iso(own.start)}, not where the "
                              f"previous interval ends ({iso(at)}): this VTN keeps an "
                              f"event's intervals back to back, as 2.0b does")
        duration = _first(_own(own, "duration"), _own(default, "duration"),
                          body.duration if len(body.intervals) == 1 else None)
        if duration is None or duration.total_seconds() <= 0:
            raise bad_request(f"{where}.duration", "an interval needs a positive duration")
        end = later(at, duration, f"{where}.duration")
        steps.append(Step(duration, _value(interval.payloads, i, signal, program)))
        at = end
    if len(body.intervals) > 1 and body.duration is not None and body.duration != at - start:
        raise bad_request("duration", f"the intervals last {iso_duration(at - start)}")
    return start, at, steps


def _first(*durations: timedelta | None) -> timedelta | None:
    """The first duration given (PT0S is given, and refused later)."""
    return next((d for d in durations if d is not None), None)


def _own(period: IntervalPeriod | None, name: str):
    return getattr(period, name) if period is not None else None


def _value(payloads: list, i: int, signal: PayloadMapping, program: model.Program) -> float:
    """One interval's value as the program's 2.0b signal carries it."""
    where = f"intervals.{i}.payloads"
    for p, payload in enumerate(payloads):
        if payload.type in NO_COUNTERPART:
            raise bad_request(f"{where}.{p}.type",
                              f"{payload.type} has no 2.0b counterpart in this VTN")
        if payload.type != signal.payload_type:
            raise bad_request(f"{where}.{p}.type", f"program {program.id} takes "
                              f"{signal.payload_type}")
    if len(payloads) != 1:
        raise bad_request(where, f"one {signal.payload_type} payload")
    values = payloads[0].values
    if len(values) != 1 or isinstance(values[0], bool) or not isinstance(values[0], (int, float)):
        raise bad_request(f"{where}.0.values", "one number")
    value = values[0] / signal.scale
    if program.signal.value is not None and value != program.signal.value:
        raise bad_request(f"{where}.0.values", f"program {program.id} always sends "
                          f"{program.signal.value * signal.scale:g}")
    return value


def ven_client_id(ven: Ven) -> str:
    """clientID is required on a ven object; a 2.0b-only VEN has none, so say so."""
    return ven.client_id or f"2.0b:{ven.ven_id}"


def ven_json(ven: Ven) -> dict:
    body = _metadata(ven.ven_id, "VEN", ven.created_at or ven.registered_at, ven.modified_at)
    body.update(objectType="VEN", clientID=ven_client_id(ven), venName=ven.ven_name,
                targets=[ven.ven_name],
                attributes=[{"type": PROGRAM_ID, "values": [ven.program_id]},
                            {"type": DEVICE_KIND, "values": [ven.device_kind]}])
    return body


def resource_json(resource: Resource, ven: Ven) -> dict:
    body = _metadata(str(resource.id), "RESOURCE", resource.created_at, resource.modified_at)
    body.update(clientID=ven_client_id(ven), resourceName=resource.resource_id,
                venID=resource.ven_id, targets=[ven.ven_name],
                attributes=[{"type": DEVICE_KIND, "values": [resource.device_kind]}])
    return body


def stored_json(row: Oadr3Report | Oadr3Subscription, object_id: str, object_type: str,
                body: dict) -> dict:
    out = _metadata(object_id, object_type, row.created_at, row.modified_at)
    out.update(body)
    out["clientID"] = row.client_id
    return out
