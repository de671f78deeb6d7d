"""Forecast inputs: the real ISO-NE CSV, ISO's forecast by issue time, the own forecaster."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from flexadr import data as shipped
from schedules import forecast as F
from schedules import sources

UTC = timezone.utc
NY = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def load_file():
    return sources.read_isone_csv(shipped.path("isone_hourly_load_2015-07_2019-12.csv"))


@pytest.fixture(scope="module")
def weather():
    return sources.read_daily_weather(shipped.path("boston_logan_daily_weather_2010-2019.csv"))


def _cutoff(day: date) -> int:
    """15:00 local the day before: ConnectedSolutions' decision moment."""
    return F.to_epoch_s(datetime.combine(day - timedelta(days=1), time(15), tzinfo=NY))


def test_isone_csv_reads_hour_starts_in_utc_and_both_columns(load_file):
    load, iso = load_file.load, load_file.iso_forecast
    assert len(load.t) == 39461 and np.all(np.diff(load.t) == 3600)
    # first row: hour ending 2015-07-02 00:00 UTC, i.e. the hour starting 23:00 UTC
    assert F.from_epoch_s(load.t[0]) == datetime(2015, 7, 1, 23, tzinfo=UTC)
    assert load.mw[0] == 17653 and iso.mw[0] == 17410
    assert np.isfinite(load.mw).all()


def test_iso_forecast_is_known_only_from_10_local_the_day_before(load_file):
    day = date(2018, 8, 29)
    issued = F.to_epoch_s(datetime(2018, 8, 28, 10, tzinfo=NY))
    assert F.forecast_iso(load_file.iso_forecast, day, NY, issued - 1) is None
    fc = F.forecast_iso(load_file.iso_forecast, day, NY, issued)
    assert len(fc.t) == 24 and fc.peak_mw > 24000


def test_dst_days_have_23_and_25_local_hours():
    assert len(F.day_hours_s(date(2018, 3, 11), NY)) == 23
    assert len(F.day_hours_s(date(2018, 11, 4), NY)) == 25
    days, hours = F.local_day_hour(F.day_hours_s(date(2018, 11, 4), NY), NY)
    assert set(days.tolist()) == {date(2018, 11, 4).toordinal()}
    assert hours.tolist().count(1) == 2      # 01:00 happens twice


def test_own_forecast_ignores_everything_after_the_cutoff(load_file, weather):
    day = date(2018, 7, 17)
    cutoff = _cutoff(day)
    before = F.forecast_own(load_file.load, weather, day, NY, cutoff)
    spoiled_mw = load_file.load.mw.copy()
    spoiled_mw[load_file.load.t + 3600 > cutoff] *= 3.0
    spoiled_w = F.DailyWeather(weather.day, weather.tmax + (weather.day >= day.toordinal() - 1) * 20,
                               weather.tmin, weather.tavg)
    after = F.forecast_own(F.HourlySeries(load_file.load.t, spoiled_mw), spoiled_w, day, NY, cutoff)
    np.testing.assert_array_equal(before.mw, after.mw)
    np.testing.assert_array_equal(before.peak_hour_chance, after.peak_hour_chance)
    # and the cut is not a no-op: spoiling data BEFORE the cutoff changes the forecast
    spoiled_mw = load_file.load.mw.copy()
    spoiled_mw[(load_file.load.t + 3600 <= cutoff) & (load_file.load.t > cutoff - 86400)] *= 1.5
    changed = F.forecast_own(F.HourlySeries(load_file.load.t, spoiled_mw), weather, day, NY, cutoff)
    assert not np.allclose(changed.mw, before.mw)


def test_own_forecast_tracks_summer_daily_peaks(load_file, weather):
    daily = F.DailyLoad.build(load_file.load, NY)
    errors, predicted, actual = [], [], []
    day = date(2018, 7, 1)
    while day < date(2018, 9, 1):
        fc = F.forecast_own(load_file.load, weather, day, NY, _cutoff(day), daily=daily)
        real = daily.peak[daily.rows(np.array([day.toordinal()]))[0]]
        predicted.append(fc.peak_mw)
        actual.append(real)
        errors.append(abs(fc.peak_mw - real) / real)
        day += timedelta(days=1)
    assert np.mean(errors) < 0.12
    assert np.corrcoef(predicted, actual)[0, 1] > 0.6
    # on the 2018 annual peak day the shape puts the peak in the late afternoon
    fc = F.forecast_own(load_file.load, weather, date(2018, 8, 29), NY, _cutoff(date(2018, 8, 29)))
    _, hours = F.local_day_hour(fc.t, NY)
    assert 15 <= hours[int(np.argmax(fc.mw))] <= 18


def _window_start(fc: F.DayForecast, by_chance: bool) -> int:
    """The 3 h start (15-17 local) the planner would pick, by peak-hour chance
    first or by the load shape alone."""
    _, hours = F.local_day_hour(fc.t, NY)

    def score(start):
        inside = (hours >= start) & (hours < start + 3)
        chance = float(fc.peak_hour_chance[inside].sum()) if by_chance else 0.0
        return chance, float(fc.mw[inside].sum())
    return max((15, 16, 17), key=score)


def test_own_forecast_peak_hour_chance_places_windows_on_real_peaks(load_file, weather):
    daily = F.DailyLoad.build(load_file.load, NY)
    by_chance = by_shape = reachable = 0
    day = date(2016, 7, 1)
    while day < date(2019, 9, 1):
        if day.month in (7, 8):
            fc = F.forecast_own(load_file.load, weather, day, NY, _cutoff(day), daily=daily)
            assert fc.peak_hour_chance.sum() == pytest.approx(1.0)
            peak_hour = int(np.argmax(daily.profile[daily.rows(np.array([day.toordinal()]))[0]]))
            if 15 <= peak_hour < 20:               # a 15:00-20:00 event can hold it
                reachable += 1
                start = _window_start(fc, by_chance=True)
                by_chance += start <= peak_hour < start + 3
                start = _window_start(fc, by_chance=False)
                by_shape += start <= peak_hour < start + 3
        day += timedelta(days=1)
    assert reachable > 200
    assert by_chance >= by_shape
    assert by_chance >= 0.95 * reachable


def test_daily_table_keeps_only_days_that_had_ended(load_file):
    daily = F.DailyLoad.build(load_file.load, NY)
    cut = F.to_epoch_s(datetime(2018, 7, 17, 15, tzinfo=NY))
    known = daily.as_of(cut)
    assert date.fromordinal(int(known.ordinal[-1])) == date(2018, 7, 16)
