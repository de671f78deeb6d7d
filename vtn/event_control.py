"""A person's event actions (admin API, CLI, OpenADR 3.1 API): validated input in, the
dispatch rules checked, a stored event and its audit rows out.

Everything is checked before anything is written, so a refusal leaves the store as it was;
the change and its audit rows are one transaction.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Sequence

from flexadr.clock import Clock
from schedules import model
from schedules.model import Program
from vtn import audit, event_intervals, lifecycle, ven_control
from vtn.audit import Actor
from vtn.dispatch_rules import (END, SIGNAL, START, CalledEvent, Facts, Proposal, Violation,
                                blocking, can_override, check)
from vtn.operator_input import EventChange, EventRequest, InputError
from vtn.store import CANCELLED, Event, Store


class RulesRefused(ValueError):
    """The event breaks dispatch rules and no (allowed) override lifts them."""

    def __init__(self, violations: Sequence[Violation], may_override: bool):
        self.violations = list(violations)
        # True: every violation is a program rule this actor could override with a reason.
        self.may_override = may_override and all(v.overridable for v in self.violations)
        super().__init__("; ".join(f"{v.rule}: {v.message}" for v in self.violations))

    def as_dict(self) -> dict:
        return {"error": f"refused by the dispatch rules: {self}",
                "field": self.violations[0].field,
                "violations": [v.as_dict() for v in self.violations],
                "override": ("give override_reason to override" if self.may_override
                             else "not overridable by this request")}


def load_program(program_id: str) -> Program:
    try:
        return model.load(program_id)
    except (FileNotFoundError, model.ProgramError) as err:
        raise InputError.one("program_id", f"no program {program_id}: {err}") from None


def create(store: Store, clock: Clock, request: EventRequest, program: Program,
           actor: Actor) -> Event:
    """An operator's event request (admin API, CLI)."""
    return create_event(store, clock, program, request.start, request.end_utc,
                        request.ven_ids or default_targets(store, program, clock), actor,
                        setpoint_kw=request.setpoint_kw, steps=_steps(request),
                        test_event=request.test_event, planned=request.plan,
                        override_reason=request.override_reason)


def create_event(store: Store, clock: Clock, program: Program, start: datetime, end: datetime,
                 ven_ids: Sequence[str], actor: Actor, *, setpoint_kw: float | None = None,
                 steps: Sequence[event_intervals.Step] | None = None, test_event: bool = False,
                 planned: bool = False, override_reason: str | None = None) -> Event:
    """Check the dispatch rules, then store the event and its audit rows (one transaction).

    RulesRefused if a violation stands; InputError if the event cannot be built."""
    values = None if steps is None else tuple(step.value for step in steps)
    proposal = Proposal(program, start, end, tuple(ven_ids), setpoint_kw=setpoint_kw,
                        intervals=values, test_event=test_event)
    overridden = _allowed(check(proposal, facts(store, clock, ven_ids)), override_reason, actor)
    with store.transaction():
        try:
            event = lifecycle.publish(store, program, start, end, ven_ids, clock,
                                      setpoint_kw=setpoint_kw, test_event=test_event,
                                      planned=planned, steps=steps,
                                      forced_reason=override_reason if overridden else None,
                                      rule_overrides=_overrides_json(None, overridden))
        except lifecycle.EventOutsideRules as err:
            raise InputError.one("start", str(err)) from None
        _audit(store, clock, actor, "event.create", event.event_id, None, event,
               override_reason, overridden)
    return event


def change(store: Store, clock: Clock, event_id: str, request: EventChange,
           actor: Actor) -> Event:
    """An operator's change (admin API, CLI)."""
    return change_event(store, clock, event_id, actor, start=request.start, end=request.end,
                        setpoint_kw=request.setpoint_kw, override_reason=request.override_reason)


