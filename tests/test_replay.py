"""`vtn replay --sim-only` end to end on the 2018 peak: planner, VTN, a mixed fleet, settlement.

One run (module fixture): two event days, 2018-08-28 and the peak day 2018-08-29 (from
12:00 EDT on 08-27, before the first notice deadline, to 22:00 on 08-29), 12 VENs (every
kind), every device on `sim`, real sockets, mutual TLS, signed OpenADR 2.0b, notices to a
local SMTP sink. The default fleet, with real adapters, is tests/test_replay_real_adapters.py.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from flexadr import data as shipped
from flexadr import replay_report, replay_scenario
from flexadr.replay import LOAD_FILE, ReplayOptions, run_replay
from flexadr.replay_plan import ReplayPlanner, load_programs, planner_sources
from vtn.store import CANCELLED

ROOT = Path(__file__).resolve().parents[1]
LOAD = shipped.path(LOAD_FILE)
PEAK_DAY = date(2018, 8, 29)


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    options = ReplayOptions(first_day=PEAK_DAY - timedelta(days=1), days=2, vens=12, seed=7,
                            load_csv=LOAD, day_s=96.0, poll_s=2.0, real_adapters=False,
                            workdir=tmp_path_factory.mktemp("replay"))
    result = asyncio.run(run_replay(options))
    yield result
    result.store.close()


def _wall(result, when):
    return result.timeline.to_wall(when)


def _dispatch_events(result, program_id):
    return replay_report.settled_events(result, program_id)


@pytest.mark.slow
def test_every_programs_events_reach_its_vens(replay):
    for pid in replay.programs:
        events = [e for e in replay.store.events(program_id=pid) if e.status != CANCELLED]
        assert _dispatch_events(replay, pid), f"no {pid} event was called"
        for event in events:
            for target in replay.store.targets(event.event_id):
                agent = replay.agents[target.ven_id]
                assert agent.store.event(event.event_id) is not None, (pid, target.ven_id)
                assert target.opt_type in ("optIn", "optOut"), (pid, target.ven_id)
    kinds = set(replay.kinds.values())
    assert {"dispatch", "standing", "flex_alert"} <= kinds


@pytest.mark.slow
def test_reported_kw_matches_device_truth_per_ven(replay):
    silent = replay.silent
    rows = [row for pid in replay.programs for row in replay_report.ven_rows(replay, pid)]
    assert any(row.device_kw > 1 for row in rows), "some device must have delivered"
    for row in rows:
        assert_reports_device_truth(row, silent=row.ven_id == silent)


def assert_reports_device_truth(row: replay_report.VenEvent, silent: bool = False) -> None:
    """A VEN's event: telemetry for most of it (unless its device fell silent), and
    reported kW within 1 % of what the device did (both near 0 when it did nothing)."""
    if not silent:
        assert row.coverage > 0.9, row
    if abs(row.device_kw) < 0.05:
        assert abs(row.reported_kw) < 0.05, row
    else:
        assert row.reported_kw == pytest.approx(row.device_kw, rel=0.01), row


@pytest.mark.slow
def test_each_programs_settlement_equals_the_one_from_device_truth(replay):
    for pid in replay.programs:
        reported = replay_report.settle_program(replay, pid)
        truth = replay_report.settle_program(replay, pid, truth=True)
        assert reported.totals["events_called"] == truth.totals["events_called"]
        # A failure names the accounts paid differently, with their figures both ways.
        differ = [(mine.participant, _figures(mine), _figures(theirs))
                  for mine, theirs in zip(reported.participants, truth.participants)
                  if mine.payment_usd != theirs.payment_usd]
        assert reported.totals["payment_usd"] == pytest.approx(truth.totals["payment_usd"],
                                                               rel=0.01, abs=0.05), (pid, differ)
        for mine, theirs in zip(reported.participants, truth.participants):
            assert mine.participant == theirs.participant
            assert mine.season_kw == pytest.approx(theirs.season_kw, rel=0.01, abs=0.05), mine


def _figures(participant) -> dict:
    """A settled participant's figures, without the long lists (plug times)."""
    return {"payment_usd": participant.payment_usd, "season_kw": participant.season_kw,
            **{k: v for k, v in participant.details.items() if not isinstance(v, list)}}


