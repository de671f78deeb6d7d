"""`vtn backtest`: JSON shape, progress on stderr, table, baselines, the 2016-2019 figures."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from flexadr import data as shipped
from schedules import backtest, model, sources
from schedules.planner import PlanInputs, PlannerConfig
from vtn.commands import backtest as backtest_cmd

LOAD = str(shipped.path("isone_hourly_load_2015-07_2019-12.csv"))
WEATHER = str(shipped.path("boston_logan_daily_weather_2010-2019.csv"))
FEED = str(shipped.path("raw/nws_cap_atom_us_2018-08-15_IBM-cap.xml"))
CS = model.load("connected_solutions")


@pytest.fixture(scope="module")
def inputs():
    data = sources.read_isone_csv(LOAD)
    weather = sources.read_daily_weather(WEATHER)
    return PlanInputs.build(data.load, CS.timezone, data.iso_forecast, weather)


def test_json_shape_and_progress_bar_on_stderr(capsys):
    code = backtest_cmd.main(["backtest", "--program", "connected_solutions", "--load", LOAD,
                              "--weather", WEATHER, "--alerts", FEED, "--seasons", "2018",
                              "--json"])
    assert code == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)           # stdout is pure JSON
    assert "day" in captured.err and "%" in captured.err
    assert set(doc) == {"program", "seasons", "summary"}
    assert doc["program"] == "connected_solutions"
    (season,) = doc["seasons"]
    assert season["year"] == 2018
    assert set(season) == {"year", "events", "peak_hour_hit", "top40_hit", "event_count"}
    assert all(set(e) == {"start", "end"} for e in season["events"])
    assert season["event_count"] == len(season["events"]) <= 60
    first = season["events"][0]
    assert first["start"].startswith("2018-") and first["start"].endswith("-04:00")
    assert set(doc["summary"]) == {"peak_hour_hits", "seasons", "top40_hit_mean",
                                   "event_count_mean"}
    assert doc["summary"]["seasons"] == 1
    assert doc["summary"]["peak_hour_hits"] == int(season["peak_hour_hit"])


def test_why_lists_every_day_in_json_and_in_the_table(capsys):
    args = ["backtest", "--program", "connected_solutions", "--load", LOAD, "--seasons", "2019",
            "--no-progress", "--why"]
    assert backtest_cmd.main(args + ["--json"]) == 0
    (season,) = json.loads(capsys.readouterr().out)["seasons"]
    days = season["decisions"]
    assert len(days) == 122 and days[0]["day"] == "2019-06-01"
    assert set(days[0]) == {"day", "decided", "event", "reason", "forecast_peak_mw",
                            "forecast_source", "threshold_mw", "rank", "budget_left",
                            "exclusions"}
    assert days[0]["forecast_source"] == "iso"
    assert sum(d["event"] for d in days) == len(season["events"])
    (july_4,) = [d for d in days if d["day"] == "2019-07-04"]
    assert july_4["reason"] == "holiday: Independence Day" and not july_4["event"]
    assert backtest_cmd.main(args) == 0
    out = capsys.readouterr().out
    assert "rank" in out and "2019-07-04" in out and "season threshold" in out


def test_table_output_and_bad_arguments(capsys):
    code = backtest_cmd.main(["backtest", "--program", "managed_charging", "--load", LOAD,
                              "--seasons", "2019", "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "managed_charging" in out and "2019" in out and "top-40 hit" in out
    with pytest.raises(SystemExit):
        backtest_cmd.main(["backtest", "--program", "connected_solutions", "--load", LOAD,
                           "--seasons", "2019-2016"])
    assert backtest_cmd.main(["backtest", "--program", "/nonexistent.toml", "--load", LOAD]) == 1


def test_plot_writes_a_png(tmp_path: Path, capsys):
    png = tmp_path / "season.png"
    code = backtest_cmd.main(["backtest", "--program", "connected_solutions", "--load", LOAD,
                              "--seasons", "2019", "--no-progress", "--plot", str(png)])
    assert code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scoring_counts_peak_hours_inside_events(inputs):
    empty = backtest.score_season(CS, 2018, [], inputs.load)
    assert not empty.peak_hour_hit and empty.top40_hit == 0 and empty.event_count == 0
    hindsight = backtest.run(CS, inputs, [2018], policy="hindsight")
    (season,) = hindsight.seasons
    assert season.event_count == CS.budget.typical_per_season
    assert season.peak_hour_hit
    # hindsight can only lose top days that peak outside 15:00-20:00 or on holidays
    assert season.top40_hit >= 0.85


def test_vtn_cli_lists_the_new_subcommands():
    from vtn import cli
    assert "vtn.commands.programs" in cli.COMMANDS and "vtn.commands.backtest" in cli.COMMANDS


@pytest.mark.parametrize("forecast", ["iso", "own"])
def test_2016_2019_figures_beat_the_fixed_threshold_baseline(inputs, forecast):
    years = [2016, 2017, 2018, 2019]
    config = PlannerConfig(forecast=forecast)
    result = backtest.run(CS, inputs, years, config)
    summary = result.summary
    threshold = backtest.run(CS, inputs, years, config, policy="threshold").summary
    assert summary["top40_hit_mean"] > threshold["top40_hit_mean"]
    assert summary["peak_hour_hits"] == 4
    if forecast == "iso":
        # the "Must show": measured 4/4, 0.850, 44.75 events (docs/backtest.md,
        # in-sample); the guard leaves two top days of slack for float noise
        assert summary["event_count_mean"] <= 45
        assert summary["top40_hit_mean"] >= 0.84
    else:
        # without a weather forecast for the event day the own forecaster ranks days
        # worse: measured 4/4, 0.769, 45.25 events (docs/backtest.md): the 2017
        # annual peak costs a June event, and the top-40 target is not met
        assert summary["event_count_mean"] <= 45.5
        assert summary["top40_hit_mean"] >= 0.74
