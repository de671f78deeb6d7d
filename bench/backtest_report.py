"""Print the figures of docs/backtest.md (markdown) for seasons 2016-2019.

    .venv/bin/python bench/backtest_report.py > /tmp/figures.md
"""
from __future__ import annotations

from pathlib import Path

from schedules import backtest, model, sources
from schedules.planner import PlanInputs, PlannerConfig

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
YEARS = [2016, 2017, 2018, 2019]


def main() -> None:
    program = model.load("connected_solutions")
    data = sources.read_isone_csv(DATA / "isone_hourly_load_2015-07_2019-12.csv")
    weather = sources.read_daily_weather(DATA / "boston_logan_daily_weather_2010-2019.csv")
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
    print("| policy | peak hour hit | top-40 hit (mean) | events (mean) | "
          + " | ".join(f"{y} top-40 / events" for y in YEARS) + " |")
    print("|---|---|---|---|" + "---|" * len(YEARS))
    for label, policy, forecast in rows:
        result = backtest.run(program, inputs, YEARS, PlannerConfig(forecast=forecast),
                              policy=policy)
        s = result.summary
        per = " | ".join(f"{x.top40_hit:.3f} / {x.event_count}"
                         + ("" if x.peak_hour_hit else " (peak missed)")
                         for x in result.seasons)
        print(f"| {label} | {s['peak_hour_hits']}/{s['seasons']} | {s['top40_hit_mean']:.3f} | "
              f"{s['event_count_mean']:.2f} | {per} |")


if __name__ == "__main__":
    main()
