"""What a VEN's telemetry means, and whether to believe it. Pure: plain data in and out.

Meaning comes from what the VEN declared in oadrRegisterReport, never from our
own rID names: the itemBase (powerReal / energyReal, or a customUnit whose
itemDescription says power, energy or stateOfCharge), its itemUnits and
siScaleCode; and, in TELEMETRY_STATUS, the oadrPayloadResourceStatus fields
themselves. A TELEMETRY_STATUS description carries no itemBase (openleadr
cannot send one), so for a payloadFloat status point the rID is the only
metadata there is: the well-known status names below are read, anything else
is kept raw.

Every value is then checked against its unit's physical range and the
device's enrolled limits. The outcome of one oadrUpdateReport is three lists:
points (stored by meaning), raw values (understood as numbers but not as a
quantity: kept with their rID and metadata) and rejections (quarantined with
the reason). Nothing is dropped, nothing rejected is stored as a reading.
"""
from __future__ import annotations

import math
from bisect import bisect_left
from dataclasses import dataclass, field
from datetime import datetime, timedelta

# Quantities: the TelemetryPoint columns a value can fill.
KW, KWH, SOC_PCT = "kw", "kwh", "soc_pct"
PLUGGED_IN, ONLINE, MANUAL_OVERRIDE = "plugged_in", "online", "manual_override"
LOAD_CAPACITY, LOAD_LEVEL_OFFSET = "load_capacity", "load_level_offset"
LOAD_PERCENT_OFFSET, LOAD_SETPOINT = "load_percent_offset", "load_setpoint"
BOOLEANS = frozenset({PLUGGED_IN, ONLINE, MANUAL_OVERRIDE})

