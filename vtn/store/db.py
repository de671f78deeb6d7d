"""Engine, sessions and the queries the VTN services need.

SQLite file by default; PostgreSQL with a postgresql:// URL (psycopg 3). The
schema comes from the Alembic migrations, run when the Store opens a database.
"""
from __future__ import annotations

import json
from collections import namedtuple
import time
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import date, datetime
from typing import Iterable, Iterator, Sequence

from sqlalchemy import event as sa_event
from sqlalchemy import Connection, bindparam, delete, insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DisconnectionError, IntegrityError
from sqlmodel import Session, create_engine, select

from vtn.store import migrate
from vtn.store.models import (
    CANCELLED, COMPLETED, PENDING, Enrolment, Event, EventTarget, EventTransition, NonceRecord,
    Notice, ObjectChange, OptAvailability, OptSchedule, OutboundMessage, Participant,
    PlannerDecision, Program, PushEndpoint, ReportRegistration, ReportRequest, Resource,
    TelemetryPoint,
    TelemetryQuarantine, TelemetryRaw, TelemetryRevision, Ven)
from vtn.store.types import UTCDateTime  # noqa: F401  (re-exported)

DISTRIBUTE_EVENT = "oadrDistributeEvent"


def database_url(url: str) -> str:
    """postgresql:// means psycopg 3 here (SQLAlchemy would pick psycopg2)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def _sqlite_pragmas(engine) -> None:
    @sa_event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives the process being killed (SIGKILL); only an OS
        # crash or power loss can lose the last commits. Use PostgreSQL for more.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()


def _json_value(value) -> str:
    if isinstance(value, datetime):
        return json.dumps(value.isoformat())
    return json.dumps(value)


class _Prepared:
    """A statement of every signed message, run on the driver's own connection (sqlite3 or
    psycopg) inside the SQLAlchemy transaction: compiled once per dialect, with the column
    types' conversions, and none of SQLAlchemy's per-execution work (cache key, parameter
    and result set-up: ~40-60 us a statement, ~250 us for the nonce insert, against ~5 us).

    `build(dialect_name)` returns the Core statement (INSERT ... ON CONFLICT differs by
    dialect). Rows come back as named tuples of the statement's columns.

    Only reads and informational writes (a message's nonce, the VEN's last contact) may
    be _Prepared: on PostgreSQL they bypass the hook that makes a transaction's commit
    wait for the disk (`_commit_durably_what_matters`), so they alone are not durable.
    """

    def __init__(self, build):
        self._build = build
        self._by_dialect: dict[str, tuple] = {}

    def _compiled(self, dialect) -> tuple:
        compiled = self._by_dialect.get(dialect.name)
        if compiled is None:
            statement = self._build(dialect.name)
            sql = statement.compile(dialect=dialect)
            # dialect_impl: a TypeDecorator (UTCDateTime) over the dialect's own type, whose
            # conversions (SQLite's DATETIME strings) come first.
            binds = {name: param.type.dialect_impl(dialect).bind_processor(dialect)
                     for name, param in sql.binds.items()}
            literals = {name: param.value for name, param in sql.binds.items()
                        if not param.required}      # e.g. a LIMIT's value
            columns = list(getattr(statement, "exported_columns", ()))
            results = [column.type.dialect_impl(dialect).result_processor(dialect, None)
                       for column in columns]
            row = namedtuple("Row", [column.key for column in columns]) if columns else None
            compiled = self._by_dialect[dialect.name] = (sql.string, sql.positiontup, binds,
                                                         literals, results, row)
        return compiled

    def run(self, dialect, driver, **params) -> list:
        """Execute on `driver` (a DBAPI connection of `dialect`); the rows."""
        sql, order, binds, literals, results, row = self._compiled(dialect)
        values = {name: binds[name](value) if binds.get(name) else value
                  for name, value in {**literals, **params}.items()}
        cursor = driver.cursor()
        try:
            cursor.execute(sql, tuple(values[name] for name in order) if order else values)
            if row is None:
                return []
            return [row._make(convert(value) if convert else value
                              for convert, value in zip(results, fetched))
                    for fetched in cursor.fetchall()]
        finally:
            cursor.close()


# The per-message statements, built once.
_VEN, _ENROLMENT, _OUTBOUND = Ven.__table__, Enrolment.__table__, OutboundMessage.__table__
_NONCE = NonceRecord.__table__


def _ven_access(key):
    """A VEN's access columns and its enrolments' ends, the VEN found by `key` (a unique
    column): what the VTN checks before it answers the VEN."""
    return _Prepared(lambda _: select(
        _VEN.c.ven_id, _VEN.c.ven_name, _VEN.c.fingerprint, _VEN.c.registration_id,
        _VEN.c.device_kind, _VEN.c.disabled_at, _VEN.c.disabled_reason, _VEN.c.revoked_at,
        _ENROLMENT.c.id.label("enrolment_id"), _ENROLMENT.c.unenrolled_on)
        .select_from(_VEN.outerjoin(_ENROLMENT, _ENROLMENT.c.ven_id == _VEN.c.ven_id))
        .where(key == bindparam("key")))


_VEN_ACCESS = _ven_access(_VEN.c.ven_id)
_VEN_ACCESS_BY_FINGERPRINT = _ven_access(_VEN.c.fingerprint)
_EVENT, _TARGET = Event.__table__, EventTarget.__table__


def _given_events(ven_id, not_ended_before) -> tuple:
    """The conditions of a VEN's current events: not planned ones; not cancellations of
    events the VEN never received."""
    return (_TARGET.c.ven_id == ven_id, _EVENT.c.end_utc > not_ended_before,
            _EVENT.c.status != PENDING,
            (_EVENT.c.status != CANCELLED) | (_TARGET.c.delivered_modification >= 0))


# Most VENs asking for their events (oadrRequestEvent) have none: one prepared read says so.
_ANY_EVENT = _Prepared(lambda _: select(_TARGET.c.event_id)
                       .select_from(_TARGET.join(_EVENT, _EVENT.c.event_id == _TARGET.c.event_id))
                       .where(*_given_events(bindparam("ven_id"), bindparam("not_ended_before")))
                       .limit(1))
_REQUEST = ReportRequest.__table__
_ACTIVE_REQUESTS = _Prepared(lambda _: select(_REQUEST.c.report_request_id,
                                              _REQUEST.c.report_specifier_id)
                             .where(_REQUEST.c.ven_id == bindparam("ven_id"),
                                    _REQUEST.c.cancelled_at.is_(None))
                             .order_by(_REQUEST.c.created_at))
_TELEMETRY_INTERVAL = _Prepared(lambda _: select(Program.__table__.c.telemetry_interval_s)
                                .select_from(_VEN.join(Program.__table__, Program.__table__.c.program_id
                                                       == _VEN.c.program_id))
                                .where(_VEN.c.ven_id == bindparam("ven_id")))
# A registration is written durably: a Core statement, not _Prepared.
_REGISTRATION = (update(_VEN).where(_VEN.c.ven_id == bindparam("registering_ven"))
                 .values(registration_id=bindparam("new_registration"),
                         registered_at=bindparam("new_registered_at")))
_ACKNOWLEDGED = (update(_REQUEST)
                 .where(_REQUEST.c.ven_id == bindparam("acknowledging_ven"),
                        _REQUEST.c.report_request_id.in_(bindparam("acknowledged", expanding=True)),
                        _REQUEST.c.acknowledged_at.is_(None))
                 .values(acknowledged_at=bindparam("ack_at")))
_OFFERED = ReportRegistration.__table__
_OFFERED_BY = _Prepared(lambda _: select(_OFFERED.c.id, _OFFERED.c.report_specifier_id,
                                         _OFFERED.c.r_id)
                        .where(_OFFERED.c.ven_id == bindparam("ven_id")))
_PENDING = _Prepared(lambda _: select(_OUTBOUND.c.id)
                     .where(_OUTBOUND.c.ven_id == bindparam("ven_id"),
                            _OUTBOUND.c.delivered_at.is_(None))
                     .limit(1))
_SEEN = _Prepared(lambda _: update(_VEN).where(_VEN.c.ven_id == bindparam("seen_ven"))
                  .values(last_seen_at=bindparam("seen_at")))
# RETURNING, not rowcount: psycopg reports none for an insert that may skip.
_USE_NONCE = _Prepared(lambda dialect: (pg_insert if dialect == "postgresql" else sqlite_insert)(_NONCE)
                       .values(key=bindparam("key"), expires_at=bindparam("expires_at"))
                       .on_conflict_do_nothing(index_elements=["key"])
                       .returning(_NONCE.c.key))
# ... and the per-message ones of push delivery (vtn/push.py).
_PUSH = PushEndpoint.__table__
_MESSAGES_DELIVERED = (update(_OUTBOUND)
                       .where(_OUTBOUND.c.id.in_(bindparam("message_ids", expanding=True)),
                              _OUTBOUND.c.delivered_at.is_(None))
                       .values(delivered_at=bindparam("delivered")))
_PUSH_CONFIRMED = (update(_PUSH)
                   .where(_PUSH.c.ven_id == bindparam("push_ven"),
                          _PUSH.c.lease_owner == bindparam("owner"))
                   .values(lease_owner=None, lease_until=None, attempts=0, next_attempt_at=None,
                           failing_since=None, last_error=None))
# A pooled PostgreSQL connection idle this long is pinged before use (a server restart
# drops them all); one in steady use is not: a ping is a round trip per transaction.
PING_IDLE_S = 10.0


class _UnitOfWork(Session):
    """The ORM session of a Store.transaction(): store methods' commits become flushes."""

    def commit(self) -> None:
        self.flush()


