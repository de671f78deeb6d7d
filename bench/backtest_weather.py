"""Print the issued-weather-forecast figures of docs/backtest.md (markdown).

    .venv/bin/python bench/backtest_weather.py > /tmp/weather.md

1. Day-ahead forecast error: MAPE of the daily peak and how often the forecast
   peak hour is the actual one (and inside the planner's 3 h window), each day
   forecast at ConnectedSolutions' decision moment (15:00 the day before), for
   ISO-NE's own forecast and the own forecaster with and without the issued
   GFS temperatures.
2. Backtests of 2025 and 2026 (June-July only: the load file ends on
   2026-07-31) on the 2016-2019 and 2025-2026 load files read as one history.
"""
from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from flexadr import data as shipped
from schedules import backtest, calendar, model, sources
from schedules import forecast as F
from schedules.planner import PlanInputs, PlannerConfig, decision_moment

CS = model.load("connected_solutions")
NY = CS.timezone


def forecast_errors(inputs: PlanInputs, forecast: str, first: date, last: date,
                    months: tuple[int, ...]) -> tuple[float, float, float, int]:
    """(MAPE of the daily peak, peak hour exact, peak hour inside the window, days)."""
    daily = inputs.daily
    errors, exact, inside = [], [], []
    day = first
    while day <= last:
        row = daily.rows(np.array([day.toordinal()]))[0]
        if day.month in months and row >= 0:
            moment = decision_moment(CS, day)
            cutoff = F.to_epoch_s(moment)
            if forecast == "iso":
                fc = F.forecast_iso(inputs.iso_forecast, day, NY, cutoff)
            else:
                fc = F.forecast_own(inputs.load, inputs.weather, day, NY, cutoff, daily=daily,
                                    temps=inputs.weather_forecast)
            if fc is not None:
                actual_hour = int(np.argmax(daily.profile[row]))
                _, hours = F.local_day_hour(fc.t, NY)
                errors.append(abs(fc.peak_mw - daily.peak[row]) / daily.peak[row])
                exact.append(int(hours[int(np.argmax(fc.mw))]) == actual_hour)
                window = backtest._place_window(CS, day, fc, ())
                start = window.start_utc.astimezone(NY).hour
                inside.append(start <= actual_hour < start + 3)
        day += timedelta(days=1)
    return float(np.mean(errors)), float(np.mean(exact)), float(np.mean(inside)), len(errors)


def main() -> None:
    old = sources.read_isone_csv(shipped.path("isone_hourly_load_2015-07_2019-12.csv"))
    weather = sources.read_daily_weather(shipped.path("boston_logan_daily_weather_2010-2019.csv"))
    both = sources.read_load_files([shipped.path("isone_hourly_load_2015-07_2019-12.csv"),
                                    shipped.path("isone_hourly_load_eei_2025-01_2026-07.csv")])
    temps = sources.read_weather_forecast(shipped.path("gfs_day_ahead_temperature_2025-2026_summers.csv"))
    history_2016 = PlanInputs.build(old.load, NY, old.iso_forecast, weather)
    issued = PlanInputs.build(both.load, NY, weather_forecast=temps)
    no_issued = PlanInputs.build(both.load, NY)

    print("| forecast | days | MAPE of the daily peak | peak hour exact | "
          "peak hour inside the 3 h window |")
    print("|---|---|---|---|---|")
    rows = [
        ("ISO-NE day-ahead, Jul-Aug 2016-2019", history_2016, "iso",
         date(2016, 7, 1), date(2019, 8, 31)),
        ("own, load history + observed daily weather, Jul-Aug 2016-2019", history_2016, "own",
         date(2016, 7, 1), date(2019, 8, 31)),
        ("own, load history only, Jul-Aug 2025", no_issued, "own",
         date(2025, 7, 1), date(2025, 8, 31)),
        ("own + issued GFS forecasts, Jul-Aug 2025", issued, "own",
         date(2025, 7, 1), date(2025, 8, 31)),
        ("own + issued GFS forecasts, Jun-Jul 2026", issued, "own",
         date(2026, 6, 1), date(2026, 7, 31)),
    ]
    for label, inputs, forecast, first, last in rows:
        months = (6, 7) if first.year == 2026 else (7, 8)
        mape, exact, inside, n = forecast_errors(inputs, forecast, first, last, months)
        print(f"| {label} | {n} | {100 * mape:.1f} % | {exact:.2f} | {inside:.2f} |")

    print()
    print("| policy | season | peak hour hit | top-40 hit | events |")
    print("|---|---|---|---|---|")
    runs = [
        ("planner, `--forecast own --weather-forecast`", issued, "planner", "own"),
        ("planner, `--forecast own` without issued forecasts", no_issued, "planner", "own"),
        (f"fixed threshold {backtest.DEFAULT_THRESHOLD_MW:.0f} MW on the own forecast "
         "with issued forecasts", issued, "threshold", "own"),
        ("hindsight: top 45 days by actual load", issued, "hindsight", "own"),
    ]
    for label, inputs, policy, forecast in runs:
        result = backtest.run(CS, inputs, [2025, 2026], PlannerConfig(forecast=forecast),
                              policy=policy)
        for s in result.seasons:
            season = "2025" if s.year == 2025 else "2026 (Jun-Jul; top-40 = every July day)"
            print(f"| {label} | {season} | {'hit' if s.peak_hour_hit else 'missed'} | "
                  f"{s.top40_hit:.3f} | {s.event_count} |")


if __name__ == "__main__":
    main()
