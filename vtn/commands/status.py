"""`vtn status [EVENT]`: what the events are doing now.

With an event id: each targeted VEN's answer (opted in / out / none), whether it is online
(seen within ONLINE_WINDOW poll intervals) and its last reading, then the fleet's kW now
against the event's target. Without: the active events and the next ones, one line each.
Read from the store, so it works whether or not a VTN is running."""
from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from flexadr.clock import SystemClock
from vtn import event_intervals
from vtn.commands.operate import ONLINE_WINDOW, store_of
from vtn.settlement.params import PARAMS
from vtn.store import Event, Store

NEXT_SHOWN = 5
FRESH_INTERVALS = 2      # a reading older than this many telemetry intervals is not "now"


def register(subparsers) -> None:
    parser = subparsers.add_parser("status", help="events now: opt-outs, online VENs, fleet kW "
                                                  "against the target")
    parser.add_argument("--config", type=Path, required=True, help="VTN config file (TOML)")
    parser.add_argument("event_id", nargs="?", help="one event in detail (default: a summary "
                                                    "of the active and next events)")
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class VenNow:
    ven_id: str
    opt: str            # optIn | optOut | none
    online: bool
    kw: float | None    # the last fresh reading, as metered (negative: export)


@dataclass(frozen=True)
class EventNow:
    event: Event
    vens: list[VenNow]
    signal_now: float | None      # the interval's value now (None: not running)

    @property
    def opted_out(self) -> int:
        return sum(v.opt == "optOut" for v in self.vens)

    @property
    def taking_part(self) -> int:
        return len(self.vens) - self.opted_out

    @property
    def kw_now(self) -> float:
        """The fleet's kW in the program's sense: discharge for discharge programs."""
        metered = sum(v.kw for v in self.vens if v.kw is not None)
        return -metered if _discharge(self.event.program_id) else metered

    @property
    def target_kw(self) -> float | None:
        """Per-VEN kW setpoint x the VENs taking part; None for a non-kW signal."""
        if self.signal_now is None or (self.event.signal_unit or "").lower() != "kw":
            return None
        return self.signal_now * self.taking_part


def _discharge(program_id: str) -> bool:
    params = PARAMS.get(program_id)
    return params.discharge if params else True


def event_now(store: Store, event: Event, now: datetime, poll: timedelta,
              telemetry: timedelta) -> EventNow:
    vens = []
    for target in store.targets(event.event_id):
        ven = store.ven(target.ven_id)
        online = bool(ven and ven.last_seen_at and now - ven.last_seen_at <= ONLINE_WINDOW * poll)
        last = store.last_telemetry(target.ven_id)
        fresh = last is not None and now - last.interval_end <= FRESH_INTERVALS * telemetry
        vens.append(VenNow(target.ven_id, target.opt_type or "none", online,
                           last.kw if fresh else None))
    return EventNow(event, vens, _signal_at(event, now))


def _signal_at(event: Event, now: datetime) -> float | None:
    if not event.start_utc <= now < event.end_utc or event.cancelled:
        return None
    at = event.start_utc
    steps = event_intervals.loads(event.interval_schedule, event.signal_value,
                                  event.end_utc - event.start_utc)
    for step in steps:
        at += step.duration
        if now < at:
            return step.value
    return None


def run(args) -> int:
    settings, store = store_of(args)
    now = SystemClock().now()
    poll, telemetry = settings.server.poll_interval, settings.server.telemetry_interval
    if args.event_id:
        event = store.event(args.event_id)
        if event is None:
            print(f"status: no event {args.event_id}", file=sys.stderr)
            return 1
        print(detail(event_now(store, event, now, poll, telemetry)))
        return 0
    print(summary([event_now(store, e, now, poll, telemetry) for e in _active_and_next(store, now)],
                  now))
    return 0


def _active_and_next(store: Store, now: datetime) -> list[Event]:
    """By the clock, not the stored status (which the running VTN advances)."""
    live = sorted((e for e in store.events() if not e.cancelled and e.end_utc > now),
                  key=lambda e: e.start_utc)
    running = [e for e in live if e.start_utc <= now]
    return running + [e for e in live if e.start_utc > now][:NEXT_SHOWN]


def _kw(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _fleet_line(state: EventNow) -> str:
    online = sum(v.online for v in state.vens)
    answered_in = sum(v.opt == "optIn" for v in state.vens)
    line = (f"{len(state.vens)} VENs: {answered_in} opted in, {state.opted_out} opted out, "
            f"{len(state.vens) - answered_in - state.opted_out} no answer; {online} online")
    if state.signal_now is None:
        return line
    sense = "discharge" if _discharge(state.event.program_id) else "load"
    target = (f"{_kw(state.target_kw)} kW" if state.target_kw is not None
              else f"signal {state.signal_now:g} {state.event.signal_unit or state.event.signal_type}")
    return f"{line}; fleet {_kw(state.kw_now)} kW {sense} now vs target {target}"


def detail(state: EventNow) -> str:
    e = state.event
    lines = [f"event {e.event_id}: {e.program_id}, {e.status}, modification {e.modification_number}",
             f"  {_utc(e.start_utc)} to {_utc(e.end_utc)}, signal {e.signal_name} "
             f"{e.signal_value:g} {e.signal_unit or e.signal_type}",
             f"  {'VEN':<28} {'opt':<7} {'online':<6} kW now"]
    lines += [f"  {v.ven_id:<28} {v.opt:<7} {'yes' if v.online else 'no':<6} {_kw(v.kw)}"
              for v in state.vens]
    lines.append(f"  {_fleet_line(state)}")
    return "\n".join(lines)


def summary(states: list[EventNow], now: datetime) -> str:
    if not states:
        return "no active or upcoming events"
    return "\n".join(f"{'now' if s.event.start_utc <= now else 'next':<4} {s.event.status:<9} "
                     f"{s.event.event_id:<36} {s.event.program_id:<22} "
                     f"{_utc(s.event.start_utc)} to {_utc(s.event.end_utc)}: {_fleet_line(s)}"
                     for s in states)


def _utc(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%MZ")
