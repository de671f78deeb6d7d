"""The VTN plans tomorrow's events from the real ISO-NE data and publishes them with notice."""
import dataclasses
from datetime import date, datetime, timedelta

import numpy as np
import pytest

from flexadr import data as shipped
from flexadr.clock import ManualClock
from schedules import model
from schedules.forecast import from_epoch_s
from schedules.planner import decision_moment
from vtn import audit
from vtn.planning import PlannerSources, publish_due, read_inputs, run_once
from vtn.store import CANCELLED, PENDING, Ven

SOURCES = PlannerSources(load_csv=shipped.path("isone_hourly_load_2015-07_2019-12.csv"),
                         weather_csv=shipped.path("boston_logan_daily_weather_2010-2019.csv"))


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

    planned, published, _ = run_once(store, {program.id: program}, SOURCES, clock)

    (event,) = planned
    assert published == [] and store.event(event.event_id).status == PENDING
    local_start = event.start_utc.astimezone(program.timezone)
    local_end = event.end_utc.astimezone(program.timezone)
    assert local_start.date() == day
    assert local_start.hour >= 15 and local_end.hour <= 20
    assert event.end_utc - event.start_utc in program.durations
    assert event.start_utc <= peak_utc < event.end_utc            # the peak hour is covered
    assert store.events_for("ven-1", clock.now()) == []            # nobody sees it yet
    (why,) = store.decisions(program_id=program.id)                # kept with what it saw
    assert (why.day, why.event_id, why.decided_utc) == (day, event.event_id, clock.now())
    assert why.forecast_peak_mw > 20000 and why.rank >= 1 and why.budget_left > 0 and why.reason

    clock.set(event.start_utc - program.notice)
    (sent,) = publish_due(store, {program.id: program}, clock)
    assert sent.event_id == event.event_id and sent.status != PENDING
    assert [e.event_id for e in store.events_for("ven-1", clock.now())] == [event.event_id]
    with store.session() as session:       # the planner is the actor of its own changes
        rows = audit.query(session, subject_type="event")
    assert [(r.actor, r.action, r.subject_id) for r in rows] == [
        ("planner", "event.create", event.event_id), ("planner", "event.publish", event.event_id)]


def test_a_day_already_decided_is_not_planned_twice(store, peak_day_2018):
    program, peak_utc = peak_day_2018
    _enrol(store)
    day = peak_utc.astimezone(program.timezone).date()
    clock = ManualClock(decision_moment(program, day) - timedelta(minutes=5))
    first = run_once(store, {program.id: program}, SOURCES, clock).planned
    clock.advance(timedelta(minutes=1))
    again = run_once(store, {program.id: program}, SOURCES, clock).planned
    assert len(first) == 1 and again == []
    assert len(store.events(program_id=program.id)) == 1


def test_without_enrolled_vens_nothing_is_stored(store, peak_day_2018):
    program, peak_utc = peak_day_2018
    day = peak_utc.astimezone(program.timezone).date()
    clock = ManualClock(decision_moment(program, day) - timedelta(minutes=5))
    planned = run_once(store, {program.id: program}, SOURCES, clock).planned
    assert planned == [] and store.events() == []


async def test_the_schedule_plans_on_its_first_tick(store, peak_day_2018, tmp_path):
    import asyncio

    from vtn.config import planner_settings
    from vtn.planning import PlanningSchedule
    program, peak_utc = peak_day_2018
    _enrol(store)
    day = peak_utc.astimezone(program.timezone).date()
    clock = ManualClock(decision_moment(program, day) - timedelta(minutes=5))
    settings = planner_settings({"programs": ["connected_solutions"],
                                 "load_csv": str(SOURCES.load_csv), "every_min": 60}, tmp_path)
    schedule = PlanningSchedule(store, settings, clock)
    schedule.start()
    try:
        async with asyncio.timeout(30):
            while schedule.ticks == 0:
                await asyncio.sleep(0.05)
    finally:
        schedule.stop()
    (event,) = store.events(program_id=program.id)
    assert event.status == PENDING and event.start_utc <= peak_utc < event.end_utc


