"""Settlement inputs and results: plain typed data, no I/O.

Inputs are what any source (CSV files an aggregator hands in, the VTN store)
must reduce to: events called, telemetry intervals, and what we know about each
participant. All datetimes are timezone-aware UTC.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class RateClass(enum.StrEnum):
    RESIDENTIAL = "residential"
    COMMERCIAL = "commercial"


class EventKind(enum.StrEnum):
    PEAK = "peak"               # an ordinary demand-response event
    FLEX_ALERT = "flex_alert"   # a declared grid emergency (BYOD export premium)


@dataclass(frozen=True)
class EventRecord:
    event_id: str
    start_utc: datetime
    end_utc: datetime
    kind: EventKind = EventKind.PEAK
    # Dispatched past the program's rules by an operator's override: the rules and the
    # reason. Settled like any event, and flagged in every output.
    override: str | None = None

    @property
    def duration_s(self) -> float:
        return (self.end_utc - self.start_utc).total_seconds()


@dataclass(frozen=True, slots=True)   # millions per season: slots halve the memory
class TelemetryInterval:
    """Interval-average power of one participant's device.

    `kw`: for discharge programs positive = discharge/export, for managed
    charging positive = charging load. Optional status columns: `plugged_in`
    (EVs), `soc_pct`, and `battery_kw` (the battery's own metered power, used
    instead of the site's net `kw` when present so solar curtailment earns
    nothing).
    """
    participant: str
    start_utc: datetime
    end_utc: datetime
    kw: float
    plugged_in: bool | None = None
    soc_pct: float | None = None
    battery_kw: float | None = None

    @property
    def duration_s(self) -> float:
        return (self.end_utc - self.start_utc).total_seconds()


@dataclass(frozen=True)
class ParticipantInfo:
    """What the program knows about an account beyond its telemetry."""
    participant: str
    rate_class: RateClass | None = None        # None: the run's default class
    enrolled_utc: datetime | None = None       # None: enrolled before the season
    installed_utc: datetime | None = None      # new installation: starts the rate lock
    lifetime_paid_usd: float = 0.0             # paid in earlier seasons (lifetime cap)
    capacity_kwh: float | None = None          # usable battery energy (BYOD cycles)
    enrolled_kw: float | None = None           # enrolled / inverter capacity


@dataclass(frozen=True)
class OptOut:
    participant: str
    event_id: str


@dataclass(frozen=True)
class TelemetryFlag:
    """Something about a participant's telemetry an auditor must see: the figures
    were computed anyway, by a documented rule (the first received value counts)."""
    participant: str
    kind: str          # 'overlap' (a later interval dropped) | 'revision' (a re-sent value ignored)
    detail: str


@dataclass(frozen=True)
class SettlementInput:
    events: tuple[EventRecord, ...]
    telemetry: tuple[TelemetryInterval, ...]
    participants: tuple[ParticipantInfo, ...] = ()   # empty: everyone in telemetry
    opt_outs: tuple[OptOut, ...] = ()
    flags: tuple[TelemetryFlag, ...] = ()


# ---------------------------------------------------------------- results

class EventStatus(enum.StrEnum):
    """Why an event's figure is what it is: the first thing an auditor asks."""
    FULL_DATA = "full_data"
    PARTIAL_DATA = "partial_data"     # some intervals missing: counted as 0 kW
    NO_DATA = "no_data"               # offline / missing: 0 kW
    OPTED_OUT = "opted_out"           # 0 kW
    NOT_ENROLLED = "not_enrolled"     # event before a late enrolment: 0 kW


@dataclass(frozen=True)
class EventPerformance:
    event_id: str
    kw: float                         # the program's performance figure for this event
    status: EventStatus
    covered_s: float = 0.0            # seconds of the event with telemetry
    baseline_kw: float | None = None  # managed charging: baseline charging load
    actual_kw: float | None = None    # managed charging: measured charging load


@dataclass(frozen=True)
class Payment:
    kind: str          # 'performance', 'enrolment', 'annual', 'flex_alert', 'upfront', 'clean_peak'
    amount_usd: float
    paid_in: str | None = None   # ISO date or 'YYYY-MM' when the program fixes only the month


@dataclass(frozen=True)
class ParticipantSettlement:
    participant: str
    events: tuple[EventPerformance, ...]
    season_kw: float
    payment_usd: float
    payments: tuple[Payment, ...] = ()
    details: dict = field(default_factory=dict)   # program-specific figures, JSON-ready


@dataclass(frozen=True)
class FleetPoint:
    start_utc: datetime
    kw: float
    baseline_kw: float


@dataclass(frozen=True)
class FleetEventSeries:
    """Fleet kW against baseline around one event, for the report's plots."""
    event_id: str
    start_utc: datetime
    end_utc: datetime
    points: tuple[FleetPoint, ...]
    kw: float                         # fleet performance: sum of participants' event kW


@dataclass(frozen=True)
class SeasonSettlement:
    program: str
    season: int
    timezone: str
    participants: tuple[ParticipantSettlement, ...]
    totals: dict
    fleet: tuple[FleetEventSeries, ...] = ()
    warnings: tuple[str, ...] = ()
    overrides: dict[str, str] = field(default_factory=dict)   # event_id -> EventRecord.override
