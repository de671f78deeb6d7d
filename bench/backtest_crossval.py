"""Leave-one-season-out check of the planner's parameter choice (ISO forecast).

For each season 2016-2019: pick, among a small grid of PlannerConfig settings,
the one with the best mean top-40 hit (ties: fewer events) on the OTHER three
seasons, then score it on the held-out season. Prints the out-of-sample mean
beside the in-sample figure of the default config.

    .venv/bin/python bench/backtest_crossval.py [--forecast iso|own]
"""
from __future__ import annotations

import argparse
import itertools

import numpy as np

from flexadr import data as shipped
from schedules import backtest, model, sources
from schedules.planner import PlanInputs, PlannerConfig

YEARS = [2016, 2017, 2018, 2019]
GRID = {
    "reference": ["season", "hybrid"],
    "target_slack": [0, 3],
    "over_target_top": [0, 20],
    "weather_years": [0, 6],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--forecast", default="iso", choices=("iso", "own"))
    args = parser.parse_args()
    program = model.load("connected_solutions")
    data = sources.read_isone_csv(shipped.path("isone_hourly_load_2015-07_2019-12.csv"))
    weather = sources.read_daily_weather(shipped.path("boston_logan_daily_weather_2010-2019.csv"))
    inputs = PlanInputs.build(data.load, program.timezone, data.iso_forecast, weather)
    scores = {}
    for values in itertools.product(*GRID.values()):
        settings = dict(zip(GRID, values))
        result = backtest.run(program, inputs, YEARS,
                              PlannerConfig(forecast=args.forecast, **settings))
        scores[values] = {s.year: (s.top40_hit, s.event_count, s.peak_hour_hit)
                          for s in result.seasons}
    held = []
    for year in YEARS:
        others = [y for y in YEARS if y != year]

        def train(values):
            return (np.mean([scores[values][y][0] for y in others]),
                    -np.mean([scores[values][y][1] for y in others]))

        best = max(scores, key=train)
        held.append(scores[best][year])
        print(f"held out {year}: chose {dict(zip(GRID, best))} -> top-40 "
              f"{scores[best][year][0]:.3f}, {scores[best][year][1]} events, "
              f"peak {'hit' if scores[best][year][2] else 'missed'}")
    print(f"out-of-sample: top-40 {np.mean([h[0] for h in held]):.3f}, "
          f"events {np.mean([h[1] for h in held]):.2f}, peak hours {sum(h[2] for h in held)}/4")
    default = backtest.run(program, inputs, YEARS, PlannerConfig(forecast=args.forecast)).summary
    print(f"default config in-sample: top-40 {default['top40_hit_mean']:.3f}, "
          f"events {default['event_count_mean']:.2f}, peak hours {default['peak_hour_hits']}/4")


if __name__ == "__main__":
    main()
