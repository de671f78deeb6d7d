"""Calendar rules: seasons, allowed days, holidays, test day, local -> UTC with DST."""
from __future__ import annotations

import dataclasses
from datetime import date, datetime, time, timedelta, timezone

from schedules import calendar, model

UTC = timezone.utc
CS = model.load("connected_solutions")
MC = model.load("managed_charging")
V2X = model.load("v2x_demo")


def test_connected_solutions_never_on_its_three_holidays_even_before_2021():
    for year in (2016, 2019, 2024):
        assert calendar.day_exclusion(CS, date(year, 6, 19))       # Juneteenth
        assert calendar.day_exclusion(CS, date(year, 7, 4))        # Independence Day
    assert calendar.day_exclusion(CS, date(2018, 9, 3)).startswith("holiday: Labor Day")
    assert calendar.is_allowed_day(CS, date(2018, 7, 7))           # a Saturday is fine
    assert calendar.is_allowed_day(CS, date(2018, 5, 28)) is False  # season not started
    # Memorial-Day-like holidays the program does not name are allowed (in season)
    assert calendar.is_allowed_day(CS, date(2018, 7, 5))


def test_managed_charging_weekdays_only_and_observed_holidays():
    assert calendar.day_exclusion(MC, date(2018, 7, 7)) == "weekend"
    assert calendar.is_allowed_day(MC, date(2018, 7, 6))
    # July 4 2020 is a Saturday: the observed holiday Friday July 3 is excluded
    assert "observed" in calendar.day_exclusion(MC, date(2020, 7, 3))


def test_managed_charging_test_day_is_first_non_holiday_weekday_of_june():
    assert calendar.test_event_day(MC, 2019) == date(2019, 6, 3)   # June 1 2019 = Saturday
    assert calendar.test_event_day(MC, 2018) == date(2018, 6, 1)   # a Friday
    assert calendar.test_event_day(CS, 2018) is None


def test_window_is_local_time_stored_as_utc_across_dst():
    summer = calendar.program_window_utc(CS, date(2018, 7, 2))
    assert summer.start_utc == datetime(2018, 7, 2, 19, tzinfo=UTC)     # 15:00 EDT
    assert summer.end_utc == datetime(2018, 7, 3, 0, tzinfo=UTC)        # 20:00 EDT
    # Clean Peak 16:00-20:00 the day before and the day of the 2024 spring-forward
    before = calendar.window_utc(V2X, date(2024, 3, 9), time(16), time(20))
    after = calendar.window_utc(V2X, date(2024, 3, 10), time(16), time(20))
    assert before.start_utc == datetime(2024, 3, 9, 21, tzinfo=UTC)     # EST, UTC-5
    assert after.start_utc == datetime(2024, 3, 10, 20, tzinfo=UTC)     # EDT, UTC-4
    assert before.duration_s == after.duration_s == 4 * 3600


def test_window_over_the_dst_transition_keeps_wall_clock_ends():
    night = dataclasses.replace(CS, window=model.DailyWindow(time(0), time(4)))
    spring = calendar.program_window_utc(night, date(2024, 3, 10))
    fall = calendar.program_window_utc(night, date(2024, 11, 3))
    assert spring.duration_s == 3 * 3600     # 02:00-03:00 does not exist
    assert fall.duration_s == 5 * 3600       # 01:00-02:00 happens twice
    event = calendar.event_window_utc(night, date(2024, 3, 10), time(1), timedelta(hours=2))
    assert event.start_utc == datetime(2024, 3, 10, 6, tzinfo=UTC)
    assert event.end_utc == datetime(2024, 3, 10, 7, tzinfo=UTC)       # 03:00 EDT


def test_clean_peak_seasons_cover_every_day_including_winter_wrap_and_feb_29():
    assert calendar.clean_peak_window(V2X, date(2024, 2, 29)).name == "winter"
    assert calendar.clean_peak_window(V2X, date(2023, 12, 31)).name == "winter"
    assert calendar.clean_peak_window(V2X, date(2024, 3, 1)).window.start == time(17)
    assert calendar.clean_peak_window(V2X, date(2024, 5, 15)).name == "summer"
    assert calendar.clean_peak_window(V2X, date(2024, 9, 15)).name == "fall"
    day = date(2023, 1, 1)
    while day.year == 2023:
        assert calendar.clean_peak_window(V2X, day) is not None, day
        day += timedelta(days=1)


def test_candidate_starts_keep_the_event_inside_the_window():
    assert calendar.candidate_starts(CS, timedelta(hours=3)) == [time(15), time(16), time(17)]
    assert calendar.candidate_starts(CS, timedelta(hours=2)) == [time(15), time(16), time(17),
                                                                 time(18)]
    assert calendar.candidate_starts(MC, timedelta(hours=8)) == [time(13)]
    assert len(calendar.season_days(CS, 2018)) == 122
