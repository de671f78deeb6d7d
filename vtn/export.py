"""Telemetry export (CSV): one row per VEN and interval."""
from __future__ import annotations

import csv
import io
from datetime import datetime

from vtn.store import Store

COLUMNS = ["ven_id", "interval_start", "interval_end", "kw", "kwh", "soc_pct", "plugged_in",
           "online", "manual_override"]


def telemetry_csv(store: Store, ven_ids: list[str], start: datetime | None,
                  end: datetime | None) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for ven_id in ven_ids:
        for p in store.telemetry(ven_id, start, end):
            writer.writerow([ven_id, p.interval_start.isoformat(), p.interval_end.isoformat(),
                             _num(p.kw), _num(p.kwh), _num(p.soc_pct), _flag(p.plugged_in),
                             _flag(p.online), _flag(p.manual_override)])
    return out.getvalue()


def event_telemetry_csv(store: Store, event_id: str) -> str:
    event = store.event(event_id)
    if event is None:
        raise KeyError(event_id)
    ven_ids = [t.ven_id for t in store.targets(event_id)]
    return telemetry_csv(store, ven_ids, event.start_utc, event.end_utc)


def _num(value):
    return "" if value is None else repr(float(value))


def _flag(value):
    return "" if value is None else int(value)
