"""Declared emergencies -> exclusion periods for a program.

Weather alerts come from the NWS (`schedules/storms.py`); emergencies are
declared by the utility or the ISO: ISO-NE's Type 1 / Type 2 capacity
emergencies, a severe outage in progress or predicted. Operations keep them in
a CSV file, one row per declaration, appended as they happen:

    type,start,end,declared,description
    Type 1,2018-08-28T14:00-04:00,2018-08-28T20:00-04:00,2018-08-28T09:30-04:00,capacity deficiency

Times are ISO 8601 with a UTC offset. `declared` is when the emergency became
known, so a replay acts on it only from then (empty: known at `start`);
`description` is optional. A program's `[[emergencies]]` rules turn the rows
of their types into `Exclusion`s, exactly as storm rules turn alerts.

Pure: `parse_emergencies` takes text; `sources.read_emergencies` reads the file.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

from schedules.model import Program
from schedules.storms import Exclusion

UTC = timezone.utc
COLUMNS = ("type", "start", "end")


class EmergencyFormatError(ValueError):
    """Rows that cannot be used: `problems` = [(line or None, what is wrong)]."""

    def __init__(self, problems: list[tuple[int | None, str]]) -> None:
        super().__init__("; ".join(f"line {line}: {text}" if line else text
                                   for line, text in problems))
        self.problems = problems


@dataclass(frozen=True)
class Emergency:
    type: str
    start_utc: datetime
    end_utc: datetime
    declared_utc: datetime
    description: str = ""


def _instant(text: str, column: str, problems: list, line: int) -> datetime | None:
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        problems.append((line, f"{column}: not an ISO 8601 time: {text!r}"))
        return None
    if value.tzinfo is None:
        # a local time without its offset is ambiguous across DST: refuse to guess
        problems.append((line, f"{column}: needs a UTC offset (e.g. -04:00): {text!r}"))
        return None
    return value.astimezone(UTC)


def parse_emergencies(text: str) -> list[Emergency]:
    """Rows of an emergencies CSV; EmergencyFormatError lists every bad row."""
    # newline="": the csv module itself ends rows at CR, LF or CRLF (a file edited on
    # Windows or an old Mac), as its documentation asks.
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        return _rows(reader)
    except csv.Error as err:
        raise EmergencyFormatError([(reader.line_num, f"not valid CSV: {err}")]) from None


def _rows(reader: csv.DictReader) -> list[Emergency]:
    missing = [c for c in COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise EmergencyFormatError([(1, f"missing column {', '.join(missing)} (needs "
                                        f"{', '.join(COLUMNS)}[, declared, description])")])
    out, problems = [], []
    for row in reader:
        line = reader.line_num
        kind = (row.get("type") or "").strip()
        if not kind:
            problems.append((line, "type: empty"))
        start = _instant(row.get("start") or "", "start", problems, line)
        end = _instant(row.get("end") or "", "end", problems, line)
        declared_text = (row.get("declared") or "").strip()
        declared = _instant(declared_text, "declared", problems, line) if declared_text else start
        if start is None or end is None or declared is None or not kind:
            continue
        if end <= start:
            problems.append((line, f"end: {row['end']} is not after start {row['start']}"))
            continue
        out.append(Emergency(kind, start, end, declared, (row.get("description") or "").strip()))
    if problems:
        raise EmergencyFormatError(problems)
    return out


def exclusions(program: Program, emergencies: Iterable[Emergency]) -> list[Exclusion]:
    """Every exclusion period the program's emergency rules derive, by start."""
    out = []
    for rule in program.emergencies:
        for emergency in emergencies:
            if emergency.type not in rule.types:
                continue
            reason = f"declared emergency: {emergency.type}"
            if emergency.description:
                reason += f" ({emergency.description})"
            out.append(Exclusion(start_utc=emergency.start_utc - rule.before,
                                 end_utc=emergency.end_utc + rule.after,
                                 known_utc=emergency.declared_utc, action=rule.action,
                                 reason=reason))
    return sorted(out, key=lambda e: (e.start_utc, e.end_utc))


def unused(programs: Iterable[Program], emergencies: Iterable[Emergency]) -> list[Emergency]:
    """Declarations of a type no program excludes: most likely a typo to report."""
    known = {t for program in programs for rule in program.emergencies for t in rule.types}
    return [e for e in emergencies if e.type not in known]
