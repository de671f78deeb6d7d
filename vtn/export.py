"""Telemetry export (CSV): one row per VEN and interval (the admin API), and a season as the
files `vtn settle` reads (`vtn telemetry export`)."""
from __future__ import annotations

import csv
import io
from datetime import datetime

from vtn.settlement.model import SettlementInput
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


# The files `vtn settle --events --telemetry --participants --opt-outs` reads
# (vtn/settlement/csvio.py), by the flag that takes each.
SETTLEMENT_FILES = {"--events": "events.csv", "--telemetry": "telemetry.csv",
                    "--participants": "participants.csv", "--opt-outs": "opt_outs.csv"}


def settlement_csvs(data: SettlementInput) -> dict[str, str]:
    """A season's settlement input as the CSV files `vtn settle` reads: file name -> text.
    Numbers are written exactly (repr), so settling the files gives the same figures."""
    tables = {
        "events.csv": (["event_id", "start", "end", "kind"],
                       [[e.event_id, e.start_utc.isoformat(), e.end_utc.isoformat(), str(e.kind)]
                        for e in data.events]),
        "telemetry.csv": (["participant", "interval_start", "interval_end", "kw", "plugged_in",
                           "soc_pct", "battery_kw"],
                          [[t.participant, t.start_utc.isoformat(), t.end_utc.isoformat(),
                            _num(t.kw), _flag(t.plugged_in), _num(t.soc_pct), _num(t.battery_kw)]
                           for t in data.telemetry]),
        "participants.csv": (["participant", "rate_class", "enrolled", "installed",
                              "lifetime_paid_usd", "capacity_kwh", "enrolled_kw"],
                             [[p.participant, p.rate_class or "", _time(p.enrolled_utc),
                               _time(p.installed_utc), _num(p.lifetime_paid_usd),
                               _num(p.capacity_kwh), _num(p.enrolled_kw)]
                              for p in data.participants]),
        "opt_outs.csv": (["participant", "event_id"],
                         [[o.participant, o.event_id] for o in data.opt_outs]),
    }
    files = {}
    for name, (header, rows) in tables.items():
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(header)
        writer.writerows(rows)
        files[name] = out.getvalue()
    return files


def _time(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()
