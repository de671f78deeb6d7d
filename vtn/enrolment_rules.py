"""Enrolment rules of the programs (pure): may this device join this program?"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from vtn.store import Enrolment, Program


@dataclass(frozen=True)
class EnrolmentRequest:
    participant_id: str
    household_id: str
    program_id: str
    ven_id: str
    device_kind: str
    charger_kw: float | None = None
    inverter_kw: float | None = None


@dataclass(frozen=True)
class Refusal:
    rule: str
    reason: str


def check(program: Program, request: EnrolmentRequest,
          household_enrolments: Sequence[Enrolment],
          device_enrolments: Sequence[Enrolment],
          programs: Mapping[str, Program] | None = None) -> list[Refusal]:
    """Every rule the request breaks; empty when it may be enrolled.

    household_enrolments: active enrolments of the request's household (any program);
    device_enrolments: active enrolments of the same device (VEN) in any program;
    programs: the programs of those enrolments (a conflict declared on either side counts).
    """
    refusals = []
    if program.one_device_per_household:
        same = [e for e in household_enrolments
                if e.program_id == program.program_id and e.ven_id != request.ven_id]
        if same:
            refusals.append(Refusal("one_device_per_household",
                                    f"household {request.household_id} already has a managed "
                                    f"device in {program.program_id} ({same[0].ven_id})"))
    if program.min_charger_kw is not None or program.max_charger_kw is not None:
        low = program.min_charger_kw or 0.0
        high = program.max_charger_kw or float("inf")
        if request.charger_kw is None:
            refusals.append(Refusal("charger_power_range",
                                    f"charger power is required ({low}-{high} kW)"))
        elif not low <= request.charger_kw <= high:
            refusals.append(Refusal("charger_power_range",
                                    f"charger power {request.charger_kw} kW is outside "
                                    f"{low}-{high} kW"))
    if program.max_inverter_kw is not None and request.inverter_kw is not None \
            and request.inverter_kw > program.max_inverter_kw:
        refusals.append(Refusal("inverter_capacity",
                                f"inverter capacity {request.inverter_kw} kW exceeds "
                                f"{program.max_inverter_kw} kW"))
    conflicts = {p for p in program.conflicts_with.split(",") if p}
    for other in (programs or {}).values():
        if program.program_id in other.conflicts_with.split(","):
            conflicts.add(other.program_id)
    clash = [e for e in device_enrolments if e.program_id in conflicts]
    if clash:
        refusals.append(Refusal("program_conflict",
                                f"device {request.ven_id} is in {clash[0].program_id}, which "
                                f"excludes {program.program_id} (managed charging vs battery "
                                f"discharge)"))
    duplicate = [e for e in device_enrolments if e.program_id == program.program_id]
    if duplicate:
        refusals.append(Refusal("already_enrolled",
                                f"device {request.ven_id} is already in {program.program_id}"))
    return refusals
