"""Time a 10-season backtest of one program (the issue asks for < 10 s on 2 cores).

    .venv/bin/python bench/bench_backtest.py [--program connected_solutions]

Two histories of 10 seasons each, built from the real files by copies shifted
by whole multiples of 52 weeks (weekdays stay weekdays):
- 2010-2019: the EIA-930 file (4 complete seasons, 2016-2019) extended
  backwards, with the real Boston weather of all ten; ISO's forecast and the
  own forecaster from load history and daily weather;
- 2016-2025: ISO-NE's 2025-2026 EEI load with the issued GFS temperature
  forecasts (`--weather-forecast`), extended backwards; the own forecaster with
  issued forecasts.
Figures printed, no thresholds asserted: timing is not a test.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

import numpy as np

from flexadr import data as shipped
from schedules import backtest, model, sources
from schedules.forecast import DAY_S, ForecastSeries, ForecastTemps, HourlySeries
from schedules.planner import PlanInputs, PlannerConfig

WEEKS_52_S = 364 * DAY_S


def tiled(load: HourlySeries, iso: ForecastSeries | None, copies: int, shift_s: int):
    """`load` (and `iso`) with `copies` earlier copies of itself, each shifted
    back by `shift_s` more, filling only the hours before what is already there."""
    t, mw = [load.t], [load.mw]
    ft, fmw, fis = ([iso.t], [iso.mw], [iso.issued_s]) if iso is not None else ([], [], [])
    for k in range(1, copies + 1):
        keep = load.t - k * shift_s < t[0][0]
        t.insert(0, load.t[keep] - k * shift_s)
        mw.insert(0, load.mw[keep])
        if iso is not None:
            ft.insert(0, iso.t[keep] - k * shift_s)
            fmw.insert(0, iso.mw[keep])
            fis.insert(0, iso.issued_s[keep] - k * shift_s)
    forecast = (ForecastSeries(np.concatenate(ft), np.concatenate(fmw), np.concatenate(fis))
                if iso is not None else None)
    return HourlySeries(np.concatenate(t), np.concatenate(mw)), forecast


def tiled_temps(temps: ForecastTemps, copies: int) -> ForecastTemps:
    """The issued forecasts with `copies` earlier copies, 52 weeks apart; where
    copies overlap, the later one is kept."""
    shifts = range(copies + 1)
    ordinal = np.concatenate([temps.ordinal - 364 * k for k in shifts])
    temp = np.concatenate([temps.temp for _ in shifts])
    issued = np.concatenate([temps.issued - k * WEEKS_52_S for k in shifts])
    ordinal, first = np.unique(ordinal, return_index=True)
    return replace(temps, ordinal=ordinal, temp=temp[first], issued=issued[first])


def _time(program, leader, inputs, years, config, label, loading_s) -> None:
    start = time.perf_counter()
    result = backtest.run(program, inputs, years, config, leader=leader)
    took = time.perf_counter() - start
    s = result.summary
    print(f"{program.id} {label}: 10 seasons in {took:.2f} s "
          f"({took / 10 * 1000:.0f} ms/season; +{loading_s:.2f} s loading)  "
          f"peak hour {s['peak_hour_hits']}/{s['seasons']}  "
          f"top-40 {s['top40_hit_mean']:.3f}  events {s['event_count_mean']:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--program", default="connected_solutions")
    args = parser.parse_args()
    program = model.load(args.program)
    leader = model.load(program.follows) if program.follows else None
    tz = program.timezone

    t0 = time.perf_counter()
    data = sources.read_isone_csv(shipped.path("isone_hourly_load_2015-07_2019-12.csv"))
    weather = sources.read_daily_weather(shipped.path("boston_logan_daily_weather_2010-2019.csv"))
    load, iso = tiled(data.load, data.iso_forecast, copies=2, shift_s=4 * WEEKS_52_S)
    t1 = time.perf_counter()
    inputs = PlanInputs.build(load, tz, iso, weather)
    t2 = time.perf_counter()
    print(f"cpus: {os.cpu_count()}  hours: {len(load.t)}  read CSVs: {t1 - t0:.2f} s  "
          f"build inputs: {t2 - t1:.2f} s")
    years = list(range(2010, 2020))
    for forecast in ("iso", "own"):
        _time(program, leader, inputs, years, PlannerConfig(forecast=forecast),
              f"forecast={forecast}", t2 - t0)

    t0 = time.perf_counter()
    eei = sources.read_isone_csv(shipped.path("isone_hourly_load_eei_2025-01_2026-07.csv"))
    temps = sources.read_weather_forecast(shipped.path("gfs_day_ahead_temperature_2025-2026_summers.csv"))
    load, _ = tiled(eei.load, None, copies=9, shift_s=WEEKS_52_S)
    inputs = PlanInputs.build(load, tz, weather_forecast=tiled_temps(temps, copies=9))
    t1 = time.perf_counter()
    print(f"hours: {len(load.t)}  read and build: {t1 - t0:.2f} s")
    _time(program, leader, inputs, list(range(2016, 2026)), PlannerConfig(forecast="own"),
          "forecast=own --weather-forecast", t1 - t0)


if __name__ == "__main__":
    main()
