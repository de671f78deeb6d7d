"""The settlement report as one self-contained HTML page.

Plots are inline SVG written here (no plotting library, no script, no
network): the page opens from a file or an e-mail attachment anywhere. Times
are shown in the program's local time; numbers are those of the JSON document.
"""
from __future__ import annotations

import math
from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from vtn.settlement.model import FleetEventSeries, ParticipantSettlement, SeasonSettlement
from vtn.settlement.settle import to_json_dict

SEASON_COLOR = "#1f77b4"     # the season plot's bars (the browser test looks for it)
FLEET_COLOR = "#d62728"
BASELINE_COLOR = "#7f7f7f"
SHADE_COLOR = "#ffe9a8"

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:1.5em;margin-bottom:0}h2{margin-top:2em;border-bottom:1px solid #ccc}
.sub{color:#666;margin-top:4px}
table{border-collapse:collapse;margin:8px 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f4f4f4}
td.l,th.l{text-align:left}
.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:6px 10px;margin:6px 0}
.grid{display:flex;flex-wrap:wrap;gap:16px}
.card{border:1px solid #e3e3e3;border-radius:6px;padding:8px 12px}
svg text{font-family:inherit}
"""


# ---------------------------------------------------------------- SVG helpers

def nice_step(span: float, ticks: int = 5) -> float:
    """A 1/2/5 x 10^n step giving about `ticks` ticks over `span`."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


def y_axis(lo: float, hi: float) -> tuple[float, float, list[float]]:
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo < 1e-9:
        hi = lo + 1.0
    step = nice_step(hi - lo)
    lo_t, hi_t = math.floor(lo / step) * step, math.ceil(hi / step) * step
    ticks = [lo_t + i * step for i in range(int(round((hi_t - lo_t) / step)) + 1)]
    return lo_t, hi_t, ticks


def _fmt(v: float) -> str:
    return f"{v:.0f}" if abs(v - round(v)) < 1e-9 else f"{v:.2f}".rstrip("0").rstrip(".")


class Frame:
    """Plot area of an SVG: maps data to pixels and draws the y axis."""

    def __init__(self, width: int, height: int, x_lo: float, x_hi: float, y_lo: float, y_hi: float,
                 left: int = 52, right: int = 20, top: int = 12, bottom: int = 34):
        self.width, self.height = width, height
        self.left, self.right, self.top, self.bottom = left, right, top, bottom
        self.x_lo, self.x_hi = x_lo, (x_hi if x_hi > x_lo else x_lo + 1)
        self.y_lo, self.y_hi, self.y_ticks = y_axis(y_lo, y_hi)

    def x(self, v: float) -> float:
        return self.left + (v - self.x_lo) / (self.x_hi - self.x_lo) * (self.width - self.left - self.right)

    def y(self, v: float) -> float:
        return self.top + (self.y_hi - v) / (self.y_hi - self.y_lo) * (self.height - self.top - self.bottom)

    def axes(self, y_label: str) -> list[str]:
        out = []
        for tick in self.y_ticks:
            y = self.y(tick)
            out.append(f'<line x1="{self.left}" x2="{self.width - self.right}" y1="{y:.1f}" y2="{y:.1f}" '
                       f'stroke="#e5e5e5"/>')
            out.append(f'<text x="{self.left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end">'
                       f'{_fmt(tick)}</text>')
        out.append(f'<line x1="{self.left}" x2="{self.left}" y1="{self.top}" '
                   f'y2="{self.height - self.bottom}" stroke="#888"/>')
        out.append(f'<line x1="{self.left}" x2="{self.width - self.right}" y1="{self.y(0):.1f}" '
                   f'y2="{self.y(0):.1f}" stroke="#888"/>')
        mid = (self.top + self.height - self.bottom) / 2
        out.append(f'<text x="12" y="{mid:.1f}" font-size="11" transform="rotate(-90 12 {mid:.1f})" '
                   f'text-anchor="middle">{escape(y_label)}</text>')
        return out


def _svg(width: int, height: int, body: list[str], label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">'
            + "".join(body) + "</svg>")


def bar_plot(labels: list[str], values: list[float], *, width: int, height: int, color: str,
             y_label: str, mean: float | None = None, label_every: int = 1, title: str = "") -> str:
    f = Frame(width, height, 0, max(len(values), 1), min(values, default=0), max(values, default=0))
    body = f.axes(y_label)
    slot = (f.x(1) - f.x(0)) if values else 0
    for i, (lab, v) in enumerate(zip(labels, values)):
        x0 = f.x(i) + slot * 0.12
        y_top, y_bot = sorted((f.y(v), f.y(0)))
        body.append(f'<rect x="{x0:.1f}" y="{y_top:.1f}" width="{slot * 0.76:.1f}" '
                    f'height="{max(y_bot - y_top, 0.5):.1f}" fill="{color}"><title>{escape(lab)}: '
                    f'{v:.3f} kW</title></rect>')
        if i % label_every == 0:
            cx = f.x(i + 0.5)
            body.append(f'<text x="{cx:.1f}" y="{height - f.bottom + 14}" font-size="10" '
                        f'text-anchor="middle">{escape(lab)}</text>')
    if mean is not None and values:
        y = f.y(mean)
        body.append(f'<line x1="{f.left}" x2="{width - f.right}" y1="{y:.1f}" y2="{y:.1f}" '
                    f'stroke="#222" stroke-dasharray="6 4"/>')
        body.append(f'<text x="{width - f.right - 4}" y="{y - 4:.1f}" font-size="11" text-anchor="end" '
                    f'stroke="#fff" stroke-width="3" paint-order="stroke">season mean {mean:.3f} kW</text>')
    return _svg(width, height, body, title or y_label)


def event_plot(fleet: FleetEventSeries, tz: ZoneInfo, *, width: int = 480, height: int = 220) -> str:
    """Fleet kW and baseline around one event; the event window shaded."""
    t0 = fleet.points[0].start_utc if fleet.points else fleet.start_utc
    xs = [(p.start_utc - t0).total_seconds() for p in fleet.points]
    step = (xs[1] - xs[0]) if len(xs) > 1 else 300
    x_hi = (xs[-1] + step) if xs else 1
    kws = [p.kw for p in fleet.points if not math.isnan(p.kw)]
    bases = [p.baseline_kw for p in fleet.points if not math.isnan(p.baseline_kw)]
    f = Frame(width, height, 0, x_hi, min(kws + bases, default=0), max(kws + bases, default=0))
    body = []
    sx0, sx1 = f.x((fleet.start_utc - t0).total_seconds()), f.x((fleet.end_utc - t0).total_seconds())
    body.append(f'<rect x="{sx0:.1f}" y="{f.top}" width="{sx1 - sx0:.1f}" '
                f'height="{height - f.top - f.bottom}" fill="{SHADE_COLOR}"/>')
    body += f.axes("kW")
    # hour ticks in local time
    first_hour = math.ceil(t0.timestamp() / 3600) * 3600
    for ts in range(first_hour, int(t0.timestamp() + x_hi) + 1, 3600):
        x = f.x(ts - t0.timestamp())
        label = datetime.fromtimestamp(ts, tz).strftime("%H:%M")
        body.append(f'<text x="{x:.1f}" y="{height - f.bottom + 14}" font-size="10" '
                    f'text-anchor="middle">{label}</text>')
    body.append(_step_path([(x, p.baseline_kw) for x, p in zip(xs, fleet.points)], step, f,
                           BASELINE_COLOR, dash=True))
    body.append(_step_path([(x, p.kw) for x, p in zip(xs, fleet.points)], step, f, FLEET_COLOR))
    body.append(f'<text x="{f.left + 6}" y="{f.top + 12}" font-size="11" fill="{FLEET_COLOR}">fleet kW</text>')
    body.append(f'<text x="{f.left + 70}" y="{f.top + 12}" font-size="11" fill="{BASELINE_COLOR}">'
                f'baseline kW</text>')
    body.append(f'<text x="{width - f.right}" y="{height - 4}" font-size="10" text-anchor="end">'
                f'local time ({escape(tz.key)}); shaded: event</text>')
    return _svg(width, height, body, f"event {fleet.event_id}: fleet kW against baseline")


def _step_path(points: list[tuple[float, float]], step: float, f: Frame, color: str,
               dash: bool = False) -> str:
    """Interval averages drawn as steps; NaN breaks the line."""
    parts, pen_down = [], False
    for x, v in points:
        if math.isnan(v):
            pen_down = False
            continue
        y = f.y(v)
        parts.append(f"{'L' if pen_down else 'M'}{f.x(x):.1f},{y:.1f} L{f.x(x + step):.1f},{y:.1f}")
        pen_down = True
    if not parts:
        return ""
    extra = ' stroke-dasharray="5 3"' if dash else ""
    return f'<path d="{" ".join(parts)}" fill="none" stroke="{color}" stroke-width="1.6"{extra}/>'


# ---------------------------------------------------------------- page

def _table(headers: list[str], rows: list[list], left_cols: int = 1) -> str:
    head = "".join(f'<th class="{"l" if i < left_cols else ""}">{escape(h)}</th>' for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(f'<td class="{"l" if i < left_cols else ""}">{escape(_cell(v))}</td>'
                         for i, v in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(v) -> str:
    if isinstance(v, Usd):
        return f"${v.amount:,.2f}"
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.3f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:,.0f}"
    if isinstance(v, dict):
        return ", ".join(f"{k}: {x}" for k, x in v.items())
    if isinstance(v, list):
        return f"{len(v)} item(s)"
    return str(v)


class Usd:
    """A money cell: always two decimals."""

    def __init__(self, amount: float):
        self.amount = amount


def _figure(key: str, value):
    return Usd(value) if key.endswith("_usd") and isinstance(value, (int, float)) else value


def _local(dt: datetime, tz: ZoneInfo) -> str:
    return dt.astimezone(tz).strftime("%a %Y-%m-%d %H:%M")


def _season_section(result: SeasonSettlement, tz: ZoneInfo) -> str:
    fleet_kw = {f.event_id: f.kw for f in result.fleet}
    event_ids = [e.event_id for e in result.participants[0].events] if result.participants else []
    values = [fleet_kw.get(e, sum(p.events[i].kw for p in result.participants))
              for i, e in enumerate(event_ids)]
    mean = sum(values) / len(values) if values else 0.0
    every = max(1, math.ceil(len(values) / 20))
    plot = bar_plot(event_ids, values, width=1000, height=280, color=SEASON_COLOR,
                    y_label="fleet kW shifted per event" if result.program == "managed_charging"
                    else "fleet kW per event", mean=mean, label_every=every,
                    title="season: fleet performance per event")
    totals = _table(["figure", "value"], [[k, _figure(k, v)] for k, v in result.totals.items()])
    warnings = "".join(f'<div class="warn">{escape(w)}</div>' for w in result.warnings)
    return (f'<section id="season"><h2>Season summary</h2>{warnings}'
            f'<div class="card" id="season-plot">{plot}</div>{totals}</section>')


def _event_section(result: SeasonSettlement, tz: ZoneInfo) -> str:
    if not result.fleet:
        return ""
    cards = []
    for f in result.fleet:
        override = result.overrides.get(f.event_id)
        flag = (f'<div class="warn override">override: {escape(override)}</div>'
                if override else "")
        cards.append(f'<div class="card"><h3>{escape(f.event_id)}</h3>'
                     f'<div class="sub">{_local(f.start_utc, tz)} – {f.end_utc.astimezone(tz):%H:%M}'
                     f' · fleet {f.kw:.3f} kW</div>{flag}{event_plot(f, tz)}</div>')
    return f'<section id="events"><h2>Events</h2><div class="grid">{"".join(cards)}</div></section>'


def _participant_section(p: ParticipantSettlement, doc_p: dict, tz: ZoneInfo,
                         overrides: dict[str, str]) -> str:
    charging = any(e.baseline_kw is not None for e in p.events)
    flagged = any(e.event_id in overrides for e in p.events)
    headers = (["event", "kW", "status", "covered h"] + (["baseline kW", "actual kW"] if charging else [])
               + (["override"] if flagged else []))
    rows = [[e.event_id, e.kw, str(e.status), e.covered_s / 3600]
            + ([e.baseline_kw, e.actual_kw] if charging else [])
            + ([overrides.get(e.event_id)] if flagged else []) for e in p.events]
    plot = bar_plot([e.event_id for e in p.events], [e.kw for e in p.events], width=360, height=150,
                    color="#4c9f70", y_label="kW", mean=p.season_kw,
                    label_every=max(1, math.ceil(len(p.events) / 8)),
                    title=f"{p.participant}: kW per event")
    skip = {"participant", "events", "season_kw", "payment_usd", "payments"}
    details = [[k, _figure(k, v)] for k, v in doc_p.items()
               if k not in skip and (not isinstance(v, list) or (k == "connectivity_notices" and v))]
    payments = _table(["payment", "USD", "paid in"],
                      [[x.kind, Usd(x.amount_usd), x.paid_in] for x in p.payments]) if p.payments else ""
    return (f'<div class="card participant" id="p-{escape(p.participant)}">'
            f'<h3>{escape(p.participant)}</h3>'
            f'<div class="sub">season {p.season_kw:.3f} kW · payment ${p.payment_usd:,.2f}</div>'
            f'{plot}{_table(["figure", "value"], details)}{payments}{_table(headers, rows)}</div>')


def to_html(result: SeasonSettlement) -> str:
    tz = ZoneInfo(result.timezone)
    doc = to_json_dict(result)
    summary = _table(
        ["participant", "season kW", "payment USD"],
        [[p.participant, p.season_kw, Usd(p.payment_usd)] for p in result.participants])
    participants = "".join(_participant_section(p, d, tz, result.overrides)
                           for p, d in zip(result.participants, doc["participants"]))
    title = f"{result.program} settlement, season {result.season}"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<title>{escape(title)}</title><style>{CSS}</style></head><body>'
            f'<h1>{escape(title)}</h1>'
            f'<div class="sub">{len(result.participants)} participants · '
            f'{result.totals.get("events_called", 0)} events · times in {escape(result.timezone)} · '
            f'total payment ${result.totals.get("payment_usd", 0):,.2f}</div>'
            f'{_season_section(result, tz)}'
            f'<section id="participants-summary"><h2>Participants</h2>{summary}</section>'
            f'{_event_section(result, tz)}'
            f'<section id="participants"><h2>Per participant</h2><div class="grid">{participants}</div></section>'
            f'</body></html>\n')