@pytest.mark.slow
def test_devices_stay_within_their_owners_limits(replay):
    by_name = {m.name: m for m in replay.members}
    for name, device in replay.devices.items():
        member = by_name[name]
        if device.spec.max_discharge_kw:
            socs = [p.soc_pct for p in replay.store.telemetry(name) if p.soc_pct is not None]
            assert socs and min(socs) >= member.min_soc_pct - 0.5, name
        power = [abs(seg.kw) for seg in device.history]
        assert max(power) <= max(device.spec.max_charge_kw, device.spec.max_discharge_kw) + 1e-9
        if member.site_limit_kw:
            assert max(power) <= member.site_limit_kw + 1e-9
        if member.ready_by:
            # At 07:00 on the peak day the car was charged to the owner's level.
            seven = _wall(replay, replay_scenario.datetime.combine(
                PEAK_DAY, member.ready_by, replay_scenario.NEW_YORK))
            at = [p for p in replay.store.telemetry(name) if p.interval_end == seven]
            assert at and at[0].soc_pct >= member.ready_soc_pct - 0.5, name
    for pid in replay.programs:
        totals = replay_report.settle_program(replay, pid).totals
        assert totals.get("floor_violations", 0) == 0 and totals.get("cycles_over_cap", 0) == 0


@pytest.mark.slow
def test_managed_cars_do_not_charge_in_events_they_take_part_in(replay):
    assert_managed_cars_do_not_charge_in_events(replay)


def assert_managed_cars_do_not_charge_in_events(replay, only: set[str] | None = None) -> None:
    """Every opted-in managed car (of `only`, if given) kept charging off in its events."""
    # A car that comes home mid-event charges until its agent's next sample sees it
    # plugged in (one interval, plus a busy loop's lag); from then on, not at all.
    grace = 3 * replay_scenario.TELEMETRY
    home = {}
    for trip in replay_scenario.commutes(replay.members, replay.options.first_day,
                                         replay.options.last_day, replay.options.seed):
        home.setdefault(trip.ven, []).append(trip.returns)
    for event in _dispatch_events(replay, "managed_charging"):
        for target in replay.store.targets(event.event_id):
            if target.opt_type != "optIn" or (only is not None and target.ven_id not in only):
                continue
            since = max([event.start_utc] + [_wall(replay, back + grace) for back in
                                              home.get(target.ven_id, [])
                                              if _wall(replay, back) < event.end_utc])
            device = replay.devices[target.ven_id]
            # A re-plan clears the device's commands and applies the new ones: the sim
            # charges in between for microseconds of wall time (a second of device time at
            # most, a few Wh); anything longer is charging in the event.
            charging = [seg for seg in device.history
                        if seg.kw > 0 and seg.start < event.end_utc and since < seg.end
                        and (seg.end - seg.start) * replay.timeline.scale > timedelta(seconds=1)]
            assert charging == [], target.ven_id


@pytest.mark.slow
def test_storm_warning_stops_byod_discharge_and_charges(replay):
    assert_storm_stops_byod_discharge_and_charges(replay)


def assert_storm_stops_byod_discharge_and_charges(replay, only: set[str] | None = None) -> None:
    start, end = _wall(replay, replay.storm.onset_utc), _wall(replay, replay.storm.end_utc)
    for ven in replay.store.vens("byod_vpp"):
        if only is not None and ven.ven_name not in only:
            continue
        device = replay.devices[ven.ven_name]
        inside = [seg for seg in device.history if seg.start < end and start < seg.end]
        # the watch is read every half interval: allow that long to notice the warning
        late = timedelta(seconds=1)
        assert all(seg.kw >= 0 for seg in inside if seg.start >= start + late), ven.ven_id
        assert any(seg.kw > 0 for seg in inside) or device.soc_pct >= 99.9, ven.ven_id


