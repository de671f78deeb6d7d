"""openleadr's parsed oadrEvent dicts as the agent's Event (ven/events.py)."""
from __future__ import annotations

from datetime import datetime, timedelta

from ven.events import NO_PRIORITY, Event, Interval, Signal, Targets
from ven.openadr20b.client import as_list


def _intervals(raw: list[dict], start: datetime) -> tuple[Interval, ...]:
    """Intervals in uid order; one without dtstart starts where the previous one ended."""
    ordered = sorted(raw, key=lambda i: int(i.get("uid") or 0))
    intervals, at = [], start
    for position, item in enumerate(ordered):
        begin = item.get("dtstart") or at
        uid = item.get("uid")
        interval = Interval(uid=int(uid) if uid is not None else position, start=begin,
                            duration=item["duration"], payload=float(item["signal_payload"]))
        intervals.append(interval)
        at = interval.end
    return tuple(intervals)


def _signal(raw: dict, start: datetime) -> Signal:
    measurement = raw.get("measurement") or {}
    return Signal(name=raw["signal_name"], type=raw["signal_type"],
                  signal_id=str(raw.get("signal_id", "")),
                  intervals=_intervals(as_list(raw.get("intervals") or []), start),
                  unit=measurement.get("unit"), scale=measurement.get("scale"))


def _targets(raw: dict) -> Targets:
    by_type = raw.get("targets_by_type") or {}
    if not by_type:
        for target in as_list(raw.get("targets") or []):
            for key, value in target.items():
                by_type.setdefault(key, []).append(value)

    def ids(key: str) -> tuple[str, ...]:
        return tuple(str(v) for v in as_list(by_type.get(key) or []))
    return Targets(ids("ven_id"), ids("resource_id"), ids("group_id"), ids("party_id"))


def from_openleadr(raw: dict) -> Event:
    """An openleadr-parsed oadrEvent dict -> Event (times are already UTC datetimes)."""
    descriptor, active = raw["event_descriptor"], raw["active_period"]
    tolerance = (active.get("tolerance") or {}).get("tolerate") or {}
    signals = raw["event_signals"]
    if isinstance(signals, dict) and "event_signals" in signals:
        signals = signals["event_signals"]
    return Event(
        event_id=descriptor["event_id"],
        modification_number=int(descriptor.get("modification_number") or 0),
        status=descriptor.get("event_status", ""),
        start=active["dtstart"], duration=active["duration"],
        signals=tuple(_signal(s, active["dtstart"]) for s in as_list(signals)),
        targets=_targets(raw),
        priority=int(descriptor.get("priority") or NO_PRIORITY),
        start_after=tolerance.get("startafter") or timedelta(0),
        market_context=descriptor.get("market_context") or "",
        test_event=bool(descriptor.get("test_event")),
    )