class _Unit:
    """One Store.transaction(): a pooled driver connection, in a transaction from its
    first statement; a SQLAlchemy Connection on it only when a store method runs Core
    statements, and an ORM session on that only when one needs the ORM. A poll's
    statements are _Prepared, so it pays for neither (~50 us of the ~130 us of its
    store work)."""

    def __init__(self, engine):
        self.engine = engine
        self._driver = None
        self._connection: Connection | None = None
        self._session: _UnitOfWork | None = None

    @property
    def driver(self):
        """The pool's proxy of the driver (sqlite3 / psycopg) connection."""
        if self._driver is None:
            self._driver = self.engine.raw_connection()
        return self._driver

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            # The drivers begin their transaction implicitly: statements run on the driver
            # connection before this one are in the same transaction.
            self._connection = Connection(self.engine, connection=self.driver)
            self._connection.begin()
        return self._connection

    @property
    def session(self) -> _UnitOfWork:
        if self._session is None:
            # "rollback_only": the session never commits the connection's transaction;
            # the unit does, at its end.
            self._session = _UnitOfWork(bind=self.connection, expire_on_commit=False,
                                        join_transaction_mode="rollback_only")
        return self._session

    def commit(self) -> None:
        if self._session is not None:
            self._session.flush()
        if self._driver is None:
            return
        if self._connection is not None:
            self._connection.commit()
        else:
            self._driver.commit()

    def close(self, commit: bool) -> None:
        try:
            if commit:
                self.commit()
            elif self._connection is not None:
                self._connection.rollback()
            elif self._driver is not None:
                self._driver.rollback()
        finally:
            if self._session is not None:
                self._session.close()
            if self._connection is not None:
                self._connection.close()     # hands the driver connection back to the pool
            elif self._driver is not None:
                self._driver.close()


_UNIT: ContextVar[_Unit | None] = ContextVar("flexadr_store_unit", default=None)


