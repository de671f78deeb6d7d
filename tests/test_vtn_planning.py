"""The VTN plans tomorrow's events from the real ISO-NE data and publishes them with notice."""
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from flexadr.clock import ManualClock
from schedules import model
from schedules.forecast import from_epoch_s
from schedules.planner import decision_moment
from vtn.planning import PlannerSources, publish_due, run_once
from vtn.store import PENDING, Ven

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SOURCES = PlannerSources(load_csv=DATA / "isone_hourly_load_2015-07_2019-12.csv",
                         weather_csv=DATA / "boston_logan_daily_weather_2010-2019.csv")


@pytest.fixture(scope="module")
def peak_day_2018():
    from schedules.sources import read_isone_csv
    program = model.load("connected_solutions")
    load = read_isone_csv(SOURCES.load_csv, program.timezone).load
    year = np.array([from_epoch_s(t).year for t in load.t])
    mw = np.where(year == 2018, load.mw, -np.inf)
    peak = from_epoch_s(int(load.t[int(np.nanargmax(mw))]))
    return program, peak


def _enrol(store, program_id="connected_solutions"):
    store.enrol(Ven(ven_id="ven-1", ven_name="ven-1", fingerprint="AA:BB", program_id=program_id,
                    device_kind="battery"))


def test_the_annual_peak_day_is_planned_pending_and_published_at_its_notice(store, peak_day_2018):
    program, peak_utc = peak_day_2018
    _enrol(store)
    day = peak_utc.astimezone(program.timezone).date()
    clock = ManualClock(decision_moment(program, day) - timedelta(minutes=5))

    planned, published = run_once(store, {program.id: program}, SOURCES, clock)

    (event,) = planned
    assert published == [] and store.event(event.event_id).status == PENDING
    local_start = event.start_utc.astimezone(program.timezone)
    local_end = event.end_utc.astimezone(program.timezone)
    assert local_start.date() == day
    assert local_start.hour >= 15 and local_end.hour <= 20
    assert event.end_utc - event.start_utc in program.durations
    assert event.start_utc <= peak_utc < event.end_utc            # the peak hour is covered
    assert store.events_for("ven-1", clock.now()) == []            # nobody sees it yet

    clock.set(event.start_utc - program.notice)
    (sent,) = publish_due(store, {program.id: program}, clock)
    assert sent.event_id == event.event_id and sent.status != PENDING
    assert [e.event_id for e in store.events_for("ven-1", clock.now())] == [event.event_id]


def test_a_day_already_decided_is_not_planned_twice(store, peak_day_2018):
    program, peak_utc = peak_day_2018
    _enrol(store)
    day = peak_utc.astimezone(program.timezone).date()
    clock = ManualClock(decision_moment(program, day) - timedelta(minutes=5))
    first, _ = run_once(store, {program.id: program}, SOURCES, clock)
    clock.advance(timedelta(minutes=1))
    again, _ = run_once(store, {program.id: program}, SOURCES, clock)
    assert len(first) == 1 and again == []
    assert len(store.events(program_id=program.id)) == 1


def test_without_enrolled_vens_nothing_is_stored(store, peak_day_2018):
    program, peak_utc = peak_day_2018
    day = peak_utc.astimezone(program.timezone).date()
    clock = ManualClock(decision_moment(program, day) - timedelta(minutes=5))
    planned, _ = run_once(store, {program.id: program}, SOURCES, clock)
    assert planned == [] and store.events() == []
