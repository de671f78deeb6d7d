"""Events with a profile of values: stored, fitted when the event moves, sent as 2.0b
intervals (uid 0..n, back to back, summing to the active period) to a stock VEN, with
ECDSA P-256 and RSA-2048 certificates."""
import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from certs.pki import ensure_dev_pki
from flexadr.clock import SystemClock
from schedules import model
from test_openadr_20b import Stock, eventually, started_vtn
from vtn import lifecycle
from vtn.event_intervals import ScheduleError, Step, checked, fit, loads
from vtn.store import Ven

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
PROFILE = [Step(HOUR, 5.0), Step(HOUR, 2.0), Step(HOUR, 4.0)]


def test_a_schedule_must_cover_the_event_exactly_with_finite_values():
    assert checked(PROFILE, 3 * HOUR) == PROFILE
    for steps, duration in [(PROFILE, 2 * HOUR), ([], HOUR), ([Step(HOUR, float("inf"))], HOUR),
                            ([Step(HOUR, float("nan"))], HOUR), ([Step(-HOUR, 1.0)], -HOUR)]:
        with pytest.raises(ScheduleError):
            checked(steps, duration)


@given(st.lists(st.tuples(st.integers(1, 240), st.floats(-50, 50)), min_size=1, max_size=6),
       st.integers(1, 24 * 60))
def test_a_fitted_schedule_covers_the_new_duration_and_keeps_its_start(pairs, minutes):
    steps = [Step(timedelta(minutes=m), v) for m, v in pairs]
    duration = timedelta(minutes=minutes)
    fitted = checked(fit(steps, duration), duration)
    assert fitted[0].value == steps[0].value
    # Everything before the new end is unchanged.
    assert all(a == b for a, b in zip(fitted[:-1], steps))


def test_cutting_an_event_short_drops_the_intervals_past_its_new_end(store):
    start = datetime.now(timezone.utc) + HOUR
    store.enrol(Ven(ven_id="v", ven_name="v", fingerprint="f", program_id="connected_solutions",
                    device_kind="battery"))
    event = lifecycle.publish(store, model.load("connected_solutions"), start, start + 3 * HOUR,
                              ["v"], SystemClock(), steps=PROFILE)
    cut = lifecycle.modify(store, event.event_id, SystemClock(), end_utc=start + 90 * MINUTE)
    assert loads(cut.interval_schedule, cut.signal_value, cut.end_utc - cut.start_utc) == [
        Step(HOUR, 5.0), Step(timedelta(minutes=30), 2.0)]
    with pytest.raises(lifecycle.EventOutsideRules):
        lifecycle.publish(store, model.load("connected_solutions"), start, start + 2 * HOUR,
                          ["v"], SystemClock(), steps=PROFILE)


def _signal_intervals(event):
    signal = event["event_signals"][0]
    return [(i["uid"], i["dtstart"], i["duration"], i["signal_payload"]) for i in signal["intervals"]]


@pytest.fixture(params=["ecdsa", "rsa"])
async def keyed_vtn(request, tmp_path, store):
    """Our VTN and a stock VEN's certificate, both ECDSA P-256 or both RSA-2048."""
    pki = ensure_dev_pki(tmp_path / "pki", ["stock-1"], key_type=request.param)
    store.enrol(Ven(ven_id="stock-1", ven_name="stock-1", fingerprint=pki.vens["stock-1"].fingerprint,
                    program_id="connected_solutions", device_kind="battery"))
    server, url = await started_vtn(store, pki)
    yield server, pki, url
    await server.stop()


@pytest.mark.parametrize("program_id, profile", [
    ("connected_solutions", [5.0, 2.0, 4.0]),
    ("managed_charging", [0.5, 0.25, 1.0]),
])
async def test_a_stock_ven_receives_every_interval(keyed_vtn, vtn_sent_messages, program_id,
                                                   profile):
    server, pki, url = keyed_vtn
    store = server.store
    start = datetime.now(timezone.utc).replace(microsecond=0) + HOUR
    event = lifecycle.publish(store, model.load(program_id), start, start + 3 * HOUR, ["stock-1"],
                              SystemClock(), steps=[Step(HOUR, v) for v in profile])
    stock = Stock("stock-1", pki, url)
    await asyncio.wait_for(stock.client.run(), 20)
    try:
        await eventually(lambda: stock.events, what="event received")
    finally:
        await stock.client.stop()
    assert _signal_intervals(stock.events[0]) == [
        (uid, start + uid * HOUR, HOUR, value) for uid, value in enumerate(profile)]
    assert stock.events[0]["event_signals"][0]["signal_name"] == event.signal_name
