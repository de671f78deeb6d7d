"""SQLModel tables of the VTN. Every datetime column is UTC (see UTCDateTime)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from vtn.store.types import UTCDateTime


class Ven(SQLModel, table=True):
    """An enrolled VEN. Enrolment (name, fingerprint, program) comes first, registration later."""
    ven_id: str = Field(primary_key=True)
    ven_name: str = Field(unique=True, index=True)
    fingerprint: str = Field(unique=True, index=True)
    program_id: str = Field(index=True)
    device_kind: str
    registration_id: str | None = None
    registered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Event(SQLModel, table=True):
    event_id: str = Field(primary_key=True)
    program_id: str = Field(index=True)
    market_context: str
    signal_name: str
    signal_type: str
    signal_value: float
    signal_unit: str | None = None
    start_utc: datetime = Field(sa_type=UTCDateTime)
    end_utc: datetime = Field(sa_type=UTCDateTime)
    modification_number: int = 0
    cancelled: bool = False
    test_event: bool = False
    created_at: datetime = Field(sa_type=UTCDateTime)


class EventTarget(SQLModel, table=True):
    """One VEN's view of one event: what was delivered and what it answered."""
    event_id: str = Field(foreign_key="event.event_id", primary_key=True)
    ven_id: str = Field(foreign_key="ven.ven_id", primary_key=True)
    delivered_modification: int = -1
    opt_type: str | None = None
    opt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class TelemetryPoint(SQLModel, table=True):
    """One reporting interval of one VEN; kw is power into the device (charging > 0)."""
    __table_args__ = (UniqueConstraint("ven_id", "interval_start"),)
    id: int | None = Field(default=None, primary_key=True)
    ven_id: str = Field(foreign_key="ven.ven_id", index=True)
    interval_start: datetime = Field(sa_type=UTCDateTime)
    interval_end: datetime = Field(sa_type=UTCDateTime)
    kw: float | None = None
    kwh: float | None = None
    soc_pct: float | None = None
