"""Settlement documents as text (JSON, CSV) and the one atomic file write."""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

from vtn.settlement.model import SeasonSettlement
from vtn.settlement.settle import to_json_dict


def to_json(result: SeasonSettlement) -> str:
    return json.dumps(to_json_dict(result), indent=2) + "\n"


def to_csv(result: SeasonSettlement) -> str:
    """One row per participant: season figures, the program's scalar details,
    then one `kw:<event_id>` column per event (spreadsheet-friendly). List
    details (times, notices) are in the JSON document only."""
    doc = to_json_dict(result)
    scalar_keys: list[str] = ["participant", "season_kw", "payment_usd"]
    for p in doc["participants"]:
        for key, value in p.items():
            if key not in scalar_keys and not isinstance(value, (list, dict)):
                scalar_keys.append(key)
    event_ids = [e.event_id for e in result.participants[0].events] if result.participants else []
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(scalar_keys + [f"kw:{e}" for e in event_ids])
    for p in doc["participants"]:
        kws = {e["event_id"]: e["kw"] for e in p["events"]}
        writer.writerow([_cell(p.get(k)) for k in scalar_keys] + [kws.get(e, "") for e in event_ids])
    return out.getvalue()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(path: str | Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename over it: a reader
    (or a crash) never sees half a report."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent or ".")
    try:
        # mkstemp makes 0600 files; a report gets the mode a plain open() would give.
        os.chmod(tmp, path.stat().st_mode & 0o777 if path.exists() else 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
