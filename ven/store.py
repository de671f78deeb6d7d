"""The agent's local SQLite store: the telemetry outbox and the events it accepted.

A reading is written here before anything is sent and deleted only once the
VTN acknowledged it, so a network outage or a restart loses nothing. An event
is kept whole (every signal and interval, as the VTN sent it), so an agent
restarted mid-event resumes the interval in force.
"""
from __future__ import annotations

import json
from datetime import datetime
from typing import Sequence

from sqlalchemy import UniqueConstraint, delete
from sqlmodel import Field, Session, SQLModel, create_engine, select

from adapters.base import Charge, ChargeDelay, Command, Discharge
from flexadr.dbtypes import UTCDateTime


class OutboxInterval(SQLModel, table=True):
    __tablename__ = "ven_outbox"
    __table_args__ = (UniqueConstraint("ven_name", "interval_start"),)
    id: int | None = Field(default=None, primary_key=True)
    ven_name: str = Field(index=True)
    interval_start: datetime = Field(sa_type=UTCDateTime)
    interval_end: datetime = Field(sa_type=UTCDateTime)
    kw: float | None = None          # None: the device did not answer, nothing is invented
    kwh: float | None = None
    soc_pct: float | None = None
    plugged_in: bool | None = None
    online: bool = True
    manual_override: bool = False


class AcceptedEvent(SQLModel, table=True):
    # Not "ven_event": that table held one signal value per event; a state file
    # from before keeps it, unread, and the VTN sends its events again.
    __tablename__ = "ven_event_schedule"
    ven_name: str = Field(primary_key=True)
    event_id: str = Field(primary_key=True)
    modification_number: int
    start: datetime = Field(sa_type=UTCDateTime)     # as executed (randomized start applied)
    end: datetime = Field(sa_type=UTCDateTime)
    event_json: str                                  # ven.events.to_json, as the VTN sent it
    start_offset_s: float = 0.0                      # this VEN's randomized start (startafter)
    baseline_kw: float = 0.0                         # device load when the event arrived
    opt: str
    reason: str
    owner_opted_out: bool = False
    cancelled: bool = False
    commands_json: str = "[]"


class MeterBaseline(SQLModel, table=True):
    """The export register at the first reading of a year: cycles are counted from it."""
    __tablename__ = "ven_meter_baseline"
    ven_name: str = Field(primary_key=True)
    year: int = Field(primary_key=True)
    kwh_exported: float


_TABLES = [OutboxInterval.__table__, AcceptedEvent.__table__, MeterBaseline.__table__]
_COMMANDS = {"charge_delay": ChargeDelay, "discharge": Discharge, "charge": Charge}
_KINDS = {cls: kind for kind, cls in _COMMANDS.items()}


def commands_to_json(commands: Sequence[Command]) -> str:
    def one(command: Command) -> dict:
        kind = _KINDS[type(command)]
        fields = {k: v.isoformat() if isinstance(v, datetime) else v
                  for k, v in vars(command).items()}
        return {"kind": kind, **fields}
    return json.dumps([one(c) for c in commands])


def commands_from_json(text: str) -> list[Command]:
    commands = []
    for item in json.loads(text):
        cls = _COMMANDS[item.pop("kind")]
        item["start"] = datetime.fromisoformat(item["start"])
        item["end"] = datetime.fromisoformat(item["end"])
        commands.append(cls(**item))
    return commands


class LocalDatabase:
    """One SQLite file (or any SQLAlchemy URL) shared by every agent of a process."""

    def __init__(self, url: str):
        connect_args = {"check_same_thread": False} if url.startswith("sqlite") else {}
        self.engine = create_engine(url, connect_args=connect_args)
        SQLModel.metadata.create_all(self.engine, tables=_TABLES)

    def for_ven(self, ven_name: str) -> "LocalStore":
        return LocalStore(self, ven_name)


class LocalStore:
    """One agent's rows of the local database."""

    def __init__(self, database: LocalDatabase, ven_name: str):
        self.engine = database.engine
        self.ven_name = ven_name

    def _session(self) -> Session:
        return Session(self.engine, expire_on_commit=False)

    # --- outbox --------------------------------------------------------------
    def add_interval(self, interval: OutboxInterval) -> None:
        """Keep an interval until acknowledged; the same interval twice is stored once."""
        interval.ven_name = self.ven_name
        with self._session() as s:
            exists = s.exec(select(OutboxInterval.id).where(
                OutboxInterval.ven_name == self.ven_name,
                OutboxInterval.interval_start == interval.interval_start)).first()
            if exists is None:
                s.add(interval)
                s.commit()

    def oldest_intervals(self, limit: int) -> Sequence[OutboxInterval]:
        with self._session() as s:
            return s.exec(select(OutboxInterval).where(OutboxInterval.ven_name == self.ven_name)
                          .order_by(OutboxInterval.interval_start).limit(limit)).all()

    def acknowledge(self, ids: Sequence[int]) -> None:
        with self._session() as s:
            s.exec(delete(OutboxInterval).where(OutboxInterval.id.in_(ids)))
            s.commit()

    def backlog(self) -> int:
        with self._session() as s:
            return len(s.exec(select(OutboxInterval.id).where(
                OutboxInterval.ven_name == self.ven_name)).all())

    # --- events --------------------------------------------------------------
    def save_event(self, event: AcceptedEvent) -> None:
        event.ven_name = self.ven_name
        with self._session() as s:
            s.merge(event)
            s.commit()

    def event(self, event_id: str) -> AcceptedEvent | None:
        with self._session() as s:
            return s.get(AcceptedEvent, (self.ven_name, event_id))

    def events_not_ended(self, now: datetime) -> Sequence[AcceptedEvent]:
        with self._session() as s:
            return s.exec(select(AcceptedEvent).where(AcceptedEvent.ven_name == self.ven_name,
                                                      AcceptedEvent.end > now)
                          .order_by(AcceptedEvent.start)).all()

    # --- cycle counting --------------------------------------------------------
    def exported_at_year_start(self, year: int, kwh_exported_now: float) -> float:
        """The year's baseline of the export register, recorded at first sight."""
        with self._session() as s:
            baseline = s.get(MeterBaseline, (self.ven_name, year))
            if baseline is None:
                baseline = MeterBaseline(ven_name=self.ven_name, year=year,
                                         kwh_exported=kwh_exported_now)
                s.add(baseline)
                s.commit()
            return baseline.kwh_exported
