"""Request bodies of the OpenADR 3.1.0 API, written from spec/openadr3.yaml (components/schemas).

Only what clients send is modelled here; responses are built in mapping.py and checked
against the YAML itself by the tests. Names follow the YAML (camelCase on the wire).
Unknown members are ignored, as the YAML does not forbid them (clients often send back
the VTN-provided metadata, id, createdDateTime ..., with an update).
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal, Union

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictFloat,
                      StrictInt, StrictStr, StringConstraints, TypeAdapter)

# A start of 0001-01-01 means "now" (User Guide, intervalPeriod).
NOW = datetime(1, 1, 1, tzinfo=timezone.utc)
_DURATION = re.compile(r"^(-?)P(?=\d|T\d)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)([DW]))?"
                       r"(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")

ObjectID = Annotated[str, StringConstraints(min_length=1, max_length=128,
                                            pattern=r"^[a-zA-Z0-9_-]*$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]   # clientName, venName ...
Target = Name
Url = Annotated[str, StringConstraints(min_length=2, max_length=8000)]


def _date_time(value):
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


DateTime = Annotated[datetime, BeforeValidator(_date_time)]
Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Point(_Body):
    x: StrictFloat | StrictInt
    y: StrictFloat | StrictInt


class ValuesMap(_Body):
    type: Name
    values: list[StrictBool | StrictInt | StrictFloat | StrictStr | Point]


class IntervalPeriod(_Body):
    start: DateTime | None = None
    duration: Duration | None = None
    randomizeStart: Duration | None = None


class Interval(_Body):
    id: StrictInt
    intervalPeriod: IntervalPeriod | None = None
    payloads: list[ValuesMap]


class EventPayloadDescriptor(_Body):
    objectType: Literal["EVENT_PAYLOAD_DESCRIPTOR"]
    payloadType: Name
    units: Name | None = None
    currency: str | None = None


class ReportPayloadDescriptor(_Body):
    objectType: Literal["REPORT_PAYLOAD_DESCRIPTOR"]
    payloadType: Name
    readingType: Name | None = None
    units: Name | None = None
    accuracy: StrictFloat | StrictInt | None = None
    confidence: Annotated[int, Field(ge=0, le=100)] | None = None


class ReportDescriptor(_Body):
    payloadType: Name
    readingType: Name | None = None
    units: Name | None = None
    targets: list[Target] | None = None
    aggregate: bool = False
    startInterval: int = -1
    numIntervals: int = -1
    historical: bool = True
    frequency: int = -1
    repeat: int = 1
    reportIntervals: Literal["INTERVALS", "SUB_INTERVALS", "OPEN_INTERVALS"] = "INTERVALS"


class ProgramRequest(_Body):
    programName: Name
    intervalPeriod: IntervalPeriod | None = None
    targets: list[Target] | None = None


class EventRequest(_Body):
    programID: ObjectID
    eventName: str | None = None
    duration: Duration | None = None
    priority: Annotated[int, Field(ge=0)] | None = None
    targets: list[Target] | None = None
    reportDescriptors: list[ReportDescriptor] | None = None
    payloadDescriptors: list[EventPayloadDescriptor] | None = None
    intervalPeriod: IntervalPeriod | None = None
    intervals: list[Interval] = Field(min_length=1)


class ReportResource(_Body):
    resourceName: Name
    intervalPeriod: IntervalPeriod | None = None
    intervals: list[Interval]


class ReportRequest(_Body):
    eventID: ObjectID
    clientName: Name
    reportName: str | None = None
    payloadDescriptors: list[ReportPayloadDescriptor] | None = None
    resources: list[ReportResource]


class ObjectOperation(_Body):
    objects: list[Literal["PROGRAM", "EVENT", "REPORT", "SUBSCRIPTION", "VEN", "RESOURCE"]]
    operations: list[Literal["READ", "CREATE", "UPDATE", "DELETE"]]
    callbackUrl: Url
    bearerToken: str | None = None


class SubscriptionRequest(_Body):
    clientName: Name
    programID: ObjectID | None = None
    objectOperations: list[ObjectOperation]
    targets: list[Target] | None = None


class BlVenRequest(_Body):
    objectType: Literal["BL_VEN_REQUEST"]
    clientID: Name
    targets: list[Target] | None = None
    venName: Name
    attributes: list[ValuesMap] | None = None


class VenVenRequest(_Body):
    objectType: Literal["VEN_VEN_REQUEST"]
    venName: Name
    attributes: list[ValuesMap] | None = None


class BlResourceRequest(_Body):
    objectType: Literal["BL_RESOURCE_REQUEST"]
    clientID: Name
    targets: list[Target] | None = None
    resourceName: Name
    venID: ObjectID
    attributes: list[ValuesMap] | None = None


class VenResourceRequest(_Body):
    objectType: Literal["VEN_RESOURCE_REQUEST"]
    resourceName: Name
    venID: ObjectID
    attributes: list[ValuesMap] | None = None


# venRequest and resourceRequest: oneOf the BL and the VEN form, told apart by objectType.
VEN_REQUEST = TypeAdapter(Annotated[Union[BlVenRequest, VenVenRequest],
                                    Field(discriminator="objectType")])
RESOURCE_REQUEST = TypeAdapter(Annotated[Union[BlResourceRequest, VenResourceRequest],
                                         Field(discriminator="objectType")])


class ClientCredentialRequest(_Body):
    grant_type: Literal["client_credentials"]
    client_id: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    client_secret: Annotated[str, StringConstraints(min_length=1, max_length=4096)]
    scope: Annotated[str, StringConstraints(max_length=4096)] | None = None
