"""Print the figures of docs/backtest.md (markdown) for seasons 2016-2019.

    .venv/bin/python bench/backtest_report.py > /tmp/figures.md

The last row is an experiment, not a policy: the own forecaster handed each
event day's ACTUAL Boston temperature (a perfect weather forecast, which the
data set does not have and an honest planner cannot read). It bounds what a
temperature forecast input could add to the own forecaster.
"""
from __future__ import annotations

from dataclasses import replace

from flexadr import data as shipped
from schedules import backtest, model, sources
from schedules.forecast import DailyWeather
from schedules.planner import PlanInputs, PlannerConfig

YEARS = [2016, 2017, 2018, 2019]


def main() -> None:
    program = model.load("connected_solutions")
    data = sources.read_isone_csv(shipped.path("isone_hourly_load_2015-07_2019-12.csv"))
    weather = sources.read_daily_weather(shipped.path("boston_logan_daily_weather_2010-2019.csv"))
    inputs = PlanInputs.build(data.load, program.timezone, data.iso_forecast, weather)
    rows = [
        ("planner, `--forecast iso`", "planner", "iso"),
        ("planner, `--forecast own`", "planner", "own"),
        (f"fixed threshold {backtest.DEFAULT_THRESHOLD_MW:.0f} MW on ISO's forecast",
         "threshold", "iso"),
        (f"fixed threshold {backtest.DEFAULT_THRESHOLD_MW:.0f} MW on the own forecast",
         "threshold", "own"),
        ("season ranking by ISO's forecast, whole season known (45 days)", "forecast-rank", "iso"),
        ("season ranking by the own forecast, whole season known (45 days)", "forecast-rank",
         "own"),
        ("hindsight: top 45 days by actual load", "hindsight", "iso"),
    ]
    oracle = ("experiment: own forecast with a perfect temperature forecast", "planner", "own")
    print("| policy | peak hour hit | top-40 hit (mean) | events (mean) | "
          + " | ".join(f"{y} top-40 / events" for y in YEARS) + " |")
    print("|---|---|---|---|" + "---|" * len(YEARS))
    for label, policy, forecast in rows + [oracle]:
        config = PlannerConfig(forecast=forecast)
        if (label, policy, forecast) == oracle:
            inputs, config = _perfect_temperature_forecast(inputs, weather), \
                PlannerConfig(forecast="own", weather_years=0)
        result = backtest.run(program, inputs, YEARS, config, policy=policy)
        s = result.summary
        per = " | ".join(f"{x.top40_hit:.3f} / {x.event_count}"
                         + ("" if x.peak_hour_hit else " (peak missed)")
                         for x in result.seasons)
        print(f"| {label} | {s['peak_hour_hits']}/{s['seasons']} | {s['top40_hit_mean']:.3f} | "
              f"{s['event_count_mean']:.2f} | {per} |")


def _perfect_temperature_forecast(inputs: PlanInputs, weather: DailyWeather) -> PlanInputs:
    """The forecaster reads the temperature of D-2 (the last day that had ended
    at the decision): file day D's values under D-2 so that it reads D's.
    Earlier summers known by weather only are switched off (`weather_years=0`),
    as the shift would misalign their load-temperature fit."""
    shifted = DailyWeather(weather.day - 2, weather.tmax, weather.tmin, weather.tavg)
    return replace(inputs, weather=shifted)


if __name__ == "__main__":
    main()
