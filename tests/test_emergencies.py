"""Declared emergencies (Type 1 / Type 2, severe outages) exclude events, as the programs say."""
from __future__ import annotations

import dataclasses
import json
from datetime import date, datetime, time, timedelta, timezone

import pytest

from flexadr import data as shipped
from schedules import emergencies, model, planner, sources
from schedules.planner import PlanInputs
from schedules.sources import DataFileError

UTC = timezone.utc
LOAD = str(shipped.path("isone_hourly_load_2015-07_2019-12.csv"))
CS = model.load("connected_solutions")
MC = model.load("managed_charging")
NY = CS.timezone
PEAK_DAY = date(2018, 8, 29)          # the 2018 annual peak


def _at(day: date, hour: int) -> str:
    return datetime.combine(day, time(hour), tzinfo=NY).isoformat()


GOOD = f"""type,start,end,declared,description
Type 1,{_at(PEAK_DAY, 14)},{_at(PEAK_DAY, 20)},{_at(PEAK_DAY - timedelta(days=1), 9)},capacity deficiency
Severe Outage,2018-08-20T00:00:00+00:00,2018-08-21T00:00:00+00:00,,
"""


@pytest.fixture(scope="module")
def inputs():
    data = sources.read_isone_csv(LOAD)
    return PlanInputs.build(data.load, NY, data.iso_forecast)


def test_rows_become_utc_declarations_known_from_their_declared_time():
    first, second = emergencies.parse_emergencies(GOOD)
    assert first.type == "Type 1" and first.description == "capacity deficiency"
    assert first.start_utc == datetime(2018, 8, 29, 18, tzinfo=UTC)        # 14:00 EDT
    assert first.declared_utc == datetime(2018, 8, 28, 13, tzinfo=UTC)
    assert second.declared_utc == second.start_utc     # no declared time: known at its start


def test_each_program_excludes_its_own_types_with_its_lead_time():
    declared = emergencies.parse_emergencies(GOOD)
    (cs_period,) = emergencies.exclusions(CS, declared)
    assert cs_period.start_utc == declared[0].start_utc and "Type 1" in cs_period.reason
    assert "capacity deficiency" in cs_period.reason
    (mc_period,) = emergencies.exclusions(MC, declared)
    # "no event ... for the two days before a predicted severe outage"
    assert mc_period.start_utc == datetime(2018, 8, 18, tzinfo=UTC)
    assert mc_period.known_utc == declared[1].declared_utc


def test_a_type_no_program_excludes_is_reported():
    typo = GOOD.replace("Type 1,", "Typ 1,")
    (stray,) = emergencies.unused([CS, MC], emergencies.parse_emergencies(typo))
    assert stray.type == "Typ 1"


@pytest.mark.parametrize("row, words", [
    ("Type 1,2018-08-29T14:00,2018-08-29T20:00-04:00,,", "declared.csv:2: start: needs a UTC offset"),
    ("Type 1,tomorrow,2018-08-29T20:00-04:00,,", "declared.csv:2: start: not an ISO 8601 time"),
    ("Type 1,2018-08-29T20:00-04:00,2018-08-29T14:00-04:00,,", "declared.csv:2: end:"),
    (",2018-08-29T14:00-04:00,2018-08-29T20:00-04:00,,", "declared.csv:2: type: empty"),
    ("Type 1,2018-08-29T14:00-04:00,2018-08-29T20:00-04:00,soon,", "declared.csv:2: declared:"),
])
def test_bad_rows_are_named_by_file_line_and_column(tmp_path, row, words):
    path = tmp_path / "declared.csv"
    path.write_text("type,start,end,declared,description\n" + row + "\n")
    with pytest.raises(DataFileError) as info:
        sources.read_emergencies(path)
    assert words in str(info.value)


def test_every_bad_row_is_reported_and_missing_columns_are_named(tmp_path):
    path = tmp_path / "declared.csv"
    path.write_text("type,start,end\nType 1,x,y\nType 2,a,b\n")
    with pytest.raises(DataFileError) as info:
        sources.read_emergencies(path)
    assert "declared.csv:2:" in str(info.value) and "declared.csv:3:" in str(info.value)
    path.write_text("type,start\nType 1,2018-08-29T14:00-04:00\n")
    with pytest.raises(DataFileError, match="declared.csv:1: missing column end"):
        sources.read_emergencies(path)
    with pytest.raises(DataFileError, match="absent.csv: no such file"):
        sources.read_emergencies(tmp_path / "absent.csv")


def test_an_emergency_declared_before_the_decision_keeps_the_day_free(inputs):
    calm = planner.plan_season(CS, 2018, inputs)
    assert any(e.day == PEAK_DAY for e in calm.active_events)
    periods = tuple(emergencies.exclusions(CS, emergencies.parse_emergencies(GOOD)))
    plan = planner.plan_season(CS, 2018, dataclasses.replace(inputs, exclusions=periods))
    assert not any(e.day == PEAK_DAY for e in plan.active_events)
    decision = next(d for d in plan.decisions if d.day == PEAK_DAY)
    assert decision.event is None and decision.reason == "storm exclusion"


def test_an_emergency_declared_during_an_event_cuts_it_short(inputs):
    calm = planner.plan_season(CS, 2018, inputs)
    event = next(e for e in calm.active_events if e.day == PEAK_DAY)
    cut = event.start_utc + timedelta(hours=1)
    declared = [emergencies.Emergency("Type 2", cut, event.end_utc + timedelta(hours=2), cut)]
    periods = tuple(emergencies.exclusions(CS, declared))
    plan = planner.plan_season(CS, 2018, dataclasses.replace(inputs, exclusions=periods))
    (short,) = [e for e in plan.events if e.day == PEAK_DAY]
    assert short.active and short.start_utc == event.start_utc and short.end_utc == cut
    assert "declared emergency: Type 2" in short.reason


def test_backtest_cli_takes_declared_emergencies(tmp_path, capsys):
    from vtn.commands import backtest as backtest_cmd
    path = tmp_path / "declared.csv"
    path.write_text(GOOD.replace("Severe Outage", "Type 3"))
    code = backtest_cmd.main(["backtest", "--program", "connected_solutions", "--load", LOAD,
                              "--emergencies", str(path), "--seasons", "2018", "--json",
                              "--no-progress"])
    out = capsys.readouterr()
    assert code == 0
    (season,) = json.loads(out.out)["seasons"]
    assert not any(e["start"].startswith(PEAK_DAY.isoformat()) for e in season["events"])
    assert season["peak_hour_hit"] is False     # the emergency took the annual peak day
    assert "'Type 3'" in out.err and "excludes none" in out.err


def test_backtest_cli_names_a_bad_emergencies_row_and_exits_1(tmp_path, capsys):
    from vtn.commands import backtest as backtest_cmd
    path = tmp_path / "declared.csv"
    path.write_text("type,start,end\nType 1,2018-08-29T14:00,2018-08-29T20:00-04:00\n")
    code = backtest_cmd.main(["backtest", "--program", "connected_solutions", "--load", LOAD,
                              "--emergencies", str(path), "--seasons", "2018", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "declared.csv:2: start: needs a UTC offset" in err
    assert "Traceback" not in err