def _commit_durably_what_matters(engine) -> None:
    """PostgreSQL: a transaction waits for its WAL flush at commit only if it wrote something
    through SQLAlchemy (the _Prepared nonce and last-contact writes are not seen by the
    hook, and are informational by construction). Every connection starts with
    synchronous_commit off; the first other write (ORM flush, Core statement, text or DDL) turns it on for its
    transaction. So a message that wrote only its nonce and the VEN's last contact (a poll
    with nothing queued, a query) does not block the worker's event loop on the disk (5 ms
    on a slow one) and costs no extra round trip; a crash can lose at most such rows of the
    last moment, consistently (a lost nonce: a replay of a message within its timestamp
    window, which mutual TLS hides, could pass once after a database crash)."""
    @sa_event.listens_for(engine, "connect")
    def _connected(dbapi_connection, _record):
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit TO OFF")
        dbapi_connection.commit()

    @sa_event.listens_for(engine, "before_cursor_execute")
    def _written(connection, cursor, _statement, _parameters, context, _executemany):
        if connection.info.get("durable") or _informational(context):
            return
        cursor.execute("SET LOCAL synchronous_commit TO ON")
        connection.info["durable"] = True

    @sa_event.listens_for(engine, "begin")
    @sa_event.listens_for(engine, "commit")
    @sa_event.listens_for(engine, "rollback")
    def _ended(connection):
        connection.info["durable"] = False

    @sa_event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection, record):
        record.info["durable"] = False      # the pool's reset ends any transaction


def _informational(context) -> bool:
    if context is None or context.isddl or context.is_text:
        return False
    return not (context.isinsert or context.isupdate or context.isdelete)   # a read


def _ping_when_idle(engine) -> None:
    """SQLAlchemy's pool_pre_ping pings at every checkout; this only after PING_IDLE_S."""
    @sa_event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection, record):
        record.info["checked_in_at"] = time.monotonic()

    @sa_event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy):
        if time.monotonic() - record.info.get("checked_in_at", 0.0) < PING_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as err:
            raise DisconnectionError("the database connection went away") from err  # pool retries


