"""The VEN's model of an event, whichever protocol brought it.

Its vocabulary is 2.0b's (signal name and type, eiTarget), which the policy speaks;
the 3.1 edge maps its payload types onto it (ven/openadr31/events.py), the 2.0b edge
parses openleadr's dicts into it (ven/openadr20b/events.py). Every signal keeps its
whole interval schedule; the active period keeps its tolerance (startafter
randomization); priority and targets are kept so the policy can pick the event in
force and the agent can ignore events for others. Stored as JSON so a restarted agent
resumes the same schedule.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

# The precedence key of an event without priority: 0 means "none, the lowest" (2.0b).
NO_PRIORITY = 0
CANCELLED = "cancelled"        # the status of a cancelled event (a 3.1 event deleted)
RESOURCE_ID = "device"         # the one resource an agent reports on and answers to in targets


@dataclass(frozen=True)
class Interval:
    uid: int
    start: datetime
    duration: timedelta
    payload: float

    @property
    def end(self) -> datetime:
        return self.start + self.duration


@dataclass(frozen=True)
class Signal:
    name: str
    type: str
    signal_id: str
    intervals: tuple[Interval, ...]
    unit: str | None = None        # itemUnits of the signal's itemBase, e.g. "W"
    scale: str | None = None       # siScaleCode, e.g. "k"

    def at(self, when: datetime) -> Interval | None:
        """The interval in force at `when`, if any."""
        return next((i for i in self.intervals if i.start <= when < i.end), None)


@dataclass(frozen=True)
class Targets:
    """An eiTarget: the event applies to every VEN, resource, group or party it names."""
    ven_ids: tuple[str, ...] = ()
    resource_ids: tuple[str, ...] = ()
    group_ids: tuple[str, ...] = ()
    party_ids: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.ven_ids or self.resource_ids or self.group_ids or self.party_ids)


@dataclass(frozen=True)
class Identity:
    """What a VEN answers to in an event's targets."""
    ven_id: str | None
    resource_ids: tuple[str, ...] = ()
    group_ids: tuple[str, ...] = ()
    party_ids: tuple[str, ...] = ()

    def targeted_by(self, targets: Targets) -> bool:
        # An empty eiTarget means every VEN the event was sent to.
        return (targets.empty
                or (self.ven_id is not None and self.ven_id in targets.ven_ids)
                or bool(set(self.resource_ids) & set(targets.resource_ids))
                or bool(set(self.group_ids) & set(targets.group_ids))
                or bool(set(self.party_ids) & set(targets.party_ids)))


@dataclass(frozen=True)
class Event:
    event_id: str
    modification_number: int
    status: str
    start: datetime
    duration: timedelta
    signals: tuple[Signal, ...]
    targets: Targets = field(default_factory=Targets)
    priority: int = NO_PRIORITY
    start_after: timedelta = timedelta(0)     # tolerance: the VEN may start up to this late
    market_context: str = ""
    test_event: bool = False

    @property
    def end(self) -> datetime:
        return self.start + self.duration

    def boundaries(self) -> list[datetime]:
        """Every moment the interval in force changes: where the agent re-plans."""
        edges = {self.start, self.end}
        for signal in self.signals:
            edges |= {t for i in signal.intervals for t in (i.start, i.end)}
        return sorted(edges)

    def shifted(self, offset: timedelta) -> "Event":
        """The same event started `offset` later, as a randomized start moves it."""
        if not offset:
            return self
        signals = tuple(replace(s, intervals=tuple(replace(i, start=i.start + offset)
                                                   for i in s.intervals)) for s in self.signals)
        return replace(self, start=self.start + offset, signals=signals)

    def precedence(self) -> tuple[float, datetime]:
        """Sort key: lower priority number first (0 = none, the lowest), then earlier start."""
        rank = float("inf") if self.priority == NO_PRIORITY else float(self.priority)
        return rank, self.start


def start_offset(ven_name: str, event_id: str, start_after: timedelta) -> timedelta:
    """This VEN's randomized start within the tolerance, the same after a restart."""
    if start_after <= timedelta(0):
        return timedelta(0)
    digest = hashlib.sha256(f"{ven_name}/{event_id}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2 ** 64
    return timedelta(seconds=round(start_after.total_seconds() * fraction))


# --- JSON for the local store -----------------------------------------------------------
def to_json(event: Event) -> str:
    def interval(i: Interval) -> dict:
        return {"uid": i.uid, "start": i.start.isoformat(),
                "duration_s": i.duration.total_seconds(), "payload": i.payload}

    def signal(s: Signal) -> dict:
        return {"name": s.name, "type": s.type, "signal_id": s.signal_id, "unit": s.unit,
                "scale": s.scale, "intervals": [interval(i) for i in s.intervals]}
    return json.dumps({
        "event_id": event.event_id, "modification_number": event.modification_number,
        "status": event.status, "start": event.start.isoformat(),
        "duration_s": event.duration.total_seconds(),
        "signals": [signal(s) for s in event.signals],
        "targets": {"ven_ids": event.targets.ven_ids, "resource_ids": event.targets.resource_ids,
                    "group_ids": event.targets.group_ids, "party_ids": event.targets.party_ids},
        "priority": event.priority, "start_after_s": event.start_after.total_seconds(),
        "market_context": event.market_context, "test_event": event.test_event,
    })


def from_json(text: str) -> Event:
    data = json.loads(text)

    def interval(i: dict) -> Interval:
        return Interval(i["uid"], datetime.fromisoformat(i["start"]),
                        timedelta(seconds=i["duration_s"]), i["payload"])

    def signal(s: dict) -> Signal:
        return Signal(s["name"], s["type"], s["signal_id"],
                      tuple(interval(i) for i in s["intervals"]), s["unit"], s["scale"])
    return Event(
        event_id=data["event_id"], modification_number=data["modification_number"],
        status=data["status"], start=datetime.fromisoformat(data["start"]),
        duration=timedelta(seconds=data["duration_s"]),
        signals=tuple(signal(s) for s in data["signals"]),
        targets=Targets(**{k: tuple(v) for k, v in data["targets"].items()}),
        priority=data["priority"], start_after=timedelta(seconds=data["start_after_s"]),
        market_context=data["market_context"], test_event=data["test_event"],
    )
