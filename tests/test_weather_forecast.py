"""Issued weather forecasts: the reader, issue times, honesty, and the own
forecaster and planner with them on 2025 (ISO-NE's EEI load, GFS day-ahead
temperatures for Boston and Hartford)."""
from __future__ import annotations

import dataclasses
from datetime import date, datetime, time, timedelta, timezone

import numpy as np
import pytest

from flexadr import data as shipped
from schedules import backtest, model, planner, sources
from schedules import forecast as F
from schedules.planner import PlanInputs, PlannerConfig
from tests.test_input_errors import assert_fails_with, backtest as backtest_cli, write

UTC = timezone.utc
OLD_LOAD = shipped.path("isone_hourly_load_2015-07_2019-12.csv")
LOAD = shipped.path("isone_hourly_load_eei_2025-01_2026-07.csv")
ISSUED = shipped.path("gfs_day_ahead_temperature_2025-2026_summers.csv")
CS = model.load("connected_solutions")
NY = CS.timezone
HEADER = "timestamp_local,temperature_2m,city\n"


@pytest.fixture(scope="module")
def temps():
    return sources.read_weather_forecast(ISSUED)


@pytest.fixture(scope="module")
def history():
    """2016-2019 and 2025-2026 as one history, with the gap between."""
    return sources.read_load_files([LOAD, OLD_LOAD])


@pytest.fixture(scope="module")
def inputs(history, temps):
    return PlanInputs.build(history.load, NY, history.iso_forecast, weather_forecast=temps)


def test_reader_takes_every_city_by_local_hour_issued_a_day_before(temps):
    assert temps.cities == ("boston", "hartford")
    first = temps.ordinal[0]
    assert date.fromordinal(int(first)) == date(2025, 6, 1)
    assert temps.temp[0, 0, 0] == 10.0 and temps.temp[0, 0, 1] == 9.4
    assert np.isfinite(temps.temp[0]).all()
    # the value for 2025-06-01 00:00 EDT was issued 24 h before it
    assert temps.issued[0, 0] == F.to_epoch_s(datetime(2025, 5, 31, 0, tzinfo=NY))
    # at ConnectedSolutions' decision moment for July 20 (15:00 on July 19)
    # the event day is known up to the hour starting 15:00, for both cities
    day = date(2025, 7, 20)
    seen = temps.as_of(F.to_epoch_s(planner.decision_moment(CS, day)))
    row = day.toordinal() - first
    assert np.isfinite(seen.temp[row, :, :16]).all() and np.isnan(seen.temp[row, :, 16:]).all()
    assert np.isfinite(seen.temp[row - 1]).all()          # the day before: all issued


def test_load_files_join_across_the_gap_and_may_not_overlap(history, tmp_path):
    days = set(F.local_day_hour(history.load.t, NY)[0].tolist())
    assert np.all(np.diff(history.load.t) > 0)
    assert {date(2016, 7, 1).toordinal(), date(2025, 7, 1).toordinal()} <= days
    assert date(2022, 7, 1).toordinal() not in days
    # ISO's forecast comes from the older file only
    assert history.iso_forecast is not None and len(history.iso_forecast.t) == 39461
    copy = write(tmp_path / "copy.csv", shipped.read_bytes(LOAD.name.removesuffix(".gz")).decode())
    with pytest.raises(sources.DataFileError, match="overlap"):
        sources.read_load_files([LOAD, copy])


