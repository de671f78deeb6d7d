"""The store: schema from the migrations, idempotent telemetry, queued messages, transitions."""
import os
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import event as sa_event
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from flexadr.clock import ManualClock
from tests.conftest import TEST_DATABASE_ENV
from schedules import model
from vtn import lifecycle
from vtn.store import Store, Ven, migrate
from vtn.store.models import vtn_metadata

T0 = datetime(2026, 7, 1, 16, 0, tzinfo=timezone.utc)


def _ven(store, name="ven-1", program="connected_solutions"):
    return store.enrol(Ven(ven_id=name, ven_name=name, fingerprint=f"fp-{name}",
                           program_id=program, device_kind="battery"))


def test_migrations_build_exactly_the_models(store):
    assert migrate.current(store.engine) == migrate.head()
    with store.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), vtn_metadata())
    assert diff == []


def test_reopening_a_database_keeps_its_rows(database_url):
    first = Store(database_url)
    _ven(first)
    first.close()
    again = Store(database_url)
    assert again.ven("ven-1").fingerprint == "fp-ven-1"
    again.close()


def test_a_resent_interval_is_stored_once_and_merges_quantities(store):
    _ven(store)
    end = T0 + timedelta(minutes=15)
    store.record_points("ven-1", [(T0, end, {"kw": 2.0, "kwh": 0.5})])
    store.record_points("ven-1", [(T0, end, {"kw": 2.0, "kwh": 0.5})])
    store.record_points("ven-1", [(T0, end, {"soc_pct": 55.0, "plugged_in": True})])
    points = store.telemetry("ven-1")
    assert len(points) == 1
    assert (points[0].kw, points[0].kwh, points[0].soc_pct, points[0].plugged_in) == (
        2.0, 0.5, 55.0, True)
    assert points[0].interval_start == T0 and points[0].interval_end == end


def test_naive_datetimes_are_refused_and_nothing_is_stored(store):
    _ven(store)
    with pytest.raises(Exception):
        store.record_points("ven-1", [(T0.replace(tzinfo=None), T0, {"kw": 1.0})])
    assert store.telemetry("ven-1") == []


def test_lifecycle_transitions_are_stored_with_their_times(store):
    clock = ManualClock(T0 - timedelta(hours=24))
    _ven(store)
    program = model.load("connected_solutions")
    event = lifecycle.publish(store, program, T0, T0 + timedelta(hours=2), ["ven-1"], clock,
                              setpoint_kw=5)
    assert event.status == "far"
    clock.set(T0 - timedelta(seconds=30))
    assert lifecycle.advance(store, clock) == [(event.event_id, "near")]
    clock.set(T0 + timedelta(minutes=1))
    lifecycle.advance(store, clock)
    clock.set(T0 + timedelta(hours=3))
    lifecycle.advance(store, clock)
    assert lifecycle.advance(store, clock) == []
    steps = [(t.from_status, t.to_status, t.at) for t in store.transitions(event.event_id)]
    assert steps == [(None, "far", T0 - timedelta(hours=24)),
                     ("far", "near", T0 - timedelta(seconds=30)),
                     ("near", "active", T0 + timedelta(minutes=1)),
                     ("active", "completed", T0 + timedelta(hours=3))]
    with pytest.raises(lifecycle.EventNotChangeable):
        lifecycle.cancel(store, event.event_id, clock)
    assert store.event(event.event_id).status == "completed"


def test_modification_and_cancellation_bump_the_number_and_queue_the_event(store):
    clock = ManualClock(T0 - timedelta(hours=24))
    _ven(store)
    program = model.load("connected_solutions")
    event = lifecycle.publish(store, program, T0, T0 + timedelta(hours=2), ["ven-1"], clock,
                              setpoint_kw=5)
    assert [m.message_type for m in store.pending_messages("ven-1")] == ["oadrDistributeEvent"]
    assert store.next_message("ven-1", clock.now()).message_type == "oadrDistributeEvent"
    assert store.next_message("ven-1", clock.now()) is None
    modified = lifecycle.modify(store, event.event_id, clock, signal_value=7.5)
    assert (modified.modification_number, modified.signal_value) == (1, 7.5)
    store.enqueue("ven-1", "oadrRequestReregistration", {}, clock.now())
    cancelled = lifecycle.cancel(store, event.event_id, clock)
    assert (cancelled.modification_number, cancelled.status) == (2, "cancelled")
    # In order; the two consecutive distributions would not be coalesced across the other message.
    assert [store.next_message("ven-1", clock.now()).message_type for _ in range(3)] == [
        "oadrDistributeEvent", "oadrRequestReregistration", "oadrDistributeEvent"]
    assert [t.note for t in store.transitions(event.event_id)] == ["published", "modified",
                                                                   "cancelled"]


def test_an_event_with_bad_times_is_refused_and_nothing_is_stored(store):
    clock = ManualClock(T0)
    _ven(store)
    program = model.load("connected_solutions")
    with pytest.raises(lifecycle.EventOutsideRules):
        lifecycle.publish(store, program, T0, T0 - timedelta(hours=1), ["ven-1"], clock,
                          setpoint_kw=5)
    with pytest.raises(lifecycle.EventOutsideRules):
        lifecycle.publish(store, program, T0 - timedelta(hours=3), T0 - timedelta(hours=1),
                          ["ven-1"], clock, setpoint_kw=5)
    assert store.events() == [] and store.pending_messages("ven-1") == []


