"""Events with several intervals, both ways: a 3.1 event's intervals become the stored
interval schedule the 2.0b edge sends as several intervals, and an event made with
`vtn events create --intervals` reads back over 3.1 with every interval. Every 3.1
response is checked against the vendored YAML (tests/test_openadr31_api.py)."""
from datetime import datetime, timedelta, timezone

from tests.test_cli import run, vtn_toml  # noqa: F401  (a fixture)
from schedules import model
from tests.test_openadr31_api import (allowed_start, api, assert_problem,  # noqa: F401 (fixture)
                                      start_api)
from tests.hostile_peer import snapshot
from vtn import oadr_events
from vtn.event_intervals import Step, loads

HOUR = timedelta(hours=1)


def _start() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=2)


def _interval(n, value, payload="DISPATCH_SETPOINT", **period):
    interval = {"id": n, "payloads": [{"type": payload, "values": [value]}]}
    if period:
        interval["intervalPeriod"] = period
    return interval


def _schedule(store, event_id):
    event = store.event(event_id)
    return loads(event.interval_schedule, event.signal_value, event.end_utc - event.start_utc)


def _20b_intervals(store, event_id):
    event = store.event(event_id)
    signal = oadr_events.to_oadr(event, "ven-a", datetime.now(timezone.utc)).event_signals[0]
    return [(i.uid, i.dtstart, i.duration, i.signal_payload) for i in signal.intervals]


async def test_a_31_event_with_several_intervals_is_the_stored_schedule(api, store):
    start = allowed_start("connected_solutions", 0)      # a day and length the rules accept
    # The User Guide's form: the event's period is every interval's default, the second
    # interval says its own duration and follows the first.
    body = {"programID": "connected_solutions", "targets": ["ven-a"],
            "intervalPeriod": {"start": start.isoformat(), "duration": "PT1H"},
            "intervals": [_interval(0, 5.0), _interval(1, 2.0, duration="PT30M"),
                          _interval(2, 4.0, duration="PT1H30M")]}
    _, event = await api.call("POST", "/events", client="bl", expect=201, json=body)
    assert _schedule(store, event["id"]) == [Step(HOUR, 5.0), Step(HOUR / 2, 2.0),
                                             Step(1.5 * HOUR, 4.0)]
    stored = store.event(event["id"])
    assert (stored.start_utc, stored.end_utc) == (start, start + 3 * HOUR)
    assert _20b_intervals(store, event["id"]) == [
        (0, start, HOUR, 5.0), (1, start + HOUR, HOUR / 2, 2.0),
        (2, start + 1.5 * HOUR, 1.5 * HOUR, 4.0)]

    # Read back, uneven intervals each carry their own period; a VEN sees the same.
    for client in ("bl", "ven-a-client"):
        _, seen = await api.call("GET", f"/events/{event['id']}", "/events/{eventID}",
                                 client=client, expect=200)
        assert [(i["id"], i["intervalPeriod"], i["payloads"][0]["values"])
                for i in seen["intervals"]] == [
            (0, {"start": _z(start), "duration": "PT1H"}, [5.0]),
            (1, {"start": _z(start + HOUR), "duration": "PT30M"}, [2.0]),
            (2, {"start": _z(start + 1.5 * HOUR), "duration": "PT1H30M"}, [4.0])]

    # A modification with absolute, back-to-back starts replaces the schedule.
    changed = {**body, "intervalPeriod": None, "intervals": [
        _interval(0, 3.0, start=start.isoformat(), duration="PT1H"),
        _interval(1, 1.0, start=(start + HOUR).isoformat(), duration="PT1H")]}
    _, seen = await api.call("PUT", f"/events/{event['id']}", "/events/{eventID}",
                             client="bl", expect=200, json=changed)
    assert _schedule(store, event["id"]) == [Step(HOUR, 3.0), Step(HOUR, 1.0)]
    assert store.event(event["id"]).modification_number == 1
    # Even intervals need only the event's period.
    assert seen["intervalPeriod"] == {"start": _z(start), "duration": "PT1H"}
    assert [("intervalPeriod" in i, i["payloads"][0]["values"]) for i in seen["intervals"]] == [
        (False, [3.0]), (False, [1.0])]


