"""Request bodies of the OpenADR 3.1.0 API, written from spec/openadr3.yaml (components/schemas).

Only what clients send is modelled here; responses are built in mapping.py and checked
against the YAML itself by the tests. Names follow the YAML (camelCase on the wire).
Unknown members are ignored, as the YAML does not forbid them (clients often send back
the VTN-provided metadata, id, createdDateTime ..., with an update).
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal, Union

from pydantic import (BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictFloat,
                      StrictInt, StrictStr, StringConstraints, TypeAdapter)

from flexadr.oadr3_time import parse_duration, parse_time

ObjectID = Annotated[str, StringConstraints(min_length=1, max_length=128,
                                            pattern=r"^[a-zA-Z0-9_-]*$")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128)]   # clientName, venName ...
Target = Name
Url = Annotated[str, StringConstraints(min_length=2, max_length=8000)]


DateTime = Annotated[datetime, BeforeValidator(parse_time)]
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
