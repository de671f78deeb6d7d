"""Per-program performance, settlement and M&V (pure), with readers and
report writers at the edges (`csvio`, `report`, `store_adapter`).

Entry point: `settle(program, SettlementInput(...))` -> SeasonSettlement.
"""
from vtn.settlement.model import (  # noqa: F401
    EventKind, EventPerformance, EventRecord, EventStatus, OptOut, ParticipantInfo,
    ParticipantSettlement, RateClass, SeasonSettlement, SettlementInput, TelemetryInterval)
from vtn.settlement.params import PARAMS, params_for  # noqa: F401
from vtn.settlement.settle import settle, to_json_dict  # noqa: F401