# (forecast file text, the message it must give; {f} is the file's path)
BAD_FILES = {
    "missing column": ("timestamp_local,temp,city\n2025-06-01 00:00:00,10,boston\n",
                       "{f}:1: missing column temperature_2m"),
    "bad time": (HEADER + "2025-06-01 00:00:00,10,boston\n06/01/2025 01:00,11,boston\n",
                 "{f}:3: timestamp_local: not a 'YYYY-MM-DD HH:MM:SS' time: '06/01/2025 01:00'"),
    "not on the hour": (HEADER + "2025-06-01 00:30:00,10,boston\n",
                        "{f}:2: timestamp_local: not on the hour: '2025-06-01 00:30:00'"),
    "clocks spring forward": (HEADER + "2025-03-09 02:00:00,1,boston\n",
                              "{f}:2: timestamp_local: '2025-03-09 02:00:00' does not exist"),
    "bad number": (HEADER + "2025-06-01 00:00:00,warm,boston\n",
                   "{f}:2: temperature_2m: not a number: 'warm'"),
    "no city": (HEADER + "2025-06-01 00:00:00,10,\n", "{f}:2: city: empty"),
    "out of order in a city": (HEADER + "2025-06-01 01:00:00,10,boston\n"
                               "2025-06-01 00:00:00,10,hartford\n"
                               "2025-06-01 00:00:00,10,boston\n",
                               "{f}:4: timestamp_local: 2025-06-01 00:00 is not after "
                               "2025-06-01 01:00 on line 2"),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_a_bad_forecast_file_names_file_line_and_column(tmp_path, case):
    text, message = BAD_FILES[case]
    path = write(tmp_path / "issued.csv", text)
    with pytest.raises(sources.DataFileError) as err:
        sources.read_weather_forecast(path)
    assert message.format(f=path) in str(err.value)


def test_the_backtest_command_reports_a_bad_forecast_file(tmp_path):
    path = write(tmp_path / "issued.csv", BAD_FILES["bad number"][0])
    assert_fails_with(backtest_cli("--load", str(LOAD), "--forecast", "own", "--seasons", "2025",
                                   "--weather-forecast", path),
                      f"error: {path}:2: temperature_2m: not a number: 'warm'")


def test_an_issued_forecast_with_the_iso_forecast_is_a_warning(tmp_path):
    load = write(tmp_path / "load.csv", "utc_hour_ending,demand_mw,isone_dayahead_forecast_mw\n"
                                        "2018-07-01 00:00,15000,14900\n")
    issued = write(tmp_path / "issued.csv", HEADER + "2018-07-01 00:00:00,20,boston\n")
    proc = backtest_cli("--load", load, "--seasons", "2018", "--weather-forecast", issued)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "warning: --weather-forecast is read by --forecast own only\n"


def _spoiled_after(temps: F.ForecastTemps, day: date) -> F.ForecastTemps:
    """Every forecast value for a day after `day` replaced by noise."""
    later = temps.ordinal > day.toordinal()
    temp = temps.temp.copy()
    temp[later] = np.random.default_rng(3).uniform(-10, 45, temp[later].shape)
    return dataclasses.replace(temps, temp=temp)


def test_honesty_forecast_values_for_days_after_d_leave_earlier_decisions_unchanged(
        inputs, temps):
    """Every forecast value for a day after D, and every load hour after D
    began, replaced by noise: the decisions taken before D do not move."""
    d = date(2025, 7, 15)
    config = PlannerConfig(forecast="own")
    cut = datetime.combine(d, time(0), tzinfo=NY).astimezone(UTC)
    real = planner.plan_season(CS, 2025, inputs, config)
    # the load after the cut goes too: the forecaster's level and fit read it
    mw = inputs.load.mw.copy()
    late = inputs.load.t + 3600 > F.to_epoch_s(cut)
    mw[late] = np.random.default_rng(4).uniform(5000, 30000, late.sum())
    spoiled_inputs = PlanInputs.build(F.HourlySeries(inputs.load.t, mw), NY, inputs.iso_forecast,
                                      weather_forecast=_spoiled_after(temps, d))
    spoiled = planner.plan_season(CS, 2025, spoiled_inputs, config)

    def key(decision):
        e = decision.event
        return (decision.day, decision.reason, decision.forecast_peak_mw,
                (e.start_utc, e.end_utc) if e else None)

    before = [key(x) for x in real.decisions if x.decided_utc < cut]
    assert len(before) == 45            # June 1 to July 15 (decided July 14, 15:00)
    # the issued forecasts were used once 14 days with them had passed
    sources_used = {x.day: x.forecast_source for x in real.decisions}
    assert sources_used[date(2025, 6, 5)] == "own"
    assert sources_used[date(2025, 7, 1)] == "own+issued"
    assert before == [key(x) for x in spoiled.decisions if x.decided_utc < cut]
    # and the forecast does reach the later decisions
    assert [key(x) for x in real.decisions if x.decided_utc >= cut] != \
        [key(x) for x in spoiled.decisions if x.decided_utc >= cut]


def _peak_errors(history, temps, with_temps: bool) -> tuple[float, float]:
    """MAPE of the daily peak and the share of days whose forecast peak hour is
    the actual one, July-August 2025, each day forecast at its decision moment."""
    daily = F.DailyLoad.build(history.load, NY)
    errors, hours = [], []
    day = date(2025, 7, 1)
    while day < date(2025, 9, 1):
        cutoff = F.to_epoch_s(planner.decision_moment(CS, day))
        fc = F.forecast_own(history.load, None, day, NY, cutoff, daily=daily,
                            temps=temps if with_temps else None)
        row = daily.rows(np.array([day.toordinal()]))[0]
        errors.append(abs(fc.peak_mw - daily.peak[row]) / daily.peak[row])
        _, local = F.local_day_hour(fc.t, NY)
        hours.append(local[int(np.argmax(fc.mw))] == int(np.argmax(daily.profile[row])))
        day += timedelta(days=1)
    return float(np.mean(errors)), float(np.mean(hours))


def test_own_forecast_with_issued_temperatures_halves_the_daily_peak_error(history, temps):
    with_temps, _ = _peak_errors(history, temps, True)
    without, _ = _peak_errors(history, temps, False)
    # measured: 4.8 % against 10 % from load history alone (docs/backtest.md)
    assert with_temps < 0.06 and with_temps < 0.6 * without


def test_2025_with_issued_forecasts_meets_the_targets(inputs):
    (season,) = backtest.run(CS, inputs, [2025], PlannerConfig(forecast="own")).seasons
    assert season.peak_hour_hit                  # 2025-06-24, 17:00 EDT
    assert season.event_count <= 45
    assert season.top40_hit >= 0.80
