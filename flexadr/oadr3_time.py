"""OpenADR 3.1 times on the wire, for both 3.1 edges (vtn/openadr31, ven/openadr31):
RFC 3339 date-times (0001-01-01 means "now", User Guide, intervalPeriod) and ISO 8601
durations as the YAML's pattern allows them."""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

NOW = datetime(1, 1, 1, tzinfo=timezone.utc)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_DURATION = re.compile(r"^(-?)P(?=\d|T\d)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)([DW]))?"
                       r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def parse_time(value) -> datetime:
    """RFC 3339 with an offset; the 'now' date 0001-01-01 may come without one."""
    if not isinstance(value, str):
        raise ValueError("a date-time string (RFC 3339)")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{value!r} is not an RFC 3339 date-time") from None
    if parsed.year == 1:
        return NOW
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset")
    return parsed


def parse_duration(value) -> timedelta:
    """ISO 8601 duration as the YAML's pattern allows; years and months have no fixed length."""
    if not isinstance(value, str):
        raise ValueError("an ISO 8601 duration string, e.g. PT1H")
    match = _DURATION.match(value)
    if not match:
        raise ValueError(f"{value!r} is not an ISO 8601 duration")
    sign, years, months, days, day_unit, hours, minutes, seconds = match.groups()
    if years or months:
        raise ValueError(f"{value!r}: years and months have no fixed length here; use days")
    try:
        length = timedelta(days=int(days or 0) * (7 if day_unit == "W" else 1),
                           hours=int(hours or 0), minutes=int(minutes or 0),
                           seconds=float(seconds or 0))
    except OverflowError:
        raise ValueError(f"{value!r} is too long") from None
    return -length if sign else length


def iso(when: datetime | None) -> str:
    return (when or EPOCH).astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def iso_duration(length: timedelta) -> str:
    """PT1H30M; a fraction of a second is kept (PT2.5S), as compressed-time tests need."""
    hours, rest = divmod(length.total_seconds(), 3600)
    minutes, seconds = divmod(rest, 60)
    return "PT" + (f"{hours:.0f}H" if hours else "") + (f"{minutes:.0f}M" if minutes else "") + (
        f"{seconds:.6g}S" if seconds or not (hours or minutes) else "")
