"""`vtn replay`'s default fleet on the peak day: OCPP chargers (1.6, 2.0.1 and 2.1 V2X), a
car cloud and SunSpec inverters beside the sim devices.

The real adapters talk to their device simulators (the `ocpp` package's charge points,
the Smartcar-shaped cloud recording, a pymodbus SunSpec server) on their own thread and
event loop, on the replay's clock; the report reads each one's truth from the
simulator's physics (adapters/testing/device_truth.py). This run checks that they take
part, act within their limits and report kW within 1 % of that truth, per event and in
settlement, as the sim fleet does (tests/test_replay.py, `--sim-only`), that the managed
cars keep charging off in their events, that the V2X cars and V2G pickups on OCPP 2.1
discharge in theirs, within their inverters and above their owners' floors, and that the
storm holds the SunSpec batteries.
"""
from __future__ import annotations

import asyncio
from datetime import date

import pytest

from flexadr import data as shipped
from flexadr import replay_report
from flexadr.replay import LOAD_FILE, ReplayOptions, run_replay
from flexadr.replay_devices import ocpp2_version
from test_replay import (assert_managed_cars_do_not_charge_in_events, assert_reports_device_truth,
                         assert_storm_stops_byod_discharge_and_charges)
from vtn.settlement.store_adapter import OPT_OUT
from vtn.store import CANCELLED

PEAK_DAY = date(2018, 8, 29)


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    options = ReplayOptions(first_day=PEAK_DAY, days=1, vens=12, seed=7,
                            load_csv=shipped.path(LOAD_FILE), day_s=96.0, poll_s=2.0,
                            workdir=tmp_path_factory.mktemp("replay-real"))
    result = asyncio.run(run_replay(options))
    yield result
    result.store.close()


def _real_members(replay):
    return [m for m in replay.members if m.adapter != "sim"]


@pytest.mark.slow
def test_each_real_adapter_is_in_the_fleet(replay):
    assert {m.adapter for m in _real_members(replay)} == {"ocpp16", "ocpp2", "telematics",
                                                          "sunspec"}
    versions = {(m.role, replay.agents[m.name].adapter.version)
                for m in _real_members(replay) if m.adapter == "ocpp2"}
    assert versions == {("mc_ev", "2.0.1"), ("v2x_car", "2.1"), ("cs_v2g", "2.1")}
    for member in _real_members(replay):
        assert type(replay.devices[member.name]).__name__ == "DeviceTruth", member.name


@pytest.mark.slow
def test_real_adapter_members_receive_their_programs_events(replay):
    for member in _real_members(replay):
        events = [e for e in replay.store.events(program_id=member.program_id)
                  if e.status != CANCELLED]
        targeted = [e for e in events
                    if any(t.ven_id == member.name for t in replay.store.targets(e.event_id))]
        assert targeted, f"{member.name}: no {member.program_id} event targeted it"
        agent = replay.agents[member.name]
        assert all(agent.store.event(e.event_id) is not None for e in targeted), member.name


@pytest.mark.slow
def test_real_adapter_devices_act_within_their_limits(replay):
    for member in _real_members(replay):
        device = replay.devices[member.name]
        power = [seg.kw for seg in device.history]
        assert any(abs(kw) > 0.1 for kw in power), f"{member.name}: the device never moved"
        spec = device.spec
        assert max(abs(kw) for kw in power) <= max(spec.max_charge_kw,
                                                   spec.max_discharge_kw) + 1e-9, member.name
        socs = [p.soc_pct for p in replay.store.telemetry(member.name) if p.soc_pct is not None]
        assert socs, f"{member.name}: its adapter reported no state of charge"
        if spec.max_discharge_kw:
            assert min(socs) >= member.min_soc_pct - 0.5, member.name


def _v2x_members(replay):
    return [m for m in _real_members(replay) if m.adapter == "ocpp2" and ocpp2_version(m) == "2.1"]


@pytest.mark.slow
def test_v2x_cars_on_ocpp21_discharge_in_their_events_within_their_limits(replay):
    members = _v2x_members(replay)
    assert {m.role for m in members} == {"v2x_car", "cs_v2g"}
    for member in members:
        rows = [row for row in replay_report.ven_rows(replay, member.program_id)
                if row.ven_id == member.name and row.opt != OPT_OUT]
        assert rows, f"{member.name}: no event it took part in"
        for row in rows:
            assert row.device_event_kw > 1, row          # out of the car, through OCPP 2.1
            assert_reports_device_truth(row)
        device = replay.devices[member.name]
        assert min(seg.kw for seg in device.history) >= -member.device["max_discharge_kw"] - 1e-9
        assert device.lowest_soc_pct >= member.min_soc_pct - 0.01, member.name


@pytest.mark.slow
def test_real_adapters_report_kw_within_1_percent_of_device_truth(replay):
    real = {m.name for m in _real_members(replay)}
    programs = {m.program_id for m in _real_members(replay)}
    rows = [row for pid in programs for row in replay_report.ven_rows(replay, pid)
            if row.ven_id in real]
    assert any(abs(row.device_kw) > 1 for row in rows), "some real device must have acted"
    for row in rows:
        assert_reports_device_truth(row)


@pytest.mark.slow
def test_real_adapters_settle_as_their_device_truth(replay):
    real = {m.name for m in _real_members(replay)}
    for pid in {m.program_id for m in _real_members(replay)}:
        reported = replay_report.settle_program(replay, pid)
        truth = replay_report.settle_program(replay, pid, truth=True)
        assert reported.totals["payment_usd"] == pytest.approx(truth.totals["payment_usd"],
                                                               rel=0.01, abs=0.05), pid
        for mine, theirs in zip(reported.participants, truth.participants):
            assert mine.participant == theirs.participant
            if mine.participant in real:
                assert mine.season_kw == pytest.approx(theirs.season_kw, rel=0.01,
                                                       abs=0.05), mine


@pytest.mark.slow
def test_real_managed_cars_keep_charging_off_in_their_events(replay):
    cars = {m.name for m in _real_members(replay) if m.program_id == "managed_charging"}
    assert_managed_cars_do_not_charge_in_events(replay, only=cars)


@pytest.mark.slow
def test_the_storm_holds_the_sunspec_batteries(replay):
    assert_storm_stops_byod_discharge_and_charges(
        replay, only={m.name for m in _real_members(replay) if m.adapter == "sunspec"})