def _declare(tmp_path, kind, start, end, declared) -> PlannerSources:
    path = tmp_path / "declared.csv"
    path.write_text("type,start,end,declared,description\n"
                    f"{kind},{start.isoformat()},{end.isoformat()},{declared.isoformat()},test\n")
    return dataclasses.replace(SOURCES, emergencies=(path,))


def test_an_emergency_declared_after_planning_cancels_the_pending_event(store, peak_day_2018,
                                                                          tmp_path):
    program, peak_utc = peak_day_2018
    programs = {program.id: program}
    _enrol(store)
    day = peak_utc.astimezone(program.timezone).date()
    clock = ManualClock(decision_moment(program, day) - timedelta(minutes=5))
    (event,) = run_once(store, programs, SOURCES, clock).planned
    declared_at = clock.now() + timedelta(hours=2)
    found = _declare(tmp_path, "Type 1", event.start_utc - timedelta(hours=1), event.end_utc,
                     declared_at)

    clock.advance(timedelta(hours=1))              # declared in the file, not yet known
    assert run_once(store, programs, found, clock).withdrawn == []
    assert store.event(event.event_id).status == PENDING

    clock.advance(timedelta(hours=2))
    run = run_once(store, programs, found, clock)
    assert [e.event_id for e in run.withdrawn] == [event.event_id]
    assert store.event(event.event_id).status == CANCELLED
    with store.session() as session:
        (row,) = audit.query(session, action="event.cancel")
    assert (row.actor, row.reason) == ("planner", "declared emergency: Type 1 (test)")
    clock.set(event.start_utc - program.notice)
    assert publish_due(store, programs, clock) == []        # never sent


def _under_way(store, program, peak_utc):
    _enrol(store)
    day = peak_utc.astimezone(program.timezone).date()
    clock = ManualClock(decision_moment(program, day) - timedelta(minutes=5))
    (event,) = run_once(store, {program.id: program}, SOURCES, clock).planned
    clock.set(event.start_utc + timedelta(minutes=30))
    (sent,) = publish_due(store, {program.id: program}, clock)
    store.mark_delivered("ven-1", [sent])                      # the VEN has polled it
    return clock, sent


def test_an_emergency_declared_later_in_an_event_cuts_it_short(store, peak_day_2018, tmp_path):
    program, peak_utc = peak_day_2018
    clock, sent = _under_way(store, program, peak_utc)
    begins = clock.now() + timedelta(hours=1)
    found = _declare(tmp_path, "Type 2", begins, sent.end_utc + timedelta(hours=2), clock.now())

    (cut,) = run_once(store, {program.id: program}, found, clock).withdrawn
    assert cut.event_id == sent.event_id
    assert (cut.start_utc, cut.end_utc) == (sent.start_utc, begins)
    assert cut.modification_number == sent.modification_number + 1
    (seen,) = store.events_for("ven-1", clock.now())           # the VEN gets the new end
    assert seen.end_utc == begins and seen.status != CANCELLED


def test_an_emergency_in_force_now_cancels_the_event_under_way(store, peak_day_2018, tmp_path):
    program, peak_utc = peak_day_2018
    clock, sent = _under_way(store, program, peak_utc)
    found = _declare(tmp_path, "Type 1", clock.now() - timedelta(minutes=10),
                     sent.end_utc + timedelta(hours=2), clock.now())

    (stopped,) = run_once(store, {program.id: program}, found, clock).withdrawn
    assert stopped.status == CANCELLED
    (seen,) = store.events_for("ven-1", clock.now())           # the VEN gets the cancellation
    assert seen.event_id == sent.event_id and seen.status == CANCELLED


def test_planner_settings_name_a_missing_field(tmp_path):
    from vtn.config import planner_settings
    with pytest.raises(ValueError, match="planner.load_csv: missing"):
        planner_settings({"programs": ["connected_solutions"]}, tmp_path)