SI_SCALE = {"p": 1e-12, "n": 1e-9, "micro": 1e-6, "m": 1e-3, "c": 1e-2, "d": 1e-1, "none": 1.0,
            "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, None: 1.0}
# itemUnits -> factor to kW / kWh (before the siScaleCode).
POWER_UNITS = {"W": 1e-3, "kW": 1.0, "MW": 1e3}
ENERGY_UNITS = {"Wh": 1e-3, "kWh": 1.0, "MWh": 1e3}
# A customUnit's itemDescription, lower-cased without spaces, that names a quantity.
POWER_WORDS = frozenset({"power", "realpower", "powerreal", "activepower"})
ENERGY_WORDS = frozenset({"energy", "realenergy", "energyreal", "activeenergy"})
SOC_WORDS = frozenset({"stateofcharge", "soc", "x-stateofcharge"})
# payloadFloat TELEMETRY_STATUS points (no itemBase possible): the rID names them.
STATUS_RIDS = {"online": ONLINE, "manual_override": MANUAL_OVERRIDE, "plugged_in": PLUGGED_IN,
               "soc": SOC_PCT}
# oadrLoadControlState element (openleadr's parsed name) -> quantity; the current value is kept.
LOAD_CONTROL_STATE = {"capacity": LOAD_CAPACITY, "level_offset": LOAD_LEVEL_OFFSET,
                      "percent_offset": LOAD_PERCENT_OFFSET, "set_point": LOAD_SETPOINT}

# Limits of belief.
CAPACITY_MARGIN = 1.25        # metering error and nameplate tolerance above the enrolled kW
DEFAULT_MAX_KW = 1000.0       # a VEN with no enrolled rating: no single site exceeds 1 MW here
CLOCK_SKEW = timedelta(minutes=1)   # how far in the future an interval may start
MAX_AGE = timedelta(days=400)       # no enrolment date known: a season and a bit of backlog
MAX_INTERVALS = 1000          # per report: 96 rows x 3 points is our VEN's largest batch
DURATION_SLACK = timedelta(seconds=1)
SAME_SAMPLE = timedelta(seconds=1)  # rIDs of one sampling: stamped this close together
ENERGY_WINDOW = timedelta(hours=1)  # kWh of an interval: at most max_kw for this long, or longer


@dataclass(frozen=True)
class Registration:
    """What a VEN declared for one rID in oadrRegisterReport."""
    report_name: str
    r_id: str
    item_name: str | None = None      # itemBase element: powerReal, energyReal, customUnit, ...
    description: str | None = None    # itemDescription
    unit: str | None = None           # itemUnits
    scale: str | None = None          # siScaleCode
    report_type: str | None = None
    reading_type: str | None = None
    resource_id: str | None = None


@dataclass(frozen=True)
class Meaning:
    quantity: str | None              # None: not a quantity the VTN stores
    factor: float = 1.0               # multiply the sent number by this
    why_not: str = ""


def meaning(registration: Registration | None, r_id: str | None) -> Meaning:
    """The quantity a payloadFloat value of this rID stands for."""
    if registration is None:
        return Meaning(None, why_not=f"rID {r_id} was not registered")
    item = registration.item_name
    if item is None:
        if registration.report_name == "TELEMETRY_STATUS" and r_id in STATUS_RIDS:
            return Meaning(STATUS_RIDS[r_id])
        return Meaning(None, why_not="no itemBase")
    word = (registration.description or "").replace(" ", "").lower()
    scale = SI_SCALE.get(registration.scale)
    if scale is None:
        return Meaning(None, why_not=f"unknown siScaleCode {registration.scale}")
    if item == "powerReal" or (item == "customUnit" and word in POWER_WORDS):
        return _scaled(KW, POWER_UNITS, registration.unit, scale)
    if item == "energyReal" or (item == "customUnit" and word in ENERGY_WORDS):
        return _scaled(KWH, ENERGY_UNITS, registration.unit, scale)
    if item == "customUnit" and word in SOC_WORDS:
        if registration.unit != "%":
            return Meaning(None, why_not=f"state of charge in {registration.unit}, not %")
        return Meaning(SOC_PCT, scale)
    return Meaning(None, why_not=f"{item} {registration.description!r} is not stored by meaning")


def _scaled(quantity: str, units: dict[str, float], unit: str | None, scale: float) -> Meaning:
    if unit not in units:
        return Meaning(None, why_not=f"{quantity} in unit {unit}")
    return Meaning(quantity, units[unit] * scale)


def resource_status(status: dict) -> dict[str, object]:
    """oadrPayloadResourceStatus (as openleadr parses it) -> {quantity: value}."""
    # openleadr parses oadrOnline / oadrManualOverride to the names of our columns
    values: dict[str, object] = {name: status[name] for name in (ONLINE, MANUAL_OVERRIDE)
                                 if name in status}
    state = status.get("load_control_state") or {}
    for name, quantity in LOAD_CONTROL_STATE.items():
        element = state.get(name)
        if isinstance(element, dict) and "current" in element:
            values[quantity] = element["current"]
    return values


# --- belief ---------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    """What one VEN's values must stay inside."""
    max_kw: float                 # |kW|: enrolled capacity x margin
    earliest: datetime            # no interval before enrolment
    latest_start: datetime        # now + clock skew
    max_duration: timedelta       # the report request's granularity


def limits(capacity_kw: float | None, enrolled_at: datetime | None, now: datetime,
           granularity: timedelta) -> Limits:
    max_kw = capacity_kw * CAPACITY_MARGIN if capacity_kw else DEFAULT_MAX_KW
    earliest = enrolled_at if enrolled_at is not None else now - MAX_AGE
    return Limits(max_kw, earliest, now + CLOCK_SKEW, granularity + DURATION_SLACK)


def check_interval(start: datetime, duration: timedelta, lim: Limits) -> str | None:
    """Why an interval cannot be a measurement, or None."""
    if duration <= timedelta(0):
        return f"duration {duration} is not positive"
    if duration > lim.max_duration:
        return f"duration {duration} is longer than the requested {lim.max_duration - DURATION_SLACK}"
    if start < lim.earliest:
        return f"interval starts {start.isoformat()}, before enrolment {lim.earliest.isoformat()}"
    if start > lim.latest_start:
        return f"interval starts {start.isoformat()}, in the future"
    return None


def check_value(quantity: str, value: object, duration: timedelta, lim: Limits) -> str | None:
    """Why a value is not physically possible for this device, or None."""
    if quantity in BOOLEANS and isinstance(value, bool):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{quantity} {value!r} is not a number"
    if not math.isfinite(value):
        return f"{quantity} {value} is not a finite number"
    if quantity in BOOLEANS:
        return None if value in (0, 1) else f"{quantity} {value} is neither 0 nor 1"
    if quantity == KW and abs(value) > lim.max_kw:
        return f"kw {value:g} is beyond +-{lim.max_kw:g} kW (enrolled capacity x {CAPACITY_MARGIN})"
    if quantity == KWH:
        # At least an hour at full power: a time-compressed simulation (a VEN's
        # time_scale) puts device hours into wall seconds, which the VTN cannot know.
        max_kwh = lim.max_kw * max(duration, ENERGY_WINDOW).total_seconds() / 3600
        if abs(value) > max_kwh:
            return f"kwh {value:g} is beyond +-{max_kwh:g} kWh for {duration}"
    if quantity == SOC_PCT and not 0 <= value <= 100:
        return f"soc_pct {value:g} is outside 0-100 %"
    if quantity == LOAD_CAPACITY and not 0 <= value <= 1:
        return f"load_capacity {value:g} is outside 0-1"
    if quantity == LOAD_PERCENT_OFFSET and not -100 <= value <= 100:
        return f"load_percent_offset {value:g} is outside -100-100 %"
    return None


# --- one report -------------------------------------------------------------------
@dataclass
class Point:
    end: datetime
    values: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class RawValue:
    """A value the VTN cannot store by meaning: kept with its rID and metadata."""
    r_id: str | None
    start: datetime
    end: datetime
    payload: dict
    registration: Registration | None
    reason: str


@dataclass(frozen=True)
class Rejected:
    """A value (or a whole report) not believed: quarantined with the reason."""
    r_id: str | None
    start: datetime | None
    end: datetime | None
    payload: object
    reason: str
    check: str            # what failed: report, interval, value, or the quantity


@dataclass
class Interpreted:
    points: dict[datetime, Point] = field(default_factory=dict)
    raw: list[RawValue] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def interpret(report_name: str, intervals: list[dict], registrations: dict[str, Registration],
              default_duration: timedelta, lim: Limits) -> Interpreted:
    """Sort the intervals of one oadrUpdateReport (openleadr's parsed dicts) into
    points, raw values and rejections."""
    out = Interpreted()
    if len(intervals) > MAX_INTERVALS:
        out.rejected.append(Rejected(None, None, None, intervals,
                                     f"{len(intervals)} intervals in one report: at most "
                                     f"{MAX_INTERVALS}", "report"))
        return out
    samplings = _Samplings()
    for interval in intervals:
        start = interval.get("dtstart")
        duration = interval.get("duration")
        duration = default_duration if duration is None else duration
        payload = interval.get("report_payload") or {}
        r_id = payload.get("r_id")
        if not isinstance(start, datetime) or not isinstance(duration, timedelta):
            out.rejected.append(Rejected(r_id, None, None, interval,
                                         "interval without a dtstart and duration", "interval"))
            continue
        reason = check_interval(start, duration, lim)
        if reason is not None:
            out.rejected.append(Rejected(r_id, start, _end(start, duration), payload, reason,
                                         "interval"))
            continue
        end = start + duration
        start, end = samplings.interval(start, end, duration)
        _sort_values(out, report_name, registrations.get(r_id), r_id, start, end, duration,
                     payload, lim)
    return out


def _end(start: datetime, duration: timedelta) -> datetime | None:
    """The end of a rejected interval, if it is a time at all (year 9999 + a century is not)."""
    try:
        return start + max(duration, timedelta(0))
    except OverflowError:
        return None


class _Samplings:
    """openleadr's client stamps each rID of one sampling with its own datetime.now(),
    microseconds apart: values that close together are one interval."""

    def __init__(self):
        self._starts: list[datetime] = []          # sorted
        self._ends: dict[datetime, datetime] = {}

    def interval(self, start: datetime, end: datetime,
                 duration: timedelta) -> tuple[datetime, datetime]:
        """The (start, end) this value belongs to: an earlier one of its sampling, or its own."""
        if start in self._ends:
            return start, self._ends[start]
        tolerance = min(SAME_SAMPLE, duration / 4)
        i = bisect_left(self._starts, start)
        for known in self._starts[max(i - 1, 0):i + 1]:
            if abs(known - start) < tolerance:
                return known, self._ends[known]
        self._starts.insert(i, start)
        self._ends[start] = end
        return start, end


def _sort_values(out: Interpreted, report_name: str, registration: Registration | None,
                 r_id: str | None, start: datetime, end: datetime, duration: timedelta,
                 payload: dict, lim: Limits) -> None:
    if "payload_resource_status" in payload:
        values = resource_status(payload["payload_resource_status"] or {})
        if not values:
            out.raw.append(RawValue(r_id, start, end, payload, registration,
                                    "empty oadrPayloadResourceStatus"))
            return
    else:
        found = meaning(registration, r_id)
        value = payload.get("value")
        if found.quantity is None:
            reason = _number_problem(value)
            if reason is not None:
                out.rejected.append(Rejected(r_id, start, end, payload, reason, "value"))
            else:
                out.raw.append(RawValue(r_id, start, end, payload, registration, found.why_not))
            return
        scaled = value * found.factor if _is_number(value) else value
        values = {found.quantity: scaled}
    problems = [(quantity, reason) for quantity, value in values.items()
                if (reason := check_value(quantity, value, duration, lim)) is not None]
    if problems:
        out.rejected.append(Rejected(r_id, start, end, payload,
                                     "; ".join(reason for _, reason in problems), problems[0][0]))
        return
    point = out.points.setdefault(start, Point(end))
    for quantity, value in values.items():
        stored = bool(value) if quantity in BOOLEANS else float(value)
        if quantity in point.values and point.values[quantity] != stored:
            # Two rIDs (e.g. two resources) for one quantity of one interval: keep both.
            out.raw.append(RawValue(r_id, start, end, payload, registration,
                                    f"a second {quantity} for this interval"))
            continue
        point.values[quantity] = stored


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number_problem(value: object) -> str | None:
    """Even a value kept raw must be a finite number (a NaN is never 'data')."""
    if not _is_number(value):
        return f"value {value!r} is not a number"
    if not math.isfinite(value):
        return f"value {value} is not a finite number"
    return None
