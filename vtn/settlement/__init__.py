"""Per-program performance, settlement and M&V (pure), with readers and
report writers at the edges (`csvio`, `report`, `store_adapter`).

Entry point: `settle(program, SettlementInput(...))` -> SeasonSettlement.
"""
from vtn.settlement.model import (
    EventKind, EventPerformance, EventRecord, EventStatus, OptOut, ParticipantInfo,
    ParticipantSettlement, RateClass, SeasonSettlement, SettlementInput, TelemetryFlag, TelemetryInterval)
from vtn.settlement.params import PARAMS, params_for
from vtn.settlement.settle import settle, to_json_dict

__all__ = [
    "EventKind", "EventPerformance", "EventRecord", "EventStatus", "OptOut", "ParticipantInfo",
    "ParticipantSettlement", "RateClass", "SeasonSettlement", "SettlementInput", "TelemetryFlag", "TelemetryInterval",
    "PARAMS", "params_for", "settle", "to_json_dict",
]