def change_event(store: Store, clock: Clock, event_id: str, actor: Actor, *,
                 start: datetime | None = None, end: datetime | None = None,
                 setpoint_kw: float | None = None,
                 override_reason: str | None = None) -> Event:
    """Check the rules the change touches, then modify the event and write its audit rows.

    lifecycle.EventNotChangeable if it is unknown, over or cancelled; RulesRefused if a
    violation stands."""
    event = lifecycle.changeable(store, event_id)
    before = audit.snapshot(event)      # now: inside a transaction the row object is live
    program = load_program(event.program_id)
    new_start, new_end = start or event.start_utc, end or event.end_utc
    if new_end <= new_start:
        raise InputError.one("end", "the event ends before it starts")
    changed = {name for name, given in ((START, start), (END, end), (SIGNAL, setpoint_kw))
               if given is not None}
    targets = tuple(t.ven_id for t in store.targets(event_id))
    proposal = Proposal(program, new_start, new_end, targets, setpoint_kw=setpoint_kw,
                        test_event=event.test_event, event_id=event_id,
                        changed=frozenset(changed))
    overridden = _allowed(check(proposal, facts(store, clock, ())), override_reason, actor)
    with store.transaction():
        try:
            after = lifecycle.modify(
                store, event_id, clock, start_utc=start, end_utc=end, signal_value=setpoint_kw,
                forced_reason=override_reason if overridden else None,
                rule_overrides=_overrides_json(event.rule_overrides, overridden) if overridden
                else None)
        except lifecycle.EventOutsideRules as err:
            raise InputError.one("end", str(err)) from None
        _audit(store, clock, actor, "event.modify", event_id, before, after, override_reason,
               overridden)
    return after


def cancel(store: Store, clock: Clock, event_id: str, actor: Actor) -> Event:
    """Cancel an event; lifecycle.EventNotChangeable if it is unknown, over or cancelled."""
    with store.transaction():
        before = audit.snapshot(lifecycle.changeable(store, event_id))
        after = lifecycle.cancel(store, event_id, clock)
        _audit(store, clock, actor, "event.cancel", event_id, before, after, None, [])
    return after


def publish(store: Store, clock: Clock, event_id: str, actor: Actor) -> Event:
    """Send a planned event now (lifecycle.publish_planned's refusals apply)."""
    with store.transaction():
        before = audit.snapshot(store.event(event_id))
        after = lifecycle.publish_planned(store, event_id, clock)
        _audit(store, clock, actor, "event.publish", event_id, before, after, None, [])
    return after


def facts(store: Store, clock: Clock, ven_ids: Sequence[str]) -> Facts:
    """What the dispatch rules read from the store: the events not cancelled with their
    targets, and the programs and access of `ven_ids`."""
    targets = store.live_targets()
    called = [CalledEvent(e.event_id, e.program_id, e.start_utc, e.end_utc,
                          frozenset(targets.get(e.event_id, ())), e.test_event)
              for e in store.events() if e.status != CANCELLED]
    programs_of, refused = {}, {}
    for ven_id in ven_ids:
        ven = store.ven(ven_id)
        if ven is None:
            programs_of[ven_id] = None
            continue
        programs_of[ven_id] = frozenset({ven.program_id} | {
            e.program_id for e in store.enrolments(ven_id=ven_id)})
        why = ven_control.refusal_of(store, ven, clock)
        if why is not None:
            refused[ven_id] = why
    return Facts(clock.now(), called, programs_of, refused)


def _allowed(violations: list[Violation], override_reason: str | None,
             actor: Actor) -> list[Violation]:
    """The violations the override lifts; RulesRefused if any still stands."""
    stopping = blocking(violations, override_reason, actor.role)
    if stopping:
        raise RulesRefused(stopping, can_override(actor.role))
    return violations


def _overrides_json(previous: str | None, overridden: Sequence[Violation]) -> str | None:
    """The event's overridden rules: an event once dispatched past a rule stays flagged."""
    rows = (json.loads(previous) if previous else []) + [
        {"rule": v.rule, "message": v.message} for v in overridden]
    return json.dumps(rows) if rows else None


def _audit(store: Store, clock: Clock, actor: Actor, action: str, event_id: str,
           before: dict | None, after: Event, reason: str | None,
           overridden: Sequence[Violation]) -> None:
    with store.session() as session:
        audit.record(session, actor=actor.name, action=action, subject_type="event",
                     subject_id=event_id, before=before,
                     after=audit.snapshot(after), reason=reason if overridden else None,
                     clock=clock)
        if overridden:
            audit.record(session, actor=actor.name, action="event.override",
                         subject_type="event", subject_id=event_id, before=None,
                         after={"violations": [v.as_dict() for v in overridden],
                                "via": action}, reason=reason, clock=clock)


def _steps(request: EventRequest) -> list[event_intervals.Step] | None:
    if request.intervals is None:
        return None
    return [event_intervals.Step(timedelta(minutes=i.minutes), i.value) for i in request.intervals]


def default_targets(store: Store, program: Program, clock: Clock) -> list[str]:
    """An event without targets goes to every VEN of the program the VTN serves."""
    return [v.ven_id for v in store.vens(program.id)
            if ven_control.refusal_of(store, v, clock) is None]
