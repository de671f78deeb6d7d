"""The VTN store: every registration, event, opt response and telemetry point."""
from vtn.store import migrate  # noqa: F401
from vtn.store.db import Store, UTCDateTime, database_url  # noqa: F401
from vtn.store.models import (  # noqa: F401
    ACTIVE, CANCELLED, COMPLETED, EVENT_STATUSES, FAR, NEAR, PENDING, ROLES, VIEWER, OPERATOR,
    ADMIN, ApiToken, AuditEntry, Enrolment, Event, EventTarget, EventTransition, Notice,
    Oadr3Client, Oadr3Delivery, Oadr3Report, Oadr3Subscription, ObjectChange, OptAvailability,
    OptSchedule, OutboundMessage, Participant, PlannerDecision, Program, PushEndpoint,
    ReportRegistration, ReportRequest, Resource, TelemetryPoint, TelemetryQuarantine,
    TelemetryRaw, TelemetryRevision, User, UserSession, Ven)
