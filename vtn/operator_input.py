"""Operator input: the one set of models the admin API and the CLI verbs read through.

Shape and absolute bounds (types, finite numbers, durations, dates) are pydantic
models; the rules that need a program or the clock (sign by dispatch type,
season, allowed days, window, notice, targets) are pure functions below. A
program rule may be overridden with `force` and a `force_reason`, which is
stored with the event; shape, sign and bounds cannot.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal, Mapping, Sequence
from urllib.parse import urlsplit

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field,
                      StrictBool, StrictInt, StringConstraints, ValidationError, ValidationInfo,
                      field_validator, model_validator)

from schedules import calendar
from schedules.model import Dispatch, Program

UTC = timezone.utc
MAX_EVENT = timedelta(hours=24)        # longer than any program's window: a typo, not an event
MAX_LEAD = timedelta(days=366)         # programs are planned at most a season ahead
MAX_KW = 1000.0                        # per VEN; far above any enrolled device
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
# Signal types whose payload is an offset: negative values are meaningful there.
SIGNED_SIGNAL_TYPES = {"delta", "x-loadControlLevelOffset", "x-loadControlPercentOffset"}
CAPACITY = "x-loadControlCapacity"


class InputError(ValueError):
    """Operator input that is refused; `problems` lists (field, problem), first one first."""

    def __init__(self, problems: Sequence[tuple[str, str]]):
        self.problems = list(problems)
        super().__init__("; ".join(f"{field}: {problem}" for field, problem in self.problems))

    @property
    def field(self) -> str:
        return self.problems[0][0]

    @classmethod
    def one(cls, field: str, problem: str) -> "InputError":
        return cls([(field, problem)])


def _time(value):
    """ISO 8601 text with a UTC offset -> aware datetime (numbers are not times here)."""
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not an ISO 8601 time: {value!r}") from None
    else:
        raise ValueError(f"must be an ISO 8601 time string, not {type(value).__name__}")
    if when.tzinfo is None:
        raise ValueError("needs a UTC offset, e.g. 2026-07-01T16:00:00-04:00")
    when = when.astimezone(UTC)
    if not EARLIEST <= when < LATEST:
        raise ValueError(f"{when:%Y-%m-%d} is outside {EARLIEST:%Y}-{LATEST:%Y}")
    return when


def _minutes(value: int) -> int:
    longest = MAX_EVENT // timedelta(minutes=1)
    if not 1 <= value <= longest:
        raise ValueError(f"must be positive, at most {longest} ({_hours(MAX_EVENT)} h)")
    return value


Time = Annotated[datetime, BeforeValidator(_time)]
Kw = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-MAX_KW, le=MAX_KW)]
Rating = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=MAX_KW)]
Id = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=128,
                                      pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$")]
ProgramId = Annotated[str, StringConstraints(strict=True, max_length=64,
                                             pattern=r"^[a-z][a-z0-9_]*$")]
Text = Annotated[str, StringConstraints(strict=True, min_length=1, max_length=500,
                                        strip_whitespace=True)]
Reason = Annotated[str, StringConstraints(strict=True, min_length=3, max_length=500,
                                          strip_whitespace=True)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Forceable(_Input):
    force: StrictBool = False
    force_reason: Reason | None = None

    @model_validator(mode="after")
    def _reason_for_force(self):
        if self.force and self.force_reason is None:
            raise ValueError("force_reason: required with force (it is stored with the event)")
        return self


class IntervalRequest(_Input):
    """One interval of an event's profile: how long, and the signal's value in it."""
    minutes: Annotated[StrictInt, AfterValidator(_minutes)]
    value: Kw


class EventRequest(_Forceable):
    program_id: ProgramId
    start: Time
    end: Time | None = None
    minutes: Annotated[StrictInt, AfterValidator(_minutes)] | None = None
    setpoint_kw: Kw | None = None
    # A profile instead of one setpoint: consecutive intervals covering the event exactly.
    intervals: Annotated[list[IntervalRequest], Field(min_length=1, max_length=96)] | None = None
    ven_ids: Annotated[list[Id], Field(min_length=1, max_length=100_000)] | None = None
    test_event: StrictBool = False
    plan: StrictBool = False

    @model_validator(mode="after")
    def _one_end(self):
        if (self.end is None) == (self.minutes is None):
            raise ValueError("minutes: give end or minutes (one of them)")
        _bounded(self.start, self.end_utc)
        if self.intervals is not None:
            if self.setpoint_kw is not None:
                raise ValueError("intervals: give setpoint_kw or intervals, not both")
            total = sum(interval.minutes for interval in self.intervals)
            if timedelta(minutes=total) != self.end_utc - self.start:
                raise ValueError(f"intervals: they last {total} minutes, the event "
                                 f"{_hours(self.end_utc - self.start)} h")
        return self

    @property
    def end_utc(self) -> datetime:
        return self.end if self.end is not None else self.start + timedelta(minutes=self.minutes)


class EventChange(_Forceable):
    start: Time | None = None
    end: Time | None = None
    setpoint_kw: Kw | None = None

    @model_validator(mode="after")
    def _something(self):
        if self.start is None and self.end is None and self.setpoint_kw is None:
            raise ValueError("nothing to change: give start, end or setpoint_kw")
        return self


class ParticipantRequest(_Input):
    participant_id: Id
    name: Text
    household_id: Id
    email: Annotated[str, StringConstraints(strict=True, max_length=254,
                                            pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")] | None = None
    webhook_url: Annotated[str, StringConstraints(strict=True, max_length=2000)] | None = None
    channel: Literal["email", "webhook", "none"] = "email"

    @field_validator("webhook_url")
    @classmethod
    def _safe_url(cls, url: str | None, info: ValidationInfo) -> str | None:
        if url is not None:
            check_url(url, allow_private=bool((info.context or {}).get("allow_private")))
        return url

    @model_validator(mode="after")
    def _channel_address(self):
        if self.channel == "email" and not self.email:
            raise ValueError("email: channel email needs an email address")
        if self.channel == "webhook" and not self.webhook_url:
            raise ValueError("webhook_url: channel webhook needs a webhook_url")
        return self


class VenRequest(_Input):
    """A device (VEN) by its name, program and kind: `vtn enrol`."""
    program_id: ProgramId
    ven_name: Id
    device_kind: Id


class EnrolmentRequest(VenRequest):
    participant_id: Id
    certificate_pem: Annotated[str, StringConstraints(strict=True, max_length=20_000)] | None = None
    fingerprint: Annotated[str, StringConstraints(strict=True, max_length=64,
                                                  pattern=r"^[0-9A-Fa-f:]+$")] | None = None
    charger_kw: Rating | None = None
    inverter_kw: Rating | None = None


class VenAction(_Input):
    reason: Reason | None = None


def parse(model: type[BaseModel], data, context: Mapping | None = None):
    """Validate operator input: the model, or InputError naming every bad field."""
    if not isinstance(data, dict):
        raise InputError.one("body", "must be a JSON object")
    try:
        return model.model_validate(data, context=context)
    except ValidationError as err:
        raise InputError([_problem(e) for e in err.errors()]) from None


def _problem(error: dict) -> tuple[str, str]:
    field = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    if ": " in message and not field and message.split(": ", 1)[0].isidentifier():
        field, message = message.split(": ", 1)     # a model rule that names its field
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    elif error["type"] == "missing":
        message = "missing"
    return field or "body", message


def _bounded(start: datetime, end: datetime) -> None:
    if end <= start:
        raise ValueError(f"end: the event ends ({end:%Y-%m-%dT%H:%M}Z) before it starts")
    if end - start > MAX_EVENT:
        raise ValueError(f"end: an event lasts at most {MAX_EVENT.total_seconds() / 3600:g} h")


# --- program rules (pure) --------------------------------------------------------------------

@dataclass(frozen=True)
class Problem:
    field: str
    problem: str
    forceable: bool       # a program rule the operator may override with force + reason


def interval_problems(program: Program, intervals: Sequence[IntervalRequest]) -> list[Problem]:
    """Each interval's value as a setpoint; a fixed-signal program's capacity profile may
    hold fractions 0-1 (0 = no charging, 1 = no limit)."""
    problems = []
    for i, interval in enumerate(intervals):
        field = f"intervals.{i}.value"
        if program.signal.value is not None:
            if program.signal.type != CAPACITY or not 0 <= interval.value <= 1:
                problems.append(Problem(field, f"program {program.id} sends a "
                                        f"{program.signal.type}: only fractions 0-1 of "
                                        f"x-loadControlCapacity may vary", False))
            continue
        problems += [replace(problem, field=field) for problem in
                     setpoint_problems(program, interval.value, creating=True)]
    return problems


def setpoint_problems(program: Program, setpoint_kw: float | None,
                      creating: bool) -> list[Problem]:
    """The setpoint against the program's signal and dispatch type (never forceable)."""
    if program.signal.value is not None:
        if setpoint_kw is not None:
            return [Problem("setpoint_kw", f"program {program.id} sends a fixed "
                            f"{program.signal.type} of {program.signal.value:g}; leave it out",
                            False)]
        return []
    if setpoint_kw is None:
        return [Problem("setpoint_kw", f"program {program.id} needs a setpoint in "
                        f"{program.signal.unit}", False)] if creating else []
    problems = []
    if (program.dispatch is Dispatch.DISCHARGE and setpoint_kw < 0
            and program.signal.type not in SIGNED_SIGNAL_TYPES):
        problems.append(Problem("setpoint_kw", f"{setpoint_kw:g} kW: a {program.signal.type} "
                                f"in discharge program {program.id} is not negative", False))
    limit = program.limits.inverter_max_kw
    if limit is not None and abs(setpoint_kw) > limit:
        problems.append(Problem("setpoint_kw", f"{setpoint_kw:g} kW exceeds the program's "
                                f"inverter limit of {limit:g} kW", False))
    return problems


