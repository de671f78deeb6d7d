"""Checks every input source must pass before settling (CSV files, store rows).

Each check returns positions in the given sequence; the caller names them in
its own terms (file and line for CSV, row ids for the store).
"""
from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from vtn.settlement.model import EventRecord, TelemetryInterval


def overlapping(telemetry: Sequence[TelemetryInterval]) -> list[tuple[int, int]]:
    """(earlier, later) index pairs of one participant's intervals that overlap.

    Overlaps would count the same energy twice, so they are errors rather than
    something to average away. Only neighbours after sorting are reported,
    which is enough to name every offending row.
    """
    order = sorted(range(len(telemetry)),
                   key=lambda i: (telemetry[i].participant, telemetry[i].start_utc))
    pairs = []
    for a, b in zip(order, order[1:]):
        x, y = telemetry[a], telemetry[b]
        if x.participant == y.participant and y.start_utc < x.end_utc:
            pairs.append((a, b))
    return pairs


def first_received(telemetry: Sequence[TelemetryInterval]) -> list[tuple[int, int]]:
    """(kept, dropped) index pairs that resolve one participant's overlapping intervals.

    The sequence is in the order the intervals were received: of intervals that
    overlap, the first received is kept and each later one overlapping a kept one
    is dropped, so an overlap costs only the intervals involved. Only clusters of
    mutually overlapping intervals are compared pairwise; they are small.
    """
    order = sorted(range(len(telemetry)),
                   key=lambda i: (telemetry[i].participant, telemetry[i].start_utc))
    pairs: list[tuple[int, int]] = []
    cluster: list[int] = []
    cluster_end = None
    for i in order + [None]:
        iv = telemetry[i] if i is not None else None
        if (iv is not None and cluster and iv.participant == telemetry[cluster[0]].participant
                and iv.start_utc < cluster_end):
            cluster.append(i)
            cluster_end = max(cluster_end, iv.end_utc)
            continue
        if len(cluster) > 1:
            pairs.extend(_resolve(telemetry, sorted(cluster)))
        cluster = [i] if i is not None else []
        cluster_end = iv.end_utc if iv is not None else None
    return sorted(pairs, key=lambda pair: pair[1])


def _resolve(telemetry: Sequence[TelemetryInterval], cluster: list[int]) -> list[tuple[int, int]]:
    kept: list[int] = []
    pairs = []
    for i in cluster:
        iv = telemetry[i]
        winner = next((k for k in kept if iv.start_utc < telemetry[k].end_utc
                       and telemetry[k].start_utc < iv.end_utc), None)
        if winner is None:
            kept.append(i)
        else:
            pairs.append((winner, i))
    return pairs


def outside_events(telemetry: Sequence[TelemetryInterval], events: Sequence[EventRecord]) -> list[int]:
    """Indexes of intervals that overlap no event at all."""
    spans = sorted((ev.start_utc, ev.end_utc) for ev in events)
    starts = [s for s, _ in spans]
    # Running max of ends: events may overlap one another.
    max_end, running = [], None
    for _, e in spans:
        running = e if running is None or e > running else running
        max_end.append(running)
    out = []
    for i, iv in enumerate(telemetry):
        k = bisect_left(starts, iv.end_utc) - 1   # last event starting before iv ends
        if k < 0 or max_end[k] <= iv.start_utc:
            out.append(i)
    return out


def unknown_participants(telemetry: Sequence[TelemetryInterval], known: set[str]) -> list[int]:
    return [i for i, iv in enumerate(telemetry) if iv.participant not in known]


def duplicate_ids(events: Sequence[EventRecord]) -> list[int]:
    seen: set[str] = set()
    dups = []
    for i, ev in enumerate(events):
        if ev.event_id in seen:
            dups.append(i)
        seen.add(ev.event_id)
    return dups



def outside_years(telemetry: Sequence[TelemetryInterval], years: Sequence[int], tz: ZoneInfo) -> list[int]:
    """Indexes of intervals not wholly inside the local calendar years `years`
    (consecutive years are one span)."""
    first = datetime(min(years), 1, 1, tzinfo=tz).astimezone(timezone.utc)
    last = datetime(max(years) + 1, 1, 1, tzinfo=tz).astimezone(timezone.utc)
    return [i for i, iv in enumerate(telemetry) if iv.start_utc < first or iv.end_utc > last]