@pytest.mark.slow
def test_emergency_makes_a_flex_alert_and_no_connected_solutions_event(replay):
    e = replay.emergency
    start, end = _wall(replay, e.start), _wall(replay, e.end)
    for pid in ("connected_solutions", "v2x_demo"):
        for event in _dispatch_events(replay, pid):
            assert not (event.start_utc < end and start < event.end_utc), event.event_id
    alerts = [ev for ev in _dispatch_events(replay, "byod_vpp")
              if replay.kinds[ev.event_id] == "flex_alert"]
    assert [(a.start_utc, a.end_utc) for a in alerts] == [(start, end)]
    totals = replay_report.settle_program(replay, "byod_vpp").totals
    assert totals["flex_alert_export_kwh"] > 0 and totals["flex_alert_premium_usd"] > 0


@pytest.mark.slow
def test_owner_opt_outs_reach_the_vtn_and_the_silent_device_reports_nothing(replay):
    assert replay.owner_opt_outs
    for ven, event_id in replay.owner_opt_outs:
        assert replay.store.target(event_id, ven).opt_type == "optOut"
    after = [p for p in replay.store.telemetry(replay.silent, replay.silent_from) if p.kw is not None]
    assert after == []


@pytest.mark.slow
def test_notices_are_mailed_and_the_annual_peak_is_covered(replay):
    published = [e for e in replay.store.events() if replay.kinds.get(e.event_id) != "standing"]
    recipients = {str(m["To"]) for m in replay.mails}
    for event in published:
        for target in replay.store.targets(event.event_id):
            assert f"{target.ven_id}@example.org" in recipients
    peak = replay_report.annual_peak(replay, LOAD)
    assert peak.hour_start_utc.astimezone(replay_scenario.NEW_YORK).date() == PEAK_DAY
    assert peak.covered_by is not None


def test_the_plan_and_the_fleet_are_deterministic_for_a_seed(tmp_path):
    first = replay_scenario.fleet(20, seed=3)
    assert first == replay_scenario.fleet(20, seed=3)
    assert first != replay_scenario.fleet(20, seed=4)
    sim_only = replay_scenario.fleet(20, seed=3, real_adapters=False)
    assert {m.adapter for m in sim_only} == {"sim"}
    assert [m.name for m in sim_only] == [m.name for m in first]
    (tmp_path / "a.xml").write_text(replay_scenario.cap_feed([replay_scenario.storm(date(2018, 8, 28))]))
    (tmp_path / "e.csv").write_text(replay_scenario.emergencies_csv(
        [replay_scenario.emergency(PEAK_DAY)]))
    sources = planner_sources(LOAD, tmp_path / "a.xml", tmp_path / "e.csv")

    def called():
        planner = ReplayPlanner(load_programs(), sources, date(2018, 8, 28), PEAK_DAY)
        return [(e.program_id, e.start_utc, e.end_utc) for e in
                planner.due(replay_scenario.datetime(2018, 8, 30, tzinfo=replay_scenario.UTC))]

    plan = called()
    assert plan == called()
    assert {"connected_solutions", "v2x_demo", "managed_charging"} <= {p for p, _, _ in plan}


@pytest.mark.parametrize("argv, message", [
    (["--days", "0"], "--days"),
    (["--vens", "3"], "--vens"),
    (["--day-seconds", "50"], "--day-seconds"),
    (["--load", "/nonexistent/load.csv"], "/nonexistent/load.csv: no such file"),
    (["--start", "2030-07-01"], "outside"),
])
def test_bad_arguments_are_one_line_and_exit_2(argv, message, tmp_path):
    done = subprocess.run([sys.executable, "-m", "vtn.cli", "replay", "--workdir", str(tmp_path),
                           *argv], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "state").exists()