def timing_problems(program: Program, start: datetime, end: datetime, now: datetime,
                    check_start: bool = True) -> list[Problem]:
    """The event's times against the clock (hard) and the program's rules (forceable).

    check_start=False: only the end moved (e.g. an active event cut short or extended)."""
    if end <= now:
        return [Problem("end", f"the event ends ({_z(end)}) in the past", False)]
    if start - now > MAX_LEAD:
        return [Problem("start", f"{_z(start)} is more than {MAX_LEAD.days} days ahead", False)]
    problems = []
    day = calendar.local_date(program, start)
    window = calendar.program_window_utc(program, day)
    if check_start:
        excluded = calendar.day_exclusion(program, day)
        if excluded:
            problems.append(Problem("start", f"{day}: {excluded} in program {program.id}", True))
        if start - now < program.notice:
            problems.append(Problem("start", f"{_z(start)} gives less than the program's "
                                    f"{_hours(program.notice)} h notice", True))
    if (check_start and start < window.start_utc) or end > window.end_utc:
        problems.append(Problem("start" if check_start else "end",
                                f"the event {_local(program, start)}-{_local(program, end)} "
                                f"is outside the program's window {program.window.start:%H:%M}-"
                                f"{program.window.end:%H:%M}", True))
    longest = max(program.durations)
    if end - start > longest:
        problems.append(Problem("end", f"the event lasts {_hours(end - start)} h, more than "
                                f"the program's {_hours(longest)} h", True))
    return problems


