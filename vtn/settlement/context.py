"""What every program's settlement of one season shares."""
from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from vtn.settlement.model import EventRecord, RateClass


@dataclass(frozen=True)
class SeasonContext:
    season: int                              # local calendar year of the events
    tz: ZoneInfo                             # the program's time zone
    events: tuple[EventRecord, ...]          # events called, sorted by start
    default_rate_class: RateClass = RateClass.RESIDENTIAL


def usd(amount: float) -> float:
    """Money to the cent (+ 0.0 turns -0.0 into 0.0)."""
    return round(amount + 0.0, 2)
