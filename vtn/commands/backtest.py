"""`vtn backtest`: replay seasons of a program's events against real load history.

    vtn backtest --program connected_solutions [--load ISNE.csv|data:NAME] \\
        [--weather WEATHER.csv] [--weather-forecast ISSUED.csv] [--alerts FEED.xml] \\
        [--emergencies DECLARED.csv] [--forecast iso|own] \\
        [--seasons 2016-2019] [--policy planner|hindsight|threshold] [--json] [--why] \\
        [--plot FILE.png]

Progress on stderr; JSON (with --json) or a table on stdout. A bad input file
(missing, a missing column, a value that does not parse, hours out of order) or
a season the load file has no hour of: `error: ...` on stderr naming the file,
line and column, exit 1. Files are paths or `data:NAME`, a file shipped in flexadr/data
(`vtn data list`); the load defaults to the shipped ISO-NE 2015-2019 file.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import date

from flexadr import data as shipped
from schedules import backtest, calendar, emergencies, model, sources, storms
from schedules.forecast import HourlySeries, local_day_hour
from schedules.planner import PlanInputs, PlannerConfig

DEFAULT_LOAD = "data:isone_hourly_load_2015-07_2019-12.csv"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "backtest", help="replay seasons of planned events against real load history",
        description="Replay each season day by day with the online planner (or a baseline) "
                    "and score the events against the actual load. A bad input file stops "
                    "it with 'error: FILE:LINE: column: ...' and exit status 1.")
    parser.add_argument("--program", required=True,
                        help="program name under schedules/programs, or a .toml path")
    parser.add_argument("--load", metavar="CSV", action="append", type=shipped.argument,
                        help=f"default {DEFAULT_LOAD}. "
                             "ISO-NE-style hourly CSV: utc_hour_ending (increasing), "
                             "demand_mw_clean or demand_mw, isone_dayahead_forecast_mw; "
                             "empty numbers are missing hours (repeatable: older years and "
                             "recent months, hours not overlapping)")
    parser.add_argument("--weather", metavar="CSV", type=shipped.argument,
                        help="daily weather CSV: time (increasing dates), tmax, tavg")
    parser.add_argument("--weather-forecast", metavar="CSV", type=shipped.argument,
                        help="issued hourly temperature forecasts for --forecast own: "
                             "timestamp_local (wall clock, hour beginning), temperature_2m "
                             "(deg C), city; each value issued 24 h before its hour")
    parser.add_argument("--alerts", metavar="FILE", action="append", default=[], type=shipped.argument,
                        help="NWS CAP ATOM feed or api.weather.gov GeoJSON (repeatable)")
    parser.add_argument("--emergencies", metavar="CSV", action="append", default=[],
                        type=shipped.argument,
                        help="declared emergencies: type,start,end[,declared,description] "
                             "with UTC offsets (repeatable; see schedules/emergencies.py)")
    parser.add_argument("--forecast", choices=("iso", "own"), default="iso",
                        help="ISO's published day-ahead forecast, or the planner's own")
    parser.add_argument("--seasons", default="2016-2019", type=_years,
                        help="YEAR, FIRST-LAST or a comma list (default 2016-2019); "
                             "the load file must have hours in each")
    parser.add_argument("--policy", choices=backtest.POLICIES, default="planner",
                        help="the online planner, or a baseline (default planner)")
    parser.add_argument("--threshold-mw", type=float, default=backtest.DEFAULT_THRESHOLD_MW,
                        help="the threshold baseline's fixed forecast threshold")
    parser.add_argument("--targeted", action="store_true",
                        help="the program's commercial targeted option (e.g. at most 8 events)")
    parser.add_argument("--json", action="store_true", help="JSON on stdout")
    parser.add_argument("--why", action="store_true",
                        help="also every day's decision and what it saw: forecast peak, its "
                             "rank in the season so far, threshold, events left, exclusions")
    parser.add_argument("--plot", metavar="PNG", help="write a plot of one season (matplotlib)")
    parser.add_argument("--plot-season", type=int, help="season to plot (default: the last)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.set_defaults(func=run)


def _years(text: str) -> list[int]:
    try:
        if "-" in text:
            first, last = (int(x) for x in text.split("-", 1))
            if last < first:
                raise ValueError
            return list(range(first, last + 1))
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a season list: {text!r} (e.g. 2016-2019)")


def run(args: argparse.Namespace) -> int:
    try:
        program = model.load(args.program)
        leader = model.load(program.follows) if program.follows else None
        if args.targeted:
            if leader is not None:
                leader = model.targeted(leader)
            else:
                program = model.targeted(program)
    except (model.ProgramError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    lead = leader or program
    try:
        data = sources.read_load_files(args.load or [shipped.resolve(DEFAULT_LOAD)],
                                       program.timezone)
        weather = sources.read_daily_weather(args.weather) if args.weather else None
        weather_forecast = (sources.read_weather_forecast(args.weather_forecast, program.timezone)
                            if args.weather_forecast else None)
        alerts = [a for path in args.alerts for a in sources.read_alerts(path)]
        declared = [e for path in args.emergencies for e in sources.read_emergencies(path)]
    except sources.DataFileError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    uncovered = _uncovered_seasons(lead, data.load, args.seasons)
    if uncovered:
        print(f"error: {uncovered}", file=sys.stderr)
        return 1
    if args.forecast == "iso" and data.iso_forecast is None:
        print("error: --forecast iso needs an isone_dayahead_forecast_mw column", file=sys.stderr)
        return 1
    if args.forecast == "iso" and weather_forecast is not None:
        print("warning: --weather-forecast is read by --forecast own only", file=sys.stderr)
    for stray in emergencies.unused([lead], declared):
        print(f"warning: declared emergency of type {stray.type!r} ({stray.start_utc:%Y-%m-%d}): "
              f"{lead.id} excludes none of that type", file=sys.stderr)
    exclusions = sorted(storms.exclusions(lead, alerts) + emergencies.exclusions(lead, declared),
                        key=lambda e: (e.start_utc, e.end_utc))
    inputs = PlanInputs.build(data.load, program.timezone, data.iso_forecast, weather, exclusions,
                              weather_forecast)
    # the targeted option is an optimal-stopping problem (schedules/planner.py)
    config = PlannerConfig(forecast=args.forecast, stopping=args.targeted)

    total = sum(len(calendar.season_days(lead, y)) for y in args.seasons)
    bar = _progress(total, f"{program.id} {args.policy}/{args.forecast}", args.no_progress)
    try:
        result = backtest.run(program, inputs, args.seasons, config, args.policy, leader,
                              args.threshold_mw, progress=lambda day: bar.update(1))
    finally:
        bar.close()

    if args.json:
        json.dump(backtest.to_json(result, program, why=args.why), sys.stdout, indent=1)
        print()
    else:
        print(table(result))
        if args.why:
            print(why_table(result, program))
    if args.plot:
        year = args.plot_season or args.seasons[-1]
        season = next((s for s in result.seasons if s.year == year), None)
        if season is None:
            print(f"error: season {year} was not replayed", file=sys.stderr)
            return 1
        try:
            plot_season(program, season, inputs, args.plot)
        except ImportError:
            print("error: --plot needs matplotlib (pip install 'flexadr[plot]')", file=sys.stderr)
            return 1
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


def _uncovered_seasons(program: model.Program, load: HourlySeries, years: list[int]) -> str:
    """Why some seasons cannot be replayed (the load file has no hour in them), or ""."""
    days, _ = local_day_hour(load.t, program.timezone)
    covered = set(days.tolist())
    missing = [str(year) for year in years if not any(
        day.toordinal() in covered for day in calendar.season_days(program, year))]
    if not missing:
        return ""
    seasons = f"season{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
    first, last = date.fromordinal(int(days[0])), date.fromordinal(int(days[-1]))
    return f"{seasons}: the load file covers {first} to {last}"


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, desc: str, off: bool):
    if off:
        return _NoBar()
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit="day", file=sys.stderr, leave=False)


def table(result: backtest.BacktestResult) -> str:
    lines = [f"{result.program_id}  policy={result.policy}  forecast={result.forecast}",
             f"{'season':>6}  {'events':>6}  {'peak hour':>9}  {'top-40 hit':>10}  "
             f"{'cancelled':>9}  annual peak (UTC)"]
    for s in result.seasons:
        peak = s.annual_peak_utc.strftime("%Y-%m-%d %H:%M") if s.annual_peak_utc else "-"
        lines.append(f"{s.year:>6}  {s.event_count:>6}  {'hit' if s.peak_hour_hit else 'miss':>9}  "
                     f"{s.top40_hit:>10.3f}  {s.cancelled:>9}  {peak}")
    summary = result.summary
    lines.append(f"{'all':>6}  {summary['event_count_mean']:>6.1f}  "
                 f"{summary['peak_hour_hits']:>4}/{summary['seasons']:<4}  "
                 f"{summary['top40_hit_mean']:>10.3f}")
    return "\n".join(lines)


def why_table(result: backtest.BacktestResult, program: model.Program) -> str:
    """Every day's decision: called or not, forecast peak and which forecast,
    rank so far, threshold, events left, exclusions, and the reason."""
    lines = [f"{'day':<10}  {'event':<11}  {'forecast':>8}  {'from':<10}  {'rank':>4}  "
             f"{'threshold':>9}  {'left':>4}  reason"]
    for season in result.seasons:
        for d in season.decisions:
            window = "-"
            if d.event is not None:
                start, end = d.event.local(program.timezone)
                window = f"{start:%H:%M}-{end:%H:%M}"
            reason = d.reason + (f" [exclusions: {'; '.join(d.exclusions)}]"
                                 if d.exclusions else "")
            lines.append(f"{d.day.isoformat():<10}  {window:<11}  {_mw(d.forecast_peak_mw):>8}  "
                         f"{d.forecast_source or '-':<10}  "
                         f"{d.rank if d.rank is not None else '-':>4}  "
                         f"{_mw(d.threshold_mw):>9}  "
                         f"{d.budget_left if d.budget_left is not None else '-':>4}  {reason}")
    return "\n".join(lines)


def _mw(value: float | None) -> str:
    return f"{value:.0f}" if value is not None else "-"


def plot_season(program: model.Program, season: backtest.SeasonResult, inputs: PlanInputs,
                path: str) -> None:
    """Load, ISO's forecast and the events of one season (June-September)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from schedules.forecast import day_bounds_s, from_epoch_s

    tz = program.timezone
    days = calendar.season_days(program, season.year) or [date(season.year, 6, 1)]
    lo, _ = day_bounds_s(days[0], tz)
    _, hi = day_bounds_s(days[-1], tz)
    load = inputs.load.between(lo, hi)
    x = [from_epoch_s(t).astimezone(tz) for t in load.t]
    fig, ax = plt.subplots(figsize=(14, 4.5))
    ax.plot(x, load.mw, lw=0.7, color="black", label="actual load (MW)")
    if inputs.iso_forecast is not None:
        fc = inputs.iso_forecast.between(lo, hi)
        ax.plot([from_epoch_s(t).astimezone(tz) for t in fc.t], fc.mw, lw=0.6,
                color="tab:blue", alpha=0.7, label="ISO day-ahead forecast (MW)")
    for i, e in enumerate(season.events):
        ax.axvspan(e.start_utc.astimezone(tz), e.end_utc.astimezone(tz), color="tab:red",
                   alpha=0.35, lw=0, label="event" if i == 0 else None)
    ax.set_title(f"{program.id} {season.year}: {season.event_count} events, "
                 f"top-40 hit {season.top40_hit:.2f}, annual peak "
                 f"{'hit' if season.peak_hour_hit else 'missed'}")
    ax.set_ylabel("MW")
    ax.legend(loc="upper left")
    ax.set_ylim(bottom=float(np.nanmin(load.mw)) * 0.95 if len(load.mw) else 0)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Run just this subcommand (tests; and `python -m vtn.commands.backtest`)."""
    parser = argparse.ArgumentParser(prog="vtn")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