def test_a_planned_event_stays_invisible_until_published(store):
    clock = ManualClock(T0 - timedelta(hours=24))
    _ven(store)
    program = model.load("connected_solutions")
    event = lifecycle.publish(store, program, T0, T0 + timedelta(hours=2), ["ven-1"], clock,
                              setpoint_kw=5, planned=True)
    assert event.status == "pending" and store.pending_messages("ven-1") == []
    assert store.events_for("ven-1", clock.now()) == []
    assert lifecycle.advance(store, clock) == []
    lifecycle.modify(store, event.event_id, clock, signal_value=6.0)
    assert store.event(event.event_id).modification_number == 0   # never sent: no new version
    clock.advance(timedelta(hours=1))
    published = lifecycle.publish_planned(store, event.event_id, clock)
    assert (published.status, published.signal_value) == ("far", 6.0)
    assert [m.message_type for m in store.pending_messages("ven-1")] == ["oadrDistributeEvent"]
    assert [e.event_id for e in store.events_for("ven-1", clock.now())] == [event.event_id]
    assert [(t.from_status, t.to_status, t.note) for t in store.transitions(event.event_id)] == [
        (None, "pending", "planned"), ("pending", "pending", "modified"),
        ("pending", "far", "published")]
    with pytest.raises(lifecycle.EventNotChangeable):
        lifecycle.publish_planned(store, event.event_id, clock)


def test_a_cancelled_event_the_ven_never_received_is_not_sent(store):
    clock = ManualClock(T0 - timedelta(hours=24))
    _ven(store)
    event = lifecycle.publish(store, model.load("connected_solutions"), T0,
                              T0 + timedelta(hours=2), ["ven-1"], clock, setpoint_kw=5)
    lifecycle.cancel(store, event.event_id, clock)
    assert store.events_for("ven-1", clock.now()) == []


def test_a_pre_migration_database_is_refused_with_a_clear_message(tmp_path):
    from sqlalchemy import create_engine, text
    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE ven (ven_id VARCHAR PRIMARY KEY)"))
        connection.execute(text("INSERT INTO ven VALUES ('kept')"))
    engine.dispose()
    with pytest.raises(migrate.SchemaNotManaged, match="before schema migrations"):
        Store(url)
    engine = create_engine(url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT ven_id FROM ven")).scalars().all() == ["kept"]
    engine.dispose()


postgresql_only = pytest.mark.skipif(
    not os.environ.get(TEST_DATABASE_ENV, "").startswith("postgres"),
    reason=f"needs a PostgreSQL server ({TEST_DATABASE_ENV}; CI's second pass sets it)")


def _synchronous_commits(store, monkeypatch) -> list[bool]:
    """Per transaction of `store` since the call: whether it waited for the WAL flush."""
    from vtn.store import db
    commits: list[bool] = []

    def record(driver_connection):
        with driver_connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            commits.append(cursor.fetchone()[0] == "on")

    @sa_event.listens_for(store.engine, "commit")
    def _commit(connection):
        record(connection.connection.driver_connection)

    # A transaction() of _Prepared statements alone commits on the driver connection,
    # past SQLAlchemy's events.
    driver_commit = db._Unit.commit

    def unit_commit(unit):
        if unit._connection is None and unit._driver is not None:
            record(unit._driver.driver_connection)
        driver_commit(unit)
    monkeypatch.setattr(db._Unit, "commit", unit_commit)
    return commits


@postgresql_only
def test_a_message_that_wrote_only_its_nonce_and_last_contact_does_not_wait_for_the_disk(store,
                                                                                          monkeypatch):
    _ven(store)
    commits = _synchronous_commits(store, monkeypatch)
    expires = datetime.now(timezone.utc) + timedelta(minutes=5)
    with store.transaction():           # a poll with nothing queued
        assert store.use_nonce("n-1", expires)
        store.seen("ven-1", T0)
    with store.transaction():           # a registration: its data is durable
        assert store.use_nonce("n-2", expires)
        store.seen("ven-1", T0)
        store.set_registration("ven-1", "reg-1", T0)
    with store.transaction():           # a Core write counts as much as an ORM one
        assert store.use_nonce("n-3", expires)
        store.enqueue("ven-1", "oadrRequestReregistration", {}, T0)
    store.seen("ven-1", T0 + timedelta(seconds=1))      # on its own
    store.enqueue("ven-1", "oadrRequestReregistration", {}, T0)     # outside a transaction()
    assert commits == [False, True, True, False, True]
    assert store.ven("ven-1").registration_id == "reg-1"
    assert store.ven("ven-1").last_seen_at == T0 + timedelta(seconds=1)
    assert not store.use_nonce("n-1", expires)          # committed all the same
    assert len(store.pending_messages("ven-1")) == 2


@postgresql_only
def test_a_pooled_connection_the_server_dropped_while_idle_is_replaced_unnoticed(store,
                                                                                  monkeypatch):
    import psycopg

    from vtn.store import db
    _ven(store)
    with store.engine.connect() as connection:     # the pooled connection, back in the pool
        pid = connection.exec_driver_sql("SELECT pg_backend_pid()").scalar()
    with psycopg.connect(store.url.replace("postgresql+psycopg://", "postgresql://"),
                         autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
    monkeypatch.setattr(db, "PING_IDLE_S", 0.0)    # it has been idle long enough
    assert store.ven("ven-1").ven_name == "ven-1"
