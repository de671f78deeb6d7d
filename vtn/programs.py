"""The VTN's view of a program: the rules of its program file (schedules/programs/*.toml)
that the VTN enforces (enrolment limits and conflicts, follow-up notice, opt-out limit),
copied into the store's `program` table on first use."""
from __future__ import annotations

from datetime import timedelta

from schedules import model
from vtn.store import Program



def program_row(program: model.Program) -> Program:
    """The store's copy of what the VTN enforces, from the program file."""
    limits = program.limits
    return Program(program_id=program.id, name=program.name,
                   market_context=program.market_context, dispatch=str(program.dispatch),
                   notice_s=int(program.notice.total_seconds()),
                   follow_up_s=int(program.followup.total_seconds()) if program.followup else None,
                   telemetry_interval_s=int(program.telemetry_interval / timedelta(seconds=1)),
                   one_device_per_household=limits.devices_per_household == 1,
                   min_charger_kw=limits.charger_min_kw, max_charger_kw=limits.charger_max_kw,
                   max_inverter_kw=limits.inverter_max_kw,
                   conflicts_with=",".join(program.conflicts_with),
                   max_opt_outs_per_season=program.opt_out_max_per_season)


def ensure_program(store, program_id: str) -> Program:
    """The program's row, created from its program file on first use."""
    row = store.program(program_id)
    if row is None:
        row = store.add_program_if_absent(program_row(model.load(program_id)))
    return row