class Store:
    def __init__(self, url: str = "sqlite:///var/vtn.sqlite", migrate_schema: bool = True,
                 pool_size: int = 5):
        """pool_size: PostgreSQL connections kept open by this process (each VTN worker
        has its own pool; the server's max_connections bounds workers x pool_size)."""
        url = database_url(url)
        self.url = url
        is_sqlite = url.startswith("sqlite")
        connect_args = {"check_same_thread": False, "timeout": 30} if is_sqlite else {}
        pool = {} if is_sqlite else {"pool_size": pool_size, "max_overflow": pool_size}
        self.engine = create_engine(url, connect_args=connect_args, **pool)
        if is_sqlite:
            _sqlite_pragmas(self.engine)
        else:
            _ping_when_idle(self.engine)
            _commit_durably_what_matters(self.engine)
        if migrate_schema:
            migrate.upgrade(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        unit = _UNIT.get()
        if unit is not None and unit.engine is self.engine:
            yield unit.session   # inside transaction(): its commits flush the one transaction
            return
        with Session(self.engine, expire_on_commit=False) as session:
            yield session

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything the store writes inside the block is one database transaction:
        committed when the block ends, rolled back (all of it) when it raises.

        For one OpenADR request: a handler that fails half-way leaves nothing behind.
        Store methods keep their own `s.commit()`; inside the block it only flushes.
        """
        if _UNIT.get() is not None:
            yield
            return
        unit = _Unit(self.engine)
        token = _UNIT.set(unit)
        committed = False
        try:
            yield
            committed = True
        finally:
            _UNIT.reset(token)
            unit.close(commit=committed)

    @contextmanager
    def _connection(self):
        """A Core connection for the per-message queries: the transaction's if inside one,
        else its own, committed at the end. The ORM costs ~0.3-0.5 ms per query here;
        a prepared Core statement a tenth of that."""
        unit = _UNIT.get()
        if unit is not None and unit.engine is self.engine:
            yield unit.connection
            return
        with self.engine.begin() as connection:
            yield connection

    @contextmanager
    def _driver(self):
        """The driver connection for the _Prepared statements: the transaction's if inside
        one, else its own, committed at the end."""
        unit = _UNIT.get()
        if unit is not None and unit.engine is self.engine:
            yield unit.driver
            return
        with self.engine.begin() as connection:
            yield connection.connection

    def _run(self, statement: _Prepared, **params) -> list:
        with self._driver() as driver:
            return statement.run(self.engine.dialect, driver, **params)

    # --- programs and participants ------------------------------------------
    def upsert_program(self, program: Program) -> Program:
        with self.session() as s:
            s.merge(program)
            s.commit()
        return program

    def add_program_if_absent(self, program: Program) -> Program:
        """Insert the program's row unless it exists; the stored row. Two VTN processes
        starting on one database both add the programs: a plain INSERT (or merge's
        SELECT-then-INSERT) lets the second fail on the primary key."""
        dialect = self.engine.dialect.name
        insert_ = pg_insert if dialect == "postgresql" else sqlite_insert
        values = program.model_dump()
        with self.session() as s:
            s.exec(insert_(Program.__table__).values(**values)
                   .on_conflict_do_nothing(index_elements=["program_id"]))
            s.commit()
            return s.get(Program, program.program_id)

    def program(self, program_id: str) -> Program | None:
        with self.session() as s:
            return s.get(Program, program_id)

    def programs(self) -> Sequence[Program]:
        with self.session() as s:
            return s.exec(select(Program).order_by(Program.program_id)).all()

    def add_participant(self, participant: Participant) -> Participant:
        with self.session() as s:
            s.merge(participant)
            s.commit()
        return participant

    def participant(self, participant_id: str) -> Participant | None:
        with self.session() as s:
            return s.get(Participant, participant_id)

    # --- VENs ------------------------------------------------------------
    def enrol(self, ven: Ven, resources: Iterable[Resource] = ()) -> Ven:
        with self.session() as s:
            s.add(ven)
            s.flush()
            for resource in resources:
                s.add(resource)
            s.commit()
        return ven

    def ven(self, ven_id: str) -> Ven | None:
        with self.session() as s:
            return s.get(Ven, ven_id)

    def ven_with_enrolments(self, ven_id: str) -> tuple[tuple | None, Sequence[tuple]]:
        """A VEN's access columns and its enrolments' ends (ended ones too), in one indexed
        query: asked per message. Rows, read like a Ven and Enrolments (attribute access)."""
        return self._ven_access(_VEN_ACCESS, ven_id)

    def ven_with_enrolments_by_fingerprint(self, fingerprint: str
                                           ) -> tuple[tuple | None, Sequence[tuple]]:
        """As ven_with_enrolments, the VEN found by its certificate: a registration's."""
        return self._ven_access(_VEN_ACCESS_BY_FINGERPRINT, fingerprint)

    def _ven_access(self, statement: _Prepared, key: str) -> tuple[tuple | None, Sequence[tuple]]:
        rows = self._run(statement, key=key)
        if not rows:
            return None, []
        return rows[0], [row for row in rows if row.enrolment_id is not None]

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

    def telemetry_interval_s(self, ven_id: str) -> int | None:
        """The telemetry interval of the VEN's program, if both exist: one indexed query."""
        rows = self._run(_TELEMETRY_INTERVAL, ven_id=ven_id)
        return rows[0].telemetry_interval_s if rows else None

    def resources(self, ven_id: str) -> Sequence[Resource]:
        with self.session() as s:
            return s.exec(select(Resource).where(Resource.ven_id == ven_id)).all()

    def set_registration(self, ven_id: str, registration_id: str | None, at: datetime) -> None:
        """A Core statement (durable: not _Prepared): every VEN coming online writes it."""
        with self._connection() as connection:
            connection.execute(_REGISTRATION, {
                "registering_ven": ven_id, "new_registration": registration_id,
                "new_registered_at": at if registration_id else None})

    def set_access(self, ven_id: str, disabled_at: datetime | None, reason: str | None,
                   revoked_at: datetime | None = None) -> Ven:
        """Disable (disabled_at set) or enable a VEN, in one transaction. Disabling ends its
        registration and report requests: once enabled it registers afresh."""
        with self.session() as s:
            ven = s.get(Ven, ven_id)
            ven.disabled_at, ven.disabled_reason = disabled_at, reason
            ven.revoked_at = revoked_at or ven.revoked_at
            if disabled_at is not None:
                ven.registration_id, ven.registered_at = None, None
                s.exec(update(ReportRequest).where(ReportRequest.ven_id == ven_id,
                                                   ReportRequest.cancelled_at.is_(None))
                       .values(cancelled_at=disabled_at))
            s.add(ven)
            s.commit()
        return ven

    def remove_push_endpoint(self, ven_id: str) -> None:
        """A VEN registered for pull: it has no push address (any earlier one is dropped)."""
        with self._connection() as connection:
            connection.execute(delete(_PUSH).where(_PUSH.c.ven_id == ven_id))

    def seen(self, ven_id: str, at: datetime) -> None:
        """Last contact: informational, so PostgreSQL need not wait for the disk (unless
        it is written with a request's own data, in the request's transaction)."""
        with self._driver() as driver:
            _SEEN.run(self.engine.dialect, driver, seen_ven=ven_id, seen_at=at)

    # --- enrolments --------------------------------------------------------
    def add_enrolment(self, enrolment: Enrolment) -> Enrolment:
        with self.session() as s:
            s.add(enrolment)
            s.commit()
        return enrolment

    def enrolments(self, participant_id: str | None = None, ven_id: str | None = None,
                   active_only: bool = True) -> Sequence[Enrolment]:
        with self.session() as s:
            query = select(Enrolment).order_by(Enrolment.id)
            if participant_id is not None:
                query = query.where(Enrolment.participant_id == participant_id)
            if ven_id is not None:
                query = query.where(Enrolment.ven_id == ven_id)
            if active_only:
                query = query.where(Enrolment.unenrolled_on.is_(None))
            return s.exec(query).all()

    def household_enrolments(self, household_id: str) -> Sequence[tuple[Enrolment, Participant]]:
        with self.session() as s:
            query = (select(Enrolment, Participant).join(Participant)
                     .where(Participant.household_id == household_id,
                            Enrolment.unenrolled_on.is_(None)))
            return s.exec(query).all()

    # --- events ------------------------------------------------------------
    def add_event(self, event: Event, ven_ids: Sequence[str]) -> Event:
        """Store an event, its targets and its first transition; unless it is only planned
        (status pending), queue it for each target."""
        planned = event.status == PENDING
        with self.session() as s:
            s.add(event)
            s.flush()
            s.add(EventTransition(event_id=event.event_id, from_status=None, to_status=event.status,
                                  modification_number=event.modification_number,
                                  at=event.created_at, note="planned" if planned else "published"))
            _add_rows(s, EventTarget, [{"event_id": event.event_id, "ven_id": ven_id}
                                       for ven_id in ven_ids])
            if not planned:
                _queue_distribution(s, ven_ids, event.created_at)
            _changed(s, event.event_id, "CREATE", "planned" if planned else "published",
                     event.created_at)
            s.commit()
        return event

    def publish_planned(self, event_id: str, status: str, at: datetime) -> Event:
        """A planned (pending) event goes out: new status, transition, queued for its targets."""
        with self.session() as s:
            event = s.get(Event, event_id, with_for_update=True)
            s.add(EventTransition(event_id=event_id, from_status=event.status, to_status=status,
                                  modification_number=event.modification_number, at=at,
                                  note="published"))
            event.status = status
            event.created_at = at
            s.add(event)
            _queue_distribution(s, s.exec(select(EventTarget.ven_id)
                                          .where(EventTarget.event_id == event_id)).all(), at)
            _changed(s, event_id, "UPDATE", "published", at)
            s.commit()
            return event

    def event(self, event_id: str) -> Event | None:
        with self.session() as s:
            return s.get(Event, event_id)

    def events(self, status: str | None = None, program_id: str | None = None) -> Sequence[Event]:
        with self.session() as s:
            query = select(Event).order_by(Event.start_utc, Event.event_id)
            if status is not None:
                query = query.where(Event.status == status)
            if program_id is not None:
                query = query.where(Event.program_id == program_id)
            return s.exec(query).all()

    def open_events(self) -> Sequence[Event]:
        """Events that are neither completed nor cancelled."""
        with self.session() as s:
            return s.exec(select(Event).where(Event.status.not_in([CANCELLED, COMPLETED]))
                          .order_by(Event.start_utc)).all()

    def modify_event(self, event_id: str, at: datetime, note: str, **changes) -> Event:
        """Apply changes, bump the modification number, store the transition, queue for targets."""
        with self.session() as s:
            event = s.get(Event, event_id, with_for_update=True)
            before = event.status
            for name, value in changes.items():
                setattr(event, name, value)
            if before != PENDING:      # a planned event has not been sent: no new version
                event.modification_number += 1
            event.modified_at = at
            s.add(event)
            s.add(EventTransition(event_id=event_id, from_status=before, to_status=event.status,
                                  modification_number=event.modification_number, at=at, note=note))
            if before != PENDING:
                for target in s.exec(select(EventTarget).where(EventTarget.event_id == event_id)):
                    s.add(OutboundMessage(ven_id=target.ven_id, message_type=DISTRIBUTE_EVENT,
                                          created_at=at))
            _changed(s, event_id, "DELETE" if event.status == CANCELLED else "UPDATE", note, at)
            s.commit()
            return event

    def set_event_status(self, event_id: str, from_status: str, status: str,
                         at: datetime) -> bool:
        """A time-driven transition (far -> near -> active -> completed): no modification.

        Applied only if the event is still `from_status` (one UPDATE ... WHERE status =
        old): when two VTN workers tick at once, one transition is stored, not two.
        """
        if from_status == status:
            return False
        with self.session() as s:
            moved = s.exec(update(Event).where(Event.event_id == event_id,
                                               Event.status == from_status)
                           .values(status=status)).rowcount
            if moved != 1:      # already moved on (or cancelled) by someone else
                return False
            modification = s.exec(select(Event.modification_number)
                                  .where(Event.event_id == event_id)).one()
            s.add(EventTransition(event_id=event_id, from_status=from_status, to_status=status,
                                  modification_number=modification, at=at))
            s.commit()
            return True

    def transitions(self, event_id: str) -> Sequence[EventTransition]:
        with self.session() as s:
            return s.exec(select(EventTransition).where(EventTransition.event_id == event_id)
                          .order_by(EventTransition.id)).all()

    def events_for(self, ven_id: str, not_ended_before: datetime,
                   include_cancelled: bool = True) -> Sequence[Event]:
        if not self._run(_ANY_EVENT, ven_id=ven_id, not_ended_before=not_ended_before):
            return []
        with self.session() as s:
            query = (select(Event).join(EventTarget)
                     .where(*_given_events(ven_id, not_ended_before))
                     .order_by(Event.start_utc))
            if not include_cancelled:
                query = query.where(Event.status != CANCELLED)
            return s.exec(query).all()

    def undelivered(self, ven_id: str) -> Sequence[EventTarget]:
        with self.session() as s:
            query = (select(EventTarget).join(Event)
                     .where(EventTarget.ven_id == ven_id,
                            EventTarget.delivered_modification < Event.modification_number))
            return s.exec(query).all()

    def mark_delivered(self, ven_id: str, events: Sequence[Event]) -> None:
        if not events:
            return
        with self.session() as s:
            for event in events:
                target = s.get(EventTarget, (event.event_id, ven_id))
                target.delivered_modification = max(target.delivered_modification,
                                                    event.modification_number)
                s.add(target)
            s.commit()

    def record_opt(self, ven_id: str, event_id: str, opt_type: str, at: datetime,
                   source: str = "createdEvent") -> bool:
        """Store a VEN's answer to an event; False if the VEN is not a target of it.

        An opt-out that came from the participant (EiOpt or a notice link) is not
        overwritten by a later automatic optIn from oadrCreatedEvent.
        """
        with self.session() as s:
            target = s.get(EventTarget, (event_id, ven_id))
            if target is None:
                return False
            if (source == "createdEvent" and target.opt_type == "optOut"
                    and target.opt_source in ("eiOpt", "notice", "operator")):
                return True
            target.opt_type = opt_type
            target.opt_at = at
            target.opt_source = source
            s.add(target)
            s.commit()
            return True

    def target(self, event_id: str, ven_id: str) -> EventTarget | None:
        with self.session() as s:
            return s.get(EventTarget, (event_id, ven_id))

    def targets(self, event_id: str) -> Sequence[EventTarget]:
        with self.session() as s:
            return s.exec(select(EventTarget).where(EventTarget.event_id == event_id)
                          .order_by(EventTarget.ven_id)).all()

    def live_targets(self, event_ids: Sequence[str]) -> dict[str, set[str]]:
        """The target VENs of each of these events that is not cancelled, in one query
        (the dispatch rules' conflicts)."""
        if not event_ids:
            return {}
        with self.session() as s:
            rows = s.exec(select(EventTarget.event_id, EventTarget.ven_id).join(Event)
                          .where(Event.status != CANCELLED,
                                 EventTarget.event_id.in_(list(event_ids)))).all()
        targets: dict[str, set[str]] = {}
        for event_id, ven_id in rows:
            targets.setdefault(event_id, set()).add(ven_id)
        return targets

    def targets_of_ven(self, ven_id: str) -> Sequence[tuple[EventTarget, Event]]:
        with self.session() as s:
            return s.exec(select(EventTarget, Event).join(Event)
                          .where(EventTarget.ven_id == ven_id).order_by(Event.start_utc)).all()

    # --- EiOpt -------------------------------------------------------------
    def add_opt(self, opt: OptSchedule, availability: Sequence[tuple[datetime, datetime]]) -> bool:
        """Store an opt schedule; False if this VEN already sent this opt_id (a re-send)."""
        with self.session() as s:
            existing = s.exec(select(OptSchedule).where(OptSchedule.ven_id == opt.ven_id,
                                                        OptSchedule.opt_id == opt.opt_id)).first()
            if existing is not None:
                return False
            s.add(opt)
            s.flush()
            for start, end in availability:
                s.add(OptAvailability(opt_schedule_id=opt.id, start_utc=start, end_utc=end))
            try:
                s.commit()
            except IntegrityError:
                return False
            return True

    def cancel_opt(self, ven_id: str, opt_id: str, at: datetime) -> OptSchedule | None:
        with self.session() as s:
            opt = s.exec(select(OptSchedule).where(OptSchedule.ven_id == ven_id,
                                                   OptSchedule.opt_id == opt_id)).first()
            if opt is None:
                return None
            if opt.cancelled_at is None:
                opt.cancelled_at = at
                s.add(opt)
                s.commit()
            return opt

    def opts(self, ven_id: str | None = None, event_id: str | None = None) -> Sequence[OptSchedule]:
        with self.session() as s:
            query = select(OptSchedule).order_by(OptSchedule.id)
            if ven_id is not None:
                query = query.where(OptSchedule.ven_id == ven_id)
            if event_id is not None:
                query = query.where(OptSchedule.event_id == event_id)
            return s.exec(query).all()

    def availability(self, opt_schedule_id: int) -> Sequence[OptAvailability]:
        with self.session() as s:
            return s.exec(select(OptAvailability)
                          .where(OptAvailability.opt_schedule_id == opt_schedule_id)
                          .order_by(OptAvailability.start_utc)).all()

    # --- EiReport ----------------------------------------------------------
    def register_report(self, rows: Sequence[ReportRegistration]) -> None:
        """Replace what a VEN offered under these report specifiers (a re-registration).
        Core statements: this runs for every VEN coming online."""
        if not rows:
            return
        # One indexed read per VEN for the rows already there (none at a first registration).
        existing = {(old.report_specifier_id, old.r_id): old.id
                    for ven_id in {row.ven_id for row in rows}
                    for old in self._run(_OFFERED_BY, ven_id=ven_id)}
        with self._connection() as connection:
            new = []
            for row in rows:
                values = row.model_dump(exclude={"id"})
                row_id = existing.get((row.report_specifier_id, row.r_id))
                if row_id is None:
                    new.append(values)
                else:
                    connection.execute(update(_OFFERED).where(_OFFERED.c.id == row_id)
                                       .values(values))
            if new:
                connection.execute(insert(_OFFERED), new)

    def report_registrations(self, ven_id: str) -> Sequence[ReportRegistration]:
        with self.session() as s:
            return s.exec(select(ReportRegistration).where(ReportRegistration.ven_id == ven_id)
                          .order_by(ReportRegistration.id)).all()

    def add_report_request(self, request: ReportRequest, queue_at: datetime | None = None) -> None:
        """Store a report request; with queue_at, also queue it as oadrCreateReport for the poll."""
        with self._connection() as connection:
            connection.execute(insert(ReportRequest.__table__), request.model_dump())
            if queue_at is not None:
                connection.execute(insert(_OUTBOUND), {
                    "ven_id": request.ven_id, "message_type": "oadrCreateReport",
                    "payload": json.dumps({"report_request_id": request.report_request_id}),
                    "created_at": queue_at})

    def report_request(self, report_request_id: str) -> ReportRequest | None:
        with self.session() as s:
            return s.get(ReportRequest, report_request_id)

    def report_requests(self, ven_id: str, active_only: bool = False) -> Sequence[ReportRequest]:
        with self.session() as s:
            query = select(ReportRequest).where(ReportRequest.ven_id == ven_id)
            if active_only:
                query = query.where(ReportRequest.cancelled_at.is_(None))
            return s.exec(query.order_by(ReportRequest.created_at)).all()

    def active_report_specifiers(self, ven_id: str) -> Sequence[tuple]:
        """(report_request_id, report_specifier_id) of the VEN's requests not cancelled,
        oldest first: one indexed read per oadrRegisterReport."""
        return self._run(_ACTIVE_REQUESTS, ven_id=ven_id)

    def acknowledge_report_requests(self, ven_id: str, ids: Sequence[str], at: datetime) -> int:
        with self._connection() as connection:
            return connection.execute(_ACKNOWLEDGED, {"acknowledging_ven": ven_id,
                                                      "acknowledged": list(ids),
                                                      "ack_at": at}).rowcount

    def cancel_report_request(self, report_request_id: str, at: datetime) -> None:
        with self.session() as s:
            request = s.get(ReportRequest, report_request_id)
            if request is not None and request.cancelled_at is None:
                request.cancelled_at = at
                s.add(request)
                s.commit()

    # --- the poll queue ----------------------------------------------------
    def enqueue(self, ven_id: str, message_type: str, payload: dict, at: datetime) -> None:
        with self.session() as s:
            s.add(OutboundMessage(ven_id=ven_id, message_type=message_type,
                                  payload=json.dumps(payload), created_at=at))
            s.commit()

    def next_message(self, ven_id: str, at: datetime) -> OutboundMessage | None:
        """Claim the oldest undelivered message for a VEN (safe with several VTN processes).

        Queued event distributions are coalesced: one oadrDistributeEvent carries
        every current event, so all consecutive ones are claimed together.
        """
        if not self._run(_PENDING, ven_id=ven_id):
            return None     # most polls: one indexed lookup, no ORM
        while True:
            with self.session() as s:
                message = s.exec(select(OutboundMessage)
                                 .where(OutboundMessage.ven_id == ven_id,
                                        OutboundMessage.delivered_at.is_(None))
                                 .order_by(OutboundMessage.id)).first()
                if message is None:
                    return None
                claimed = s.exec(update(OutboundMessage)
                                 .where(OutboundMessage.id == message.id,
                                        OutboundMessage.delivered_at.is_(None))
                                 .values(delivered_at=at)).rowcount
                if claimed and message.message_type == DISTRIBUTE_EVENT:
                    following = s.exec(select(OutboundMessage)
                                       .where(OutboundMessage.ven_id == ven_id,
                                              OutboundMessage.delivered_at.is_(None),
                                              OutboundMessage.id > message.id)
                                       .order_by(OutboundMessage.id)).all()
                    for other in following:
                        if other.message_type != DISTRIBUTE_EVENT:
                            break
                        s.exec(update(OutboundMessage).where(OutboundMessage.id == other.id)
                               .values(delivered_at=at))
                s.commit()
                if claimed:
                    return message

    def set_delivered(self, message_ids: Sequence[int], at: datetime) -> None:
        """Queued messages handed to their VEN (those not already)."""
        with self._connection() as connection:
            connection.execute(_MESSAGES_DELIVERED, {"message_ids": list(message_ids),
                                                     "delivered": at})

    def push_confirmed(self, ven_id: str, lease_owner: str) -> None:
        """A push VEN confirmed what `lease_owner` claimed of its queue: the lease ends
        and the failure record is cleared (if the lease is still that owner's)."""
        with self._connection() as connection:
            connection.execute(_PUSH_CONFIRMED, {"push_ven": ven_id, "owner": lease_owner})

    def pending_messages(self, ven_id: str) -> Sequence[OutboundMessage]:
        with self.session() as s:
            return s.exec(select(OutboundMessage).where(OutboundMessage.ven_id == ven_id,
                                                        OutboundMessage.delivered_at.is_(None))
                          .order_by(OutboundMessage.id)).all()

    # --- telemetry ---------------------------------------------------------
    def record_telemetry(self, ven_id: str, interval_start: datetime, interval_end: datetime,
                         received_at: datetime | None = None, **values) -> None:
        """Store the quantities of one interval (first received wins, see record_points)."""
        self.record_points(ven_id, [(interval_start, interval_end, values)], received_at)

    def record_points(self, ven_id: str,
                      points: Sequence[tuple[datetime, datetime, dict]],
                      received_at: datetime | None = None,
                      report_request_id: str | None = None,
                      raw: Sequence[TelemetryRaw] = (),
                      quarantined: Sequence[TelemetryQuarantine] = ()) -> tuple[int, int]:
        """Store intervals (and a report's raw and quarantined values) in one
        transaction; returns (new rows, revisions).

        The first value received for an interval and quantity stays; a re-sent
        different value is appended as a TelemetryRevision (a re-sent equal
        value changes nothing), so nothing is ever overwritten.
        """
        for attempt in range(3):
            try:
                with self.session() as s:
                    counts = self._add_points(s, ven_id, points, received_at, report_request_id)
                    for row in (*raw, *quarantined):
                        # a fresh row per attempt: a failed flush may have given it an id
                        s.add(type(row)(**row.model_dump(exclude={"id"})))
                    s.commit()
                return counts
            except IntegrityError:
                # Another process stored the same interval first: retry, as a revision.
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    @staticmethod
    def _add_points(s: Session, ven_id: str, points: Sequence[tuple[datetime, datetime, dict]],
                    received_at: datetime | None, report_request_id: str | None) -> tuple[int, int]:
        new = revised = 0
        starts = [start for start, _, _ in points]
        existing = {p.interval_start: p for p in s.exec(select(TelemetryPoint).where(
            TelemetryPoint.ven_id == ven_id,
            TelemetryPoint.interval_start.in_(starts))).all()} if starts else {}
        for start, end, values in points:
            point = existing.get(start)
            if point is None:
                point = TelemetryPoint(ven_id=ven_id, interval_start=start, interval_end=end,
                                       received_at=received_at, **values)
                existing[start] = point
                new += 1
                s.add(point)
                continue
            changes = {"interval_end": (point.interval_end, end)} if point.interval_end != end else {}
            for name, value in values.items():
                first = getattr(point, name)
                if first is None:
                    setattr(point, name, value)      # a quantity not yet known: no revision
                elif first != value:
                    changes[name] = (first, value)
            for name, (first, value) in changes.items():
                s.add(TelemetryRevision(
                    ven_id=ven_id, interval_start=start, interval_end=end, quantity=name,
                    first_value=_json_value(first), value=_json_value(value),
                    report_request_id=report_request_id,
                    received_at=received_at or point.received_at or start))
                revised += 1
            s.add(point)
        return new, revised

    def revisions(self, ven_id: str | None = None) -> Sequence[TelemetryRevision]:
        return self._kept(TelemetryRevision, ven_id)

    def raw_telemetry(self, ven_id: str | None = None) -> Sequence[TelemetryRaw]:
        return self._kept(TelemetryRaw, ven_id)

    def quarantine(self, ven_id: str | None = None) -> Sequence[TelemetryQuarantine]:
        return self._kept(TelemetryQuarantine, ven_id)

    def _kept(self, model, ven_id: str | None):
        """Rows of an append-only telemetry table, in the order written."""
        with self.session() as s:
            query = select(model).order_by(model.id)
            if ven_id is not None:
                query = query.where(model.ven_id == ven_id)
            return s.exec(query).all()

    def telemetry(self, ven_id: str, start: datetime | None = None,
                  end: datetime | None = None) -> Sequence[TelemetryPoint]:
        with self.session() as s:
            query = select(TelemetryPoint).where(TelemetryPoint.ven_id == ven_id)
            if start is not None:
                query = query.where(TelemetryPoint.interval_end > start)
            if end is not None:
                query = query.where(TelemetryPoint.interval_start < end)
            return s.exec(query.order_by(TelemetryPoint.interval_start)).all()

    def last_telemetry(self, ven_id: str) -> TelemetryPoint | None:
        with self.session() as s:
            return s.exec(select(TelemetryPoint).where(TelemetryPoint.ven_id == ven_id)
                          .order_by(TelemetryPoint.interval_end.desc())).first()

    # --- notices -----------------------------------------------------------
    def add_notice(self, notice: Notice) -> bool:
        """Store a notice; False if this (VEN, event, kind) notice already exists."""
        with self.session() as s:
            s.add(notice)
            try:
                s.commit()
            except IntegrityError:
                return False
            return True

    def update_notice(self, notice_id: int, delivered: bool, error: str | None) -> None:
        with self.session() as s:
            notice = s.get(Notice, notice_id)
            notice.delivered, notice.error = delivered, error
            s.add(notice)
            s.commit()

    def notice_by_token(self, token: str) -> Notice | None:
        with self.session() as s:
            return s.exec(select(Notice).where(Notice.token == token)).first()

    def notices(self, ven_id: str | None = None, event_id: str | None = None,
                kind: str | None = None) -> Sequence[Notice]:
        with self.session() as s:
            query = select(Notice).order_by(Notice.id)
            if ven_id is not None:
                query = query.where(Notice.ven_id == ven_id)
            if event_id is not None:
                query = query.where(Notice.event_id == event_id)
            if kind is not None:
                query = query.where(Notice.kind == kind)
            return s.exec(query).all()

    # --- planner decisions -------------------------------------------------
    def record_decision(self, decision: PlannerDecision) -> None:
        """Keep the planner's latest decision for its program and day."""
        with self.session() as s:
            kept = s.exec(select(PlannerDecision).where(
                PlannerDecision.program_id == decision.program_id,
                PlannerDecision.day == decision.day)).first()
            if kept is not None:
                decision.id = kept.id
                decision = s.merge(decision)
            s.add(decision)
            s.commit()

    def decisions(self, program_id: str | None = None, since: date | None = None,
                  event_id: str | None = None) -> Sequence[PlannerDecision]:
        with self.session() as s:
            query = select(PlannerDecision).order_by(PlannerDecision.day,
                                                     PlannerDecision.program_id)
            if program_id is not None:
                query = query.where(PlannerDecision.program_id == program_id)
            if since is not None:
                query = query.where(PlannerDecision.day >= since)
            if event_id is not None:
                query = query.where(PlannerDecision.event_id == event_id)
            return s.exec(query).all()

    # --- replay protection -------------------------------------------------
    def use_nonce(self, key: str, expires_at: datetime) -> bool:
        """Record a nonce; False if any VTN process recorded it before (a replay).

        One insert on the primary key: O(1) whatever the table holds. Inside
        transaction() it is part of the request's transaction (one commit per message,
        not two: on PostgreSQL each commit waits for the disk); a request that is rolled
        back keeps no nonce, and its replay is refused for the same reason it was.
        A concurrent insert of the same key waits for the other transaction, then finds
        it; ON CONFLICT leaves the transaction usable either way.
        """
        return bool(self._run(_USE_NONCE, key=key, expires_at=expires_at))

    def prune_nonces(self, expired_before: datetime) -> int:
        """Drop the nonces whose messages the timestamp check alone now refuses."""
        with self.session() as s:
            removed = s.exec(delete(NonceRecord).where(NonceRecord.expires_at < expired_before))
            s.commit()
            return removed.rowcount

    def record_change(self, object_type: str, object_id: str, operation: str, at: datetime,
                      body: str, ven_id: str | None) -> None:
        """A change of an object only the 3.1 edge writes (report, subscription, ven,
        resource), as it was shown; call it inside the change's transaction()."""
        with self.session() as s:
            s.add(ObjectChange(object_type=object_type, object_id=object_id,
                               operation=operation, at=at, body=body, ven_id=ven_id))
            s.commit()


def _add_rows(session: Session, table, rows: list[dict]) -> None:
    """Many rows in one multi-row INSERT (executemany): publishing an event for 10,000 VENs
    adds 20,000 rows, ~10 s as ORM objects on PostgreSQL, a fraction of a second so; and
    every poll that comes in meanwhile misses the event until the commit."""
    if rows:
        session.execute(insert(table.__table__), rows)


def _queue_distribution(session: Session, ven_ids: Iterable[str], at: datetime) -> None:
    """An oadrDistributeEvent queued for each VEN: they get it at their next poll."""
    _add_rows(session, OutboundMessage, [{"ven_id": ven_id, "message_type": DISTRIBUTE_EVENT,
                                          "payload": "{}", "created_at": at}
                                         for ven_id in ven_ids])


def _changed(session: Session, event_id: str, operation: str, note: str, at: datetime) -> None:
    """Record the change in the transaction that makes it, for the 3.1 notifier (whichever
    edge, command or planner made it)."""
    session.add(ObjectChange(object_type="EVENT", object_id=event_id, operation=operation,
                             note=note, at=at))
