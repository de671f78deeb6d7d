"""Engine, sessions and the queries the VTN services need.

SQLite file by default; any SQLAlchemy URL (e.g. postgresql://) works.
"""
from __future__ import annotations

from contextlib import contextmanager
from datetime import datetime
from typing import Iterator, Sequence

from sqlalchemy import event as sa_event
from sqlmodel import Session, SQLModel, create_engine, select

from vtn.store.models import Event, EventTarget, TelemetryPoint, Ven
from vtn.store.types import UTCDateTime  # noqa: F401  (re-exported)


def _enable_sqlite_fks(engine) -> None:
    @sa_event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()


class Store:
    def __init__(self, url: str = "sqlite:///var/vtn.sqlite"):
        is_sqlite = url.startswith("sqlite")
        self.engine = create_engine(url, connect_args={"check_same_thread": False} if is_sqlite else {})
        if is_sqlite:
            _enable_sqlite_fks(self.engine)
        SQLModel.metadata.create_all(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    # --- VENs ------------------------------------------------------------
    def enrol(self, ven: Ven) -> Ven:
        with self.session() as s:
            s.add(ven)
            s.commit()
        return ven

    def ven(self, ven_id: str) -> Ven | None:
        with self.session() as s:
            return s.get(Ven, ven_id)

    def ven_by_fingerprint(self, fingerprint: str) -> Ven | None:
        with self.session() as s:
            return s.exec(select(Ven).where(Ven.fingerprint == fingerprint)).first()

    def ven_by_name(self, ven_name: str) -> Ven | None:
        with self.session() as s:
            return s.exec(select(Ven).where(Ven.ven_name == ven_name)).first()

    def vens(self, program_id: str | None = None) -> Sequence[Ven]:
        with self.session() as s:
            query = select(Ven).order_by(Ven.ven_id)
            if program_id is not None:
                query = query.where(Ven.program_id == program_id)
            return s.exec(query).all()

    def set_registration(self, ven_id: str, registration_id: str | None, at: datetime) -> None:
        with self.session() as s:
            ven = s.get(Ven, ven_id)
            ven.registration_id = registration_id
            ven.registered_at = at if registration_id else None
            s.add(ven)
            s.commit()

    # --- events ------------------------------------------------------------
    def add_event(self, event: Event, ven_ids: Sequence[str]) -> Event:
        with self.session() as s:
            s.add(event)
            s.flush()
            for ven_id in ven_ids:
                s.add(EventTarget(event_id=event.event_id, ven_id=ven_id))
            s.commit()
        return event

    def event(self, event_id: str) -> Event | None:
        with self.session() as s:
            return s.get(Event, event_id)

    def events_for(self, ven_id: str, not_ended_before: datetime) -> Sequence[Event]:
        with self.session() as s:
            query = (select(Event).join(EventTarget)
                     .where(EventTarget.ven_id == ven_id, Event.end_utc > not_ended_before)
                     .order_by(Event.start_utc))
            return s.exec(query).all()

    def undelivered(self, ven_id: str) -> Sequence[EventTarget]:
        with self.session() as s:
            query = (select(EventTarget).join(Event)
                     .where(EventTarget.ven_id == ven_id,
                            EventTarget.delivered_modification < Event.modification_number))
            return s.exec(query).all()

    def mark_delivered(self, ven_id: str, events: Sequence[Event]) -> None:
        with self.session() as s:
            for event in events:
                target = s.get(EventTarget, (event.event_id, ven_id))
                target.delivered_modification = event.modification_number
                s.add(target)
            s.commit()

    def record_opt(self, ven_id: str, event_id: str, opt_type: str, at: datetime) -> bool:
        """Store a VEN's answer to an event; False if the VEN is not a target of it."""
        with self.session() as s:
            target = s.get(EventTarget, (event_id, ven_id))
            if target is None:
                return False
            target.opt_type = opt_type
            target.opt_at = at
            s.add(target)
            s.commit()
            return True

    def targets(self, event_id: str) -> Sequence[EventTarget]:
        with self.session() as s:
            return s.exec(select(EventTarget).where(EventTarget.event_id == event_id)
                          .order_by(EventTarget.ven_id)).all()

    # --- telemetry ---------------------------------------------------------
    def record_telemetry(self, ven_id: str, interval_start: datetime, interval_end: datetime,
                         **values: float) -> None:
        """Upsert one quantity (kw, kwh or soc_pct) of one interval: a re-sent report changes nothing."""
        with self.session() as s:
            point = s.exec(select(TelemetryPoint).where(
                TelemetryPoint.ven_id == ven_id,
                TelemetryPoint.interval_start == interval_start)).first()
            if point is None:
                point = TelemetryPoint(ven_id=ven_id, interval_start=interval_start,
                                       interval_end=interval_end)
            for name, value in values.items():
                setattr(point, name, value)
            s.add(point)
            s.commit()

    def telemetry(self, ven_id: str, start: datetime | None = None,
                  end: datetime | None = None) -> Sequence[TelemetryPoint]:
        with self.session() as s:
            query = select(TelemetryPoint).where(TelemetryPoint.ven_id == ven_id)
            if start is not None:
                query = query.where(TelemetryPoint.interval_end > start)
            if end is not None:
                query = query.where(TelemetryPoint.interval_start < end)
            return s.exec(query.order_by(TelemetryPoint.interval_start)).all()
