"""The VTN's view of a program: its file (schedules/) plus the operational rules the VTN enforces.

Program files carry the event rules; the enrolment and notice rules below come
from the programs' published terms (shared/PROGRAMS.md) and are kept by the VTN.
"""
from __future__ import annotations

from datetime import timedelta

from schedules import model
from vtn.store import Program

HOUR_S = 3600
RULES: dict[str, dict] = {
    # Efficiency Maine EV managed charging: one device per household, 2.8-19.2 kW chargers,
    # follow-up notice 4 h before start, more than 12 opt-outs a season may cost the payment.
    "managed_charging": dict(follow_up_s=4 * HOUR_S, one_device_per_household=True,
                             min_charger_kw=2.8, max_charger_kw=19.2,
                             conflicts_with="connected_solutions", max_opt_outs_per_season=12),
    # ConnectedSolutions: inverters of 50 kW or less; a managed-charging device may not also
    # be in this discharge program.
    "connected_solutions": dict(max_inverter_kw=50.0, conflicts_with="managed_charging"),
}


def program_row(program: model.Program) -> Program:
    rules = RULES.get(program.id, {})
    return Program(program_id=program.id, name=program.name,
                   market_context=program.market_context, dispatch=str(program.dispatch),
                   notice_s=int(program.notice.total_seconds()),
                   telemetry_interval_s=int(program.telemetry_interval / timedelta(seconds=1)),
                   **rules)


def ensure_program(store, program_id: str) -> Program:
    """The program's row, created from its program file on first use."""
    row = store.program(program_id)
    if row is None:
        row = store.upsert_program(program_row(model.load(program_id)))
    return row
