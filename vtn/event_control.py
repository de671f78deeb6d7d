"""Operator event actions (admin API and CLI): validated input in, a stored event out.

Everything is checked before anything is written, so a refusal leaves the store as it was.
"""
from __future__ import annotations

from datetime import timedelta

from flexadr.clock import Clock
from schedules import model
from schedules.model import Program
from vtn import event_intervals, lifecycle, ven_control
from vtn.operator_input import (EventChange, EventRequest, InputError, Problem, enforce,
                                interval_problems, setpoint_problems, target_problems,
                                timing_problems)
from vtn.store import Event, Store


def load_program(program_id: str) -> Program:
    try:
        return model.load(program_id)
    except (FileNotFoundError, model.ProgramError) as err:
        raise InputError.one("program_id", f"no program {program_id}: {err}") from None


def create(store: Store, clock: Clock, request: EventRequest, program: Program) -> Event:
    now = clock.now()
    end = request.end_utc
    ven_ids = request.ven_ids or _default_targets(store, program, clock)
    profile = _steps(request)
    problems = ((interval_problems(program, request.intervals) if profile is not None
                 else setpoint_problems(program, request.setpoint_kw, creating=True))
                + timing_problems(program, request.start, end, now)
                + target_problems(program, ven_ids, *_target_facts(store, ven_ids, clock)))
    if not ven_ids:
        raise InputError.one("ven_ids", f"program {program.id} has no enabled VEN to send to")
    enforce(problems, request.force)
    try:
        return lifecycle.publish(store, program, request.start, end, ven_ids, clock,
                                 setpoint_kw=request.setpoint_kw, test_event=request.test_event,
                                 planned=request.plan, steps=profile,
                                 forced_reason=_reason(request, problems))
    except lifecycle.EventOutsideRules as err:
        raise InputError.one("start", str(err)) from None


def change(store: Store, clock: Clock, event_id: str, request: EventChange) -> Event:
    """Modify an event; lifecycle.EventNotChangeable if it is unknown, over or cancelled."""
    event = store.event(event_id)
    if event is None:
        raise lifecycle.EventNotChangeable(f"no event {event_id}")
    program = load_program(event.program_id)
    start, end = request.start or event.start_utc, request.end or event.end_utc
    problems = setpoint_problems(program, request.setpoint_kw, creating=False)
    if end <= start:
        problems.append(Problem("end", "the event ends before it starts", False))
    elif request.start is not None or request.end is not None:
        problems += timing_problems(program, start, end, clock.now(),
                                    check_start=request.start is not None)
    enforce(problems, request.force)
    try:
        return lifecycle.modify(store, event_id, clock, start_utc=request.start,
                                end_utc=request.end, signal_value=request.setpoint_kw,
                                forced_reason=_reason(request, problems))
    except lifecycle.EventOutsideRules as err:
        raise InputError.one("end", str(err)) from None


def _steps(request: EventRequest) -> list[event_intervals.Step] | None:
    if request.intervals is None:
        return None
    return [event_intervals.Step(timedelta(minutes=i.minutes), i.value) for i in request.intervals]


def _reason(request, problems) -> str | None:
    """Stored with the event only when force actually overrode a rule."""
    overridden = [p for p in problems if p.forceable]
    if not (request.force and overridden):
        return None
    return f"{request.force_reason} [overrode: {'; '.join(p.problem for p in overridden)}]"


def _default_targets(store: Store, program: Program, clock: Clock) -> list[str]:
    return [v.ven_id for v in store.vens(program.id)
            if ven_control.refusal_of(store, v, clock) is None]


def _target_facts(store: Store, ven_ids, clock: Clock):
    programs_of, refused = {}, {}
    for ven_id in ven_ids:
        ven = store.ven(ven_id)
        if ven is None:
            programs_of[ven_id] = None
            continue
        programs_of[ven_id] = {ven.program_id} | {e.program_id for e in
                                                  store.enrolments(ven_id=ven_id)}
        why = ven_control.refusal_of(store, ven, clock)
        if why is not None:
            refused[ven_id] = why
    return programs_of, refused
