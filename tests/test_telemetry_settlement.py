"""Settlement from the store when a VEN's telemetry is odd: overlapping intervals and
revisions are resolved by one documented rule (the first received value counts) and
flagged on that participant; everyone else settles as if nothing happened."""
import argparse
import json
from datetime import datetime, timedelta, timezone

from vtn.commands import settle as settle_cmd
from vtn.settlement import TelemetryInterval
from vtn.settlement.validate import first_received
from vtn.store import Event, Ven

T = datetime(2026, 7, 20, 19, tzinfo=timezone.utc)       # e1 19:00-21:00Z
Q = timedelta(minutes=15)
R = datetime(2026, 7, 20, 21, 30, tzinfo=timezone.utc)    # when the VTN received things


def _settle(database_url, capsys) -> dict:
    parser = argparse.ArgumentParser()
    settle_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["settle", "--program", "connected_solutions", "--season", "2026",
                              "--database", database_url])
    assert args.func(args) == 0
    return json.loads(capsys.readouterr().out)


def _fleet(store):
    for ven_id in ("v1", "v2"):
        store.enrol(Ven(ven_id=ven_id, ven_name=ven_id, fingerprint=ven_id,
                        program_id="connected_solutions", device_kind="battery"))
    store.add_event(Event(event_id="e1", program_id="connected_solutions", market_context="m",
                          signal_name="LOAD_DISPATCH", signal_type="setpoint", signal_value=5.0,
                          start_utc=T, end_utc=T + 8 * Q,
                          created_at=datetime(2026, 7, 1, tzinfo=timezone.utc)), ["v1", "v2"])
    for i in range(8):              # v2: -4 kW (4 kW of discharge) for the whole event
        store.record_points("v2", [(T + i * Q, T + (i + 1) * Q, {"kw": -4.0})], received_at=R)


def test_overlapping_intervals_are_flagged_and_block_no_one(store, database_url, capsys):
    _fleet(store)
    # v1: -2 kW over the event, and later an interval overlapping two of them claiming -9 kW.
    store.record_points("v1", [(T + i * Q, T + (i + 1) * Q, {"kw": -2.0}) for i in range(8)],
                        received_at=R)
    store.record_points("v1", [(T + Q + Q / 3, T + 2 * Q + Q / 3, {"kw": -9.0})],
                        received_at=R + timedelta(minutes=5))
    doc = _settle(database_url, capsys)
    v1, v2 = doc["participants"]
    assert [e["kw"] for e in v1["events"]] == [2.0]       # the later, overlapping claim: not counted
    assert [e["kw"] for e in v2["events"]] == [4.0]
    assert v2["telemetry_flags"] == []
    (flag,) = v1["telemetry_flags"]
    assert flag.startswith("overlap: interval 2026-07-20T19:20:00+00:00..2026-07-20T19:35:00+00:00 "
                           "overlaps the first received 2026-07-20T19:15:00+00:00")
    assert doc["warnings"][-1] == "v1: 1 telemetry flag(s) (overlap): the first received value counts"


def test_a_revision_is_settled_at_its_first_value_and_flagged(store, database_url, capsys):
    _fleet(store)
    store.record_points("v1", [(T + i * Q, T + (i + 1) * Q, {"kw": -2.0}) for i in range(8)],
                        received_at=R)
    assert store.record_points("v1", [(T, T + Q, {"kw": -9.0})],
                               received_at=R + timedelta(hours=1)) == (0, 1)
    doc = _settle(database_url, capsys)
    v1, v2 = doc["participants"]
    assert [e["kw"] for e in v1["events"]] == [2.0] and [e["kw"] for e in v2["events"]] == [4.0]
    (flag,) = v1["telemetry_flags"]
    assert flag == ("revision: kw of 2026-07-20T19:00:00+00:00 re-sent as -9.0 at "
                    "2026-07-20T22:30:00+00:00: the first received -2.0 counts")


def test_first_received_keeps_the_earlier_of_each_overlap_only():
    def iv(participant, start_q, end_q):
        return TelemetryInterval(participant, T + start_q * Q, T + end_q * Q, 1.0)
    rows = [iv("a", 0, 1), iv("a", 1, 2), iv("b", 0, 4),      # received in this order
            iv("a", 0.5, 1.5),                                 # overlaps both of a's: dropped
            iv("b", 0, 4),                                     # a duplicate: dropped
            iv("a", 2, 3)]                                     # touches, does not overlap
    assert first_received(rows) == [(0, 3), (2, 4)]
    # Received the other way round, the long interval is the one kept.
    assert first_received([iv("a", 0.5, 1.5), iv("a", 0, 1), iv("a", 1, 2)]) == [(0, 1), (0, 2)]
