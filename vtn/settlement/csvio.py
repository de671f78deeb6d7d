"""CSV inputs for `vtn settle` (the edge: files in, SettlementInput out).

Every problem names the file, the line and what is wrong; all problems found
(up to MAX_PROBLEMS) are reported together so one run fixes a whole file.

EVENTS.csv       event_id,start,end[,kind]             kind: peak (default) | flex_alert
TELEMETRY.csv    participant,interval_start,interval_end,kw[,plugged_in,soc_pct,battery_kw]
PARTICIPANTS.csv participant[,rate_class,enrolled,installed,lifetime_paid_usd,capacity_kwh,enrolled_kw]
OPT_OUTS.csv     participant,event_id
Times are ISO 8601 with a UTC offset (2026-07-20T15:00:00-04:00 or ...Z).
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO, TypeVar
from zoneinfo import ZoneInfo

from vtn.settlement import validate
from vtn.settlement.model import (
    EventKind, EventRecord, OptOut, ParticipantInfo, RateClass, SettlementInput,
    TelemetryInterval)

MAX_PROBLEMS = 20
T = TypeVar("T")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int          # 1-based line in the file; the header is line 1
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class SettlementInputError(ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        shown = problems[:MAX_PROBLEMS]
        more = len(problems) - len(shown)
        text = "\n".join(str(p) for p in shown) + (f"\n... and {more} more" if more > 0 else "")
        super().__init__(text)


class _RowError(Exception):
    pass


# ---------------------------------------------------------------- field parsers

def parse_time(text: str, column: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise _RowError(f"{column}: unparseable time {text!r} (ISO 8601 with UTC offset expected)") from None
    if when.tzinfo is None:
        raise _RowError(f"{column}: time {text!r} has no UTC offset")
    return when.astimezone(timezone.utc)


def parse_float(text: str, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _RowError(f"{column}: not a number: {text!r}") from None
    if not math.isfinite(value):
        raise _RowError(f"{column}: not a finite number: {text!r}")
    return value


def parse_bool(text: str, column: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "y"):
        return True
    if lowered in ("0", "false", "no", "n"):
        return False
    raise _RowError(f"{column}: not a yes/no value: {text!r}")


def _optional(row: dict, column: str, parse: Callable[[str, str], T]) -> T | None:
    text = (row.get(column) or "").strip()
    return parse(text, column) if text else None


def _required(row: dict, column: str) -> str:
    text = (row.get(column) or "").strip()
    if not text:
        raise _RowError(f"{column}: empty")
    return text


# ---------------------------------------------------------------- table reader

def _rows(stream: TextIO, name: str, required: tuple[str, ...], problems: list[Problem]
          ) -> Iterator[tuple[int, dict]]:
    reader = csv.DictReader(stream)
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in required if c not in header]
    if missing:
        problems.append(Problem(name, 1, f"missing column(s) {', '.join(missing)}; "
                                         f"header is {','.join(header) or '(empty file)'}"))
        return
    reader.fieldnames = header
    line = 1
    for row in reader:
        line = reader.line_num
        if None in row:
            problems.append(Problem(name, line, f"{len(header) + len(row[None])} fields, header has {len(header)}"))
            continue
        if all(not (v or "").strip() for v in row.values()):
            continue      # blank line
        yield line, row


def _parse_table(source: CsvSource, required: tuple[str, ...],
                 parse_row: Callable[[dict], T], problems: list[Problem]) -> tuple[list[T], list[int]]:
    records, lines = [], []
    with source.open() as stream:
        for line, row in _rows(stream, source.name, required, problems):
            try:
                records.append(parse_row(row))
                lines.append(line)
            except _RowError as err:
                problems.append(Problem(source.name, line, str(err)))
    return records, lines


def _event(row: dict) -> EventRecord:
    start = parse_time(_required(row, "start"), "start")
    end = parse_time(_required(row, "end"), "end")
    if end <= start:
        raise _RowError(f"end {row['end']!r} is not after start {row['start']!r}")
    kind_text = (row.get("kind") or "").strip() or EventKind.PEAK
    try:
        kind = EventKind(kind_text)
    except ValueError:
        raise _RowError(f"kind: {kind_text!r} is not one of {', '.join(EventKind)}") from None
    return EventRecord(_required(row, "event_id"), start, end, kind)


def _interval(row: dict) -> TelemetryInterval:
    start = parse_time(_required(row, "interval_start"), "interval_start")
    end = parse_time(_required(row, "interval_end"), "interval_end")
    if end <= start:
        raise _RowError(f"interval_end {row['interval_end']!r} is not after interval_start {row['interval_start']!r}")
    soc = _optional(row, "soc_pct", parse_float)
    if soc is not None and not 0 <= soc <= 100:
        raise _RowError(f"soc_pct: {soc} outside 0-100")
    return TelemetryInterval(
        participant=_required(row, "participant"), start_utc=start, end_utc=end,
        kw=parse_float(_required(row, "kw"), "kw"),
        plugged_in=_optional(row, "plugged_in", parse_bool), soc_pct=soc,
        battery_kw=_optional(row, "battery_kw", parse_float))


def _rate_class(text: str, column: str) -> RateClass:
    try:
        return RateClass(text.strip().lower())
    except ValueError:
        raise _RowError(f"{column}: {text!r} is not one of {', '.join(RateClass)}") from None


def _participant(row: dict) -> ParticipantInfo:
    return ParticipantInfo(
        participant=_required(row, "participant"),
        rate_class=_optional(row, "rate_class", _rate_class),
        enrolled_utc=_optional(row, "enrolled", parse_time),
        installed_utc=_optional(row, "installed", parse_time),
        lifetime_paid_usd=_optional(row, "lifetime_paid_usd", parse_float) or 0.0,
        capacity_kwh=_optional(row, "capacity_kwh", parse_float),
        enrolled_kw=_optional(row, "enrolled_kw", parse_float))


def _opt_out(row: dict) -> OptOut:
    return OptOut(_required(row, "participant"), _required(row, "event_id"))


# ---------------------------------------------------------------- whole input

@dataclass(frozen=True)
class CsvSource:
    """A CSV input: its name for messages, and its text or the file to stream
    (a season of 24x7 data is too big to hold twice)."""
    name: str
    text: str | None = None
    path: Path | None = None

    @classmethod
    def file(cls, path: str | Path) -> CsvSource:
        path = Path(path)
        if not path.is_file():
            raise SettlementInputError([Problem(str(path), 0, "no such file")])
        return cls(str(path), path=path)

    @contextmanager
    def open(self) -> Iterator[TextIO]:
        if self.path is None:
            yield io.StringIO(self.text or "")
            return
        try:
            with self.path.open(encoding="utf-8-sig", newline="") as stream:
                yield stream
        except OSError as err:
            raise SettlementInputError([Problem(self.name, 0, f"cannot read: {err.strerror or err}")]) from err
        except UnicodeDecodeError as err:
            raise SettlementInputError([Problem(self.name, 0, f"not UTF-8 text: {err}")]) from err


def parse_input(events: CsvSource, telemetry: CsvSource, *,
                participants: CsvSource | None = None, opt_outs: CsvSource | None = None,
                event_data_only: bool = False, tz: ZoneInfo | None = None) -> SettlementInput:
    """Parse and cross-check the files; raise SettlementInputError listing every problem.

    `event_data_only`: every interval must overlap an event. Otherwise, given
    the program's `tz`, every interval must lie in the events' local calendar
    year (the season: baselines, Clean Peak days, yearly cycles).
    """
    problems: list[Problem] = []
    evs, ev_lines = _parse_table(events, ("event_id", "start", "end"), _event, problems)
    ivs, iv_lines = _parse_table(telemetry, ("participant", "interval_start", "interval_end", "kw"),
                                 _interval, problems)
    infos: list[ParticipantInfo] = []
    if participants is not None:
        infos, info_lines = _parse_table(participants, ("participant",), _participant, problems)
        seen: set[str] = set()
        for info, line in zip(infos, info_lines):
            if info.participant in seen:
                problems.append(Problem(participants.name, line, f"participant {info.participant!r} listed twice"))
            seen.add(info.participant)
    outs: list[OptOut] = []
    if opt_outs is not None:
        outs, out_lines = _parse_table(opt_outs, ("participant", "event_id"), _opt_out, problems)

    for i in validate.duplicate_ids(evs):
        problems.append(Problem(events.name, ev_lines[i], f"event_id {evs[i].event_id!r} appears twice"))
    if not evs and not problems:
        problems.append(Problem(events.name, 1, "no events"))
    for a, b in validate.overlapping(ivs):
        problems.append(Problem(telemetry.name, iv_lines[b],
                                f"interval {ivs[b].start_utc.isoformat()}..{ivs[b].end_utc.isoformat()} of "
                                f"participant {ivs[b].participant!r} overlaps line {iv_lines[a]}"))
    if event_data_only and evs:
        for i in validate.outside_events(ivs, evs):
            problems.append(Problem(telemetry.name, iv_lines[i],
                                    f"interval {ivs[i].start_utc.isoformat()}..{ivs[i].end_utc.isoformat()} "
                                    "is outside every event"))
    elif tz is not None and evs:
        years = sorted({ev.start_utc.astimezone(tz).year for ev in evs})
        for i in validate.outside_years(ivs, years, tz):
            problems.append(Problem(telemetry.name, iv_lines[i],
                                    f"interval {ivs[i].start_utc.isoformat()}..{ivs[i].end_utc.isoformat()} "
                                    f"is outside the season year {'/'.join(map(str, years))}"))
    if participants is not None:
        known = {p.participant for p in infos}
        for i in validate.unknown_participants(ivs, known):
            problems.append(Problem(telemetry.name, iv_lines[i],
                                    f"unknown participant {ivs[i].participant!r} (not in {participants.name})"))
    if opt_outs is not None:
        known = {p.participant for p in infos} if participants is not None else {iv.participant for iv in ivs}
        ids = {e.event_id for e in evs}
        for o, line in zip(outs, out_lines):
            if o.participant not in known:
                problems.append(Problem(opt_outs.name, line, f"unknown participant {o.participant!r}"))
            if o.event_id not in ids:
                problems.append(Problem(opt_outs.name, line, f"unknown event_id {o.event_id!r}"))
    if problems:
        raise SettlementInputError(problems)
    return SettlementInput(tuple(evs), tuple(ivs), tuple(infos), tuple(outs))


def read_input(events: str | Path, telemetry: str | Path, *,
               participants: str | Path | None = None, opt_outs: str | Path | None = None,
               event_data_only: bool = False, tz: ZoneInfo | None = None) -> SettlementInput:
    return parse_input(
        CsvSource.file(events), CsvSource.file(telemetry),
        participants=CsvSource.file(participants) if participants else None,
        opt_outs=CsvSource.file(opt_outs) if opt_outs else None,
        event_data_only=event_data_only, tz=tz)
