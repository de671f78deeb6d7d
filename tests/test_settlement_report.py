"""The HTML settlement report: self-contained, the plots it promises, and a
real render in headless Chromium (screenshot checked for the season plot)."""
from __future__ import annotations

import os
import re
import struct
import subprocess
import zlib
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from vtn.settlement import EventRecord, ParticipantInfo, SettlementInput, TelemetryInterval, settle
from vtn.settlement.html_report import BASELINE_COLOR, SEASON_COLOR, SHADE_COLOR, to_html

NY = ZoneInfo("America/New_York")
CHROMIUM = "/usr/bin/chromium"


def discharge_season() -> SettlementInput:
    """3 participants, 4 events of 2-3 h, 15-min data; p3 misses event e2."""
    events, telemetry = [], []
    for i, d in enumerate((6, 8, 13, 15)):
        start = datetime.combine(date(2026, 7, d), time(16), tzinfo=NY).astimezone(timezone.utc)
        end = start + timedelta(hours=2 + i % 2)
        events.append(EventRecord(f"e{i + 1}", start, end))
        for p, kw in (("p1", 4.0), ("p2", 5.5), ("<p3>", 3.0)):
            if p == "<p3>" and i == 1:
                continue
            t = start
            while t < end:
                telemetry.append(TelemetryInterval(p, t, t + timedelta(minutes=15), kw))
                t += timedelta(minutes=15)
    return SettlementInput(tuple(events), tuple(telemetry))


def charging_season() -> SettlementInput:
    """One participant charging 7 kW 14:00-16:00 on weekdays, 0 during the event."""
    event_day = date(2026, 7, 15)
    start, end = (datetime.combine(event_day, time(h), tzinfo=NY).astimezone(timezone.utc) for h in (13, 21))
    telemetry = []
    for back in range(1, 20):
        d = event_day - timedelta(days=back)
        s = datetime.combine(d, time(14), tzinfo=NY).astimezone(timezone.utc)
        telemetry.append(TelemetryInterval("m1", s, s + timedelta(hours=2), 7.0))
    telemetry.append(TelemetryInterval("m1", start, end, 0.0))
    return SettlementInput((EventRecord("mc1", start, end),), tuple(telemetry), (ParticipantInfo("m1"),))


@pytest.fixture(scope="module")
def discharge_html() -> str:
    return to_html(settle("connected_solutions", discharge_season(), fleet=True))


def test_report_is_self_contained(discharge_html):
    # Nothing to fetch: no scripts, stylesheets, images or fonts from anywhere.
    assert not re.search(r"<script|<link|<img|src=|href=|url\(|@import", discharge_html)
    assert set(re.findall(r"https?://[^\"' ]+", discharge_html)) == {"http://www.w3.org/2000/svg"}


def test_report_has_season_event_and_participant_plots(discharge_html):
    # 1 season plot + 4 event plots + 3 participant plots.
    assert discharge_html.count("<svg") == 8
    assert 'id="season-plot"' in discharge_html and SEASON_COLOR in discharge_html
    # every event plot shades its window
    assert discharge_html.count(f'fill="{SHADE_COLOR}"') == 4
    assert "season mean" in discharge_html


def test_report_numbers_match_the_settlement(discharge_html):
    # p1: 4 kW in every event -> 4 kW, $1,100.00; <p3>: 3,0,3,3 -> 2.25 kW, $618.75.
    assert "$1,100.00" in discharge_html and "$618.75" in discharge_html
    # a participant name is text, never markup
    assert "&lt;p3&gt;" in discharge_html and "<p3>" not in discharge_html


def test_managed_charging_report_draws_the_baseline():
    html = to_html(settle("managed_charging", charging_season(), fleet=True))
    # baseline 14 kWh / 8 h = 1.75 kW; actual 0 -> shifted 1.75 kW
    assert f'stroke="{BASELINE_COLOR}"' in html
    assert "1.75" in html
    assert "baseline kW" in html


# ---------------------------------------------------------------- browser

def png_pixels(path: Path) -> tuple[int, int, list[list[bytes]]]:
    """Decode an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes) into rows."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", chunk)
            assert depth == 8 and color in (2, 6) and interlace == 0, (depth, color, interlace)
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for r in range(height):
        f = raw[r * (stride + 1)]
        line = bytearray(raw[r * (stride + 1) + 1:(r + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([bytes(line[j:j + 3]) for j in range(0, stride, bpp)])
        prev = line
    return width, height, rows


# CI (.ci/run) installs Chromium and sets FLEXADR_REQUIRE_BROWSER=1, so there it always runs.
@pytest.mark.skipif(not os.path.exists(CHROMIUM) and os.environ.get("FLEXADR_REQUIRE_BROWSER") != "1",
                    reason=f"{CHROMIUM} not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(tmp_path, discharge_html):
    assert os.path.exists(CHROMIUM), f"FLEXADR_REQUIRE_BROWSER=1 but {CHROMIUM} is missing"
    page, shot = tmp_path / "report.html", tmp_path / "shot.png"
    page.write_text(discharge_html, encoding="utf-8")
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--no-first-run", "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}",
           "--window-size=1100,900", f"--screenshot={shot}", page.as_uri()]
    # The timeout only guards against a hung browser; nothing is asserted about speed.
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 0, proc.stderr[-2000:]
    width, height, rows = png_pixels(shot)
    assert (width, height) == (1100, 900)
    season_rgb = bytes.fromhex(SEASON_COLOR[1:])
    # The season plot sits in the first screen: count its bar colour there.
    season_px = sum(1 for row in rows for px in row if px == season_rgb)
    assert season_px > 5000, f"season plot not visible: {season_px} pixels of {SEASON_COLOR}"
    distinct = {px for row in rows[::10] for px in row[::10]}
    assert len(distinct) > 5, "screenshot is blank"



def test_fleet_series_bins_are_time_weighted():
    # Event 19:00-21:00Z; p1 18:30-19:30Z at 6 kW; p2 19:02-19:07Z at 12 kW.
    # Bin 19:00-19:05: 6 + 12 x 3/5 = 13.2; bin 19:05-19:10: 6 + 12 x 2/5 = 10.8;
    # bin 18:30-18:35: 6; bin 18:00-18:05: nobody has data outside the event -> gap (NaN).
    import math
    u = lambda s: datetime.fromisoformat(s)  # noqa: E731
    event = EventRecord("e1", u("2026-07-20T19:00:00+00:00"), u("2026-07-20T21:00:00+00:00"))
    data = SettlementInput((event,), (
        TelemetryInterval("p1", u("2026-07-20T18:30:00+00:00"), u("2026-07-20T19:30:00+00:00"), 6.0),
        TelemetryInterval("p2", u("2026-07-20T19:02:00+00:00"), u("2026-07-20T19:07:00+00:00"), 12.0)))
    (fleet,) = settle("v2x_demo", data, fleet=True).fleet
    kw = {p.start_utc.strftime("%H:%M"): p.kw for p in fleet.points}
    assert (kw["19:00"], kw["19:05"], kw["18:30"]) == pytest.approx((13.2, 10.8, 6.0))
    assert math.isnan(kw["18:00"])
    assert kw["20:00"] == 0.0            # inside the event, no data: 0 kW, drawn
    assert len(fleet.points) == 48       # 4 h at 5 min
