"""Operator input: the one set of models the admin API and the CLI verbs read through.

Shape and absolute bounds (types, finite numbers, durations, dates) are pydantic
models here: a bad one is refused whatever the program. The rules that need a program,
the clock or the store (season, days, window, notice, budgets, signal sign, targets,
conflicts) are vtn.dispatch_rules; an event request may carry an `override_reason` for
the program rules an operator may override.
"""
from __future__ import annotations

import ipaddress
import socket
from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal, Mapping, Sequence
from urllib.parse import urlsplit

from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field,
                      StrictBool, StrictInt, StringConstraints, ValidationError, ValidationInfo,
                      field_validator, model_validator)

UTC = timezone.utc
MAX_EVENT = timedelta(hours=24)        # longer than any program's window: a typo, not an event
MAX_KW = 1000.0                        # per VEN; far above any enrolled device
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)


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


class _Overridable(_Input):
    # Why the operator overrides the program rules the event breaks (stored and audited).
    override_reason: Reason | None = None


class IntervalRequest(_Input):
    """One interval of an event's profile: how long, and the signal's value in it."""
    minutes: Annotated[StrictInt, AfterValidator(_minutes)]
    value: Kw


class EventRequest(_Overridable):
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


class EventChange(_Overridable):
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


class AuditWindow(_Input):
    """`vtn audit export --since --until`."""
    since: Time | None = None
    until: Time | None = None


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

