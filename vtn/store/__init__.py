"""The VTN store: every registration, event, opt response and telemetry point."""
from vtn.store import migrate  # noqa: F401
from vtn.store.db import Store, UTCDateTime, database_url  # noqa: F401
from vtn.store.models import (  # noqa: F401
    ACTIVE, CANCELLED, COMPLETED, EVENT_STATUSES, FAR, NEAR, PENDING, Enrolment, Event,
    EventTarget, EventTransition, Notice, OptAvailability, OptSchedule, OutboundMessage,
    Oadr3Client, Oadr3Report, Oadr3Subscription, Participant, Program, PushEndpoint, ReportRegistration,
    ReportRequest, Resource, TelemetryPoint, TelemetryQuarantine, TelemetryRaw, TelemetryRevision,
    Ven)