def test_planner_settings_read_emergency_files_relative_to_the_config(tmp_path):
    from vtn.config import planner_settings
    (tmp_path / "ops").mkdir()
    for name in ("load.csv", "ops/declared.csv"):
        (tmp_path / name).write_text("")
    settings = planner_settings({"programs": ["connected_solutions"], "load_csv": "load.csv",
                                 "emergencies": ["ops/declared.csv"]}, tmp_path)
    assert settings.sources.emergencies == ((tmp_path / "ops" / "declared.csv").resolve(),)


def test_planner_settings_read_the_issued_weather_forecast_file(tmp_path):
    from vtn.config import planner_settings
    for name in ("load.csv", "old/2016-2019.csv", "wx/issued.csv"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("")
    settings = planner_settings({"programs": ["connected_solutions"], "load_csv": "load.csv",
                                 "load_history": ["old/2016-2019.csv"],
                                 "forecast": "own", "weather_forecast": "wx/issued.csv"},
                                tmp_path)
    assert settings.sources.weather_forecast == (tmp_path / "wx" / "issued.csv").resolve()
    assert settings.sources.load_history == ((tmp_path / "old" / "2016-2019.csv").resolve(),)
    assert planner_settings({"programs": ["connected_solutions"], "load_csv": "load.csv"},
                            tmp_path).sources.weather_forecast is None


def test_the_vtn_plans_from_the_issued_weather_forecast(store):
    """`[planner] forecast = "own"` with `weather_forecast`: the VTN reads the
    issued forecasts and plans 2025's annual peak day (June 24, 17:00 EDT) with
    its window on the peak hour."""
    program = model.load("connected_solutions")
    _enrol(store)
    found = PlannerSources(load_csv=shipped.path("isone_hourly_load_eei_2025-01_2026-07.csv"),
                           load_history=(shipped.path("isone_hourly_load_2015-07_2019-12.csv"),),
                           weather_forecast=shipped.path("gfs_day_ahead_temperature_2025-2026_summers.csv"),
                           forecast="own")
    day = date(2025, 6, 24)
    clock = ManualClock(decision_moment(program, day) - timedelta(minutes=5))
    inputs = read_inputs(found, program)
    assert inputs.weather_forecast is not None and inputs.weather_forecast.cities == (
        "boston", "hartford")
    assert len(inputs.load.t) > 50000          # the older years are read before the recent months
    (event,) = run_once(store, {program.id: program}, found, clock).planned
    peak = datetime(2025, 6, 24, 17, tzinfo=program.timezone)
    assert event.start_utc <= peak < event.end_utc


def test_a_day_not_called_is_kept_with_its_reason_and_shown_by_the_cli(store, database_url,
                                                                      peak_day_2018, tmp_path,
                                                                      capsys):
    from certs.pki import ensure_dev_pki
    from vtn.cli import main
    program, peak_utc = peak_day_2018
    _enrol(store)
    cool_day = date(2018, 6, 4)                                    # a Monday in early June
    clock = ManualClock(decision_moment(program, cool_day) - timedelta(minutes=5))
    assert run_once(store, {program.id: program}, SOURCES, clock).planned == []
    (why,) = store.decisions(program_id=program.id)
    assert why.day == cool_day and why.event_id is None and why.reason

    pki = ensure_dev_pki(tmp_path / "pki", [])
    config = tmp_path / "vtn.toml"
    config.write_text(f'cert = "{pki.vtn.cert}"\nkey = "{pki.vtn.key}"\n'
                      f'ca_file = "{pki.ca.cert}"\ndatabase = "{database_url}"\n')
    assert main(["planner", "decisions", "--config", str(config)]) == 0
    (header, line) = capsys.readouterr().out.splitlines()
    assert header.split()[:2] == ["day", "program"]
    assert line.startswith(f"2018-06-04 {program.id}") and why.reason in line