def target_problems(program: Program, ven_ids: Sequence[str],
                    programs_of: Mapping[str, set[str] | None],
                    refused: Mapping[str, str]) -> list[Problem]:
    """Targets must be known VENs of the event's program that are not disabled.

    programs_of: each VEN's programs (None: unknown VEN); refused: why a VEN is disabled.
    """
    problems = []
    for ven_id in ven_ids:
        programs = programs_of.get(ven_id)
        if programs is None:
            problems.append(Problem("ven_ids", f"unknown VEN {ven_id}", False))
        elif program.id not in programs:
            problems.append(Problem("ven_ids", f"VEN {ven_id} is not enrolled in {program.id}",
                                    False))
        elif ven_id in refused:
            problems.append(Problem("ven_ids", f"VEN {ven_id} is {refused[ven_id]}", False))
    return problems


def enforce(problems: Sequence[Problem], force: bool) -> None:
    """Raise InputError unless every problem is a program rule and the operator forced it."""
    blocking = [p for p in problems if not (force and p.forceable)]
    if blocking:
        hint = " (program rules: give force with a force_reason to override)" if any(
            p.forceable for p in blocking) and not force else ""
        raise InputError([(p.field, p.problem + (hint if i == len(blocking) - 1 else ""))
                          for i, p in enumerate(blocking)])


def check_url(url: str, allow_private: bool = False) -> None:
    """A webhook / callback URL: http(s), a host, and no loopback, link-local or private
    address unless allowed (the VTN must not be made to call into its own network)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise ValueError(f"not a URL: {err}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"scheme must be http or https, not {parts.scheme!r}")
    host = parts.hostname
    if not host:
        raise ValueError("the URL has no host")
    if parts.username or parts.password:
        raise ValueError("credentials in the URL are not allowed")
    if port == 0:
        raise ValueError("port 0 is not a port")
    if not allow_private:
        if host == "localhost" or host.endswith(".localhost"):
            raise ValueError(f"host {host} is loopback")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            try:            # the legacy forms the resolver also reads: 0x7f000001, 2130706433
                address = ipaddress.ip_address(socket.inet_aton(host))
            except OSError:
                return      # a name: its addresses are checked again when the VTN sends
        refuse_address(address)


def refuse_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if not address.is_global or address.is_multicast:
        kind = ("loopback" if address.is_loopback else "link-local" if address.is_link_local
                else "private" if address.is_private else "not a public address")
        raise ValueError(f"address {address} is {kind}")


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:g}"


def _z(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _local(program: Program, when: datetime) -> str:
    return when.astimezone(program.timezone).strftime("%H:%M")
