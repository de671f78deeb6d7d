"""Time a 10-season backtest of one program (the issue asks for < 10 s on 2 cores).

    .venv/bin/python bench/bench_backtest.py [--program connected_solutions]

The real ISO-NE file holds 4 complete seasons (2016-2019). For 10 seasons the
series is extended backwards with copies of itself shifted by whole multiples
of 52 weeks (weekdays stay weekdays), giving seasons 2010-2019; the weather file
is real for all ten. Figures printed, no thresholds asserted: timing is not a test.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from schedules import backtest, model, sources
from schedules.forecast import ForecastSeries, HourlySeries
from schedules.planner import PlanInputs, PlannerConfig

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHIFT_S = 4 * 364 * 86400          # 208 weeks


def tiled(load: HourlySeries, iso: ForecastSeries, copies: int):
    t, mw, ft, fmw, fis = [load.t], [load.mw], [iso.t], [iso.mw], [iso.issued_s]
    for k in range(1, copies + 1):
        first = t[0][0]
        keep = load.t - k * SHIFT_S < first
        t.insert(0, load.t[keep] - k * SHIFT_S)
        mw.insert(0, load.mw[keep])
        ft.insert(0, iso.t[keep] - k * SHIFT_S)
        fmw.insert(0, iso.mw[keep])
        fis.insert(0, iso.issued_s[keep] - k * SHIFT_S)
    return (HourlySeries(np.concatenate(t), np.concatenate(mw)),
            ForecastSeries(np.concatenate(ft), np.concatenate(fmw), np.concatenate(fis)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--program", default="connected_solutions")
    args = parser.parse_args()
    program = model.load(args.program)
    leader = model.load(program.follows) if program.follows else None

    t0 = time.perf_counter()
    data = sources.read_isone_csv(DATA / "isone_hourly_load_2015-07_2019-12.csv")
    weather = sources.read_daily_weather(DATA / "boston_logan_daily_weather_2010-2019.csv")
    load, iso = tiled(data.load, data.iso_forecast, copies=2)
    t1 = time.perf_counter()
    inputs = PlanInputs.build(load, program.timezone, iso, weather)
    t2 = time.perf_counter()
    print(f"cpus: {os.cpu_count()}  hours: {len(load.t)}  read CSVs: {t1 - t0:.2f} s  "
          f"build inputs: {t2 - t1:.2f} s")
    years = list(range(2010, 2020))
    for forecast in ("iso", "own"):
        start = time.perf_counter()
        result = backtest.run(program, inputs, years, PlannerConfig(forecast=forecast),
                              leader=leader)
        took = time.perf_counter() - start
        s = result.summary
        print(f"{program.id} forecast={forecast}: 10 seasons in {took:.2f} s "
              f"({took / 10 * 1000:.0f} ms/season; +{t2 - t0:.2f} s loading)  "
              f"peak hour {s['peak_hour_hits']}/{s['seasons']}  "
              f"top-40 {s['top40_hit_mean']:.3f}  events {s['event_count_mean']:.1f}")


if __name__ == "__main__":
    main()
