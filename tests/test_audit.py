"""The audit trail: one row per change, in the change's transaction, queried by who/what/when."""
from datetime import datetime, timedelta, timezone

import pytest

from flexadr.clock import ManualClock
from vtn import audit
from vtn.store import Participant

T0 = datetime(2026, 7, 1, 12, 0, tzinfo=timezone.utc)


def test_a_row_is_written_in_the_callers_transaction_and_read_back(store):
    clock = ManualClock(T0)
    with store.transaction():
        store.add_participant(Participant(participant_id="p1", name="One", household_id="h1"))
        with store.session() as s:
            audit.record(s, actor="cli:ops", action="participant.create",
                         subject_type="participant", subject_id="p1", before=None,
                         after={"name": "One", "at": T0}, reason="new customer", clock=clock)
    with store.session() as s:
        [row] = audit.query(s, actor="cli:ops")
    assert (row.at, row.action, row.subject_id, row.reason) == (
        T0, "participant.create", "p1", "new customer")
    assert audit.as_dict(row)["after"] == {"name": "One", "at": T0.isoformat()}
    assert audit.as_dict(row)["before"] is None


def test_a_rolled_back_change_leaves_neither_the_change_nor_its_row(store):
    with pytest.raises(RuntimeError), store.transaction():
        store.add_participant(Participant(participant_id="p1", name="One", household_id="h1"))
        with store.session() as s:
            audit.record(s, actor="admin-token", action="participant.create",
                         subject_type="participant", subject_id="p1", before=None, after={})
        raise RuntimeError("refused half-way")
    with store.session() as s:
        assert audit.query(s) == []
    assert store.participant("p1") is None


def test_query_filters_by_actor_action_subject_and_time(store):
    clock = ManualClock(T0)
    with store.transaction(), store.session() as s:
        for actor, action in (("a", "event.create"), ("b", "event.cancel"), ("a", "ven.disable")):
            audit.record(s, actor=actor, action=action, subject_type=action.split(".")[0],
                         subject_id="x", before={}, after={}, clock=clock)
            clock.advance(timedelta(hours=1))
    with store.session() as s:
        assert [r.action for r in audit.query(s, actor="a")] == ["event.create", "ven.disable"]
        assert [r.action for r in audit.query(s, subject_type="event")] == [
            "event.create", "event.cancel"]
        assert [r.action for r in audit.query(s, since=T0 + timedelta(hours=1),
                                               until=T0 + timedelta(hours=2))] == ["event.cancel"]
        assert [r.action for r in audit.query(s, action="ven.disable")] == ["ven.disable"]
        assert len(audit.query(s, limit=2)) == 2