async def test_capacity_limits_per_interval_are_fractions_in_20b(api, store):
    start = allowed_start("managed_charging", 0)
    half = min(model.load("managed_charging").durations) / 2
    body = {"programID": "managed_charging",
            "intervalPeriod": {"start": start.isoformat(),
                               "duration": f"PT{int(half.total_seconds())}S"},
            "intervals": [_interval(0, 0, "IMPORT_CAPACITY_LIMIT"),
                          _interval(1, 0, "IMPORT_CAPACITY_LIMIT")]}
    _, event = await api.call("POST", "/events", client="bl", expect=201, json=body)
    assert [v for *_, v in _20b_intervals(store, event["id"])] == [0.0, 0.0]


async def test_bad_multi_interval_bodies_are_400_naming_the_interval(api, store):
    start = _start()
    period = {"start": start.isoformat(), "duration": "PT1H"}

    def body(*intervals, **extra):
        return {"programID": "connected_solutions", "intervalPeriod": period,
                "intervals": list(intervals), **extra}
    cases = [
        # a gap: the second interval starts two hours in, not where the first ends
        (body(_interval(0, 5.0), _interval(1, 2.0, start=(start + 2 * HOUR).isoformat())),
         "intervals.1.intervalPeriod.start"),
        (body(_interval(0, 5.0), _interval(1, "high")), "intervals.1.payloads.0.values"),
        (body(_interval(0, 5.0), _interval(1, 2.0, "SIMPLE")), "intervals.1.payloads.0.type"),
        (body(_interval(0, 5.0), _interval(1, 2.0, duration="PT0S")),
         "intervals.1.intervalPeriod.duration"),
        (body(_interval(0, 5.0), _interval(1, 2.0), duration="PT3H"), "duration"),
        ({"programID": "connected_solutions", "intervals": [
            _interval(0, 5.0, start=start.isoformat(), duration="PT1H"), _interval(1, 2.0)]},
         "intervals.1.intervalPeriod.duration"),
        ({"programID": "managed_charging", "intervalPeriod": period, "intervals": [
            _interval(0, 0, "IMPORT_CAPACITY_LIMIT"), _interval(1, 50, "IMPORT_CAPACITY_LIMIT")]},
         "intervals.1.payloads.0.values"),       # the program always sends 0
    ]
    before = snapshot(store)
    for bad, field in cases:
        _, problem = await api.call("POST", "/events", client="bl", json=bad, expect=400)
        assert_problem(problem, 400, field)
    assert snapshot(store) == before


async def test_an_event_made_with_the_cli_reads_back_over_31_with_every_interval(
        vtn_toml, store, capsys):  # noqa: F811
    from tests.test_openadr31_api import enrol
    enrol(store, "ven-a")
    start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=1)
    code, out, _ = run(capsys, "events", "create", "--config", str(vtn_toml), "--program",
                       "connected_solutions", "--start", start.isoformat(),
                       "--minutes", "180", "--intervals", "60:5,60:2,60:4", "--override", "a CLI test")
    assert code == 0, out
    event_id = out.split()[1]
    server, api31 = await start_api(store, ("ven-a",))
    try:
        for client in ("bl", "ven-a-client"):
            _, seen = await api31.call("GET", f"/events/{event_id}", "/events/{eventID}",
                                       client=client, expect=200)
            assert seen["intervalPeriod"] == {"start": _z(start), "duration": "PT1H"}
            assert [(i["id"], i["payloads"]) for i in seen["intervals"]] == [
                (n, [{"type": "DISPATCH_SETPOINT", "values": [v]}])
                for n, v in enumerate([5.0, 2.0, 4.0])]
    finally:
        await api31.session.close()
        await server.stop()


def _z(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")
