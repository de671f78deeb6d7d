"""SQLModel tables of the VTN. Every datetime column is UTC (see UTCDateTime).

The schema is owned by the Alembic migrations in vtn/store/migrations: a change
here needs a new revision there (tests check that the two agree).
"""
from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Column, Index, Text, UniqueConstraint, text
from sqlmodel import Field, SQLModel

from vtn.store.types import UTCDateTime

# Event status, as stored and as sent (OpenADR 2.0b eventStatus plus our 'pending').
PENDING, FAR, NEAR, ACTIVE, COMPLETED, CANCELLED = (
    "pending", "far", "near", "active", "completed", "cancelled")
EVENT_STATUSES = (PENDING, FAR, NEAR, ACTIVE, COMPLETED, CANCELLED)


class Program(SQLModel, table=True):
    """A program's operational parameters, copied from its program file at enrolment/publication."""
    program_id: str = Field(primary_key=True)
    name: str
    market_context: str
    dispatch: str
    notice_s: int
    follow_up_s: int | None = None
    telemetry_interval_s: int
    one_device_per_household: bool = False
    min_charger_kw: float | None = None
    max_charger_kw: float | None = None
    max_inverter_kw: float | None = None
    conflicts_with: str = ""          # comma-separated program ids a device may not also be in
    max_opt_outs_per_season: int | None = None


class Participant(SQLModel, table=True):
    """A customer (household or business) and how they want to be told about events."""
    participant_id: str = Field(primary_key=True)
    name: str
    household_id: str = Field(index=True)
    email: str | None = None
    webhook_url: str | None = None
    channel: str = "email"            # email | webhook | none


class Ven(SQLModel, table=True):
    """An enrolled VEN. Enrolment (name, fingerprint, program) comes first, registration later."""
    ven_id: str = Field(primary_key=True)
    ven_name: str = Field(unique=True, index=True)
    fingerprint: str = Field(unique=True, index=True)
    program_id: str = Field(index=True)
    device_kind: str
    participant_id: str | None = Field(default=None, foreign_key="participant.participant_id")
    registration_id: str | None = None
    registered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_seen_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # An operator's `vtn vens disable|revoke`: every request of the VEN is refused (463).
    disabled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    disabled_reason: str | None = None
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)   # for good
    # OpenADR 3.1: the OAuth client that speaks for this VEN (None: a 2.0b-only VEN).
    client_id: str | None = Field(default=None, unique=True, index=True)
    created_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    modified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Resource(SQLModel, table=True):
    """A device behind a VEN, with the ratings the enrolment rules check."""
    __table_args__ = (UniqueConstraint("ven_id", "resource_id"),)
    id: int | None = Field(default=None, primary_key=True)
    ven_id: str = Field(foreign_key="ven.ven_id", index=True)
    resource_id: str
    device_kind: str
    charger_kw: float | None = None
    inverter_kw: float | None = None
    created_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    modified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Enrolment(SQLModel, table=True):
    """A participant's device in a program."""
    id: int | None = Field(default=None, primary_key=True)
    participant_id: str = Field(foreign_key="participant.participant_id", index=True)
    program_id: str = Field(foreign_key="program.program_id", index=True)
    ven_id: str = Field(foreign_key="ven.ven_id", index=True)
    device_kind: str
    enrolled_on: date
    unenrolled_on: date | None = None


class Event(SQLModel, table=True):
    event_id: str = Field(primary_key=True)
    program_id: str = Field(index=True)
    market_context: str
    signal_name: str
    signal_type: str
    signal_value: float
    signal_unit: str | None = None
    start_utc: datetime = Field(sa_type=UTCDateTime)
    end_utc: datetime = Field(sa_type=UTCDateTime)
    modification_number: int = 0
    status: str = Field(default=FAR, index=True)
    test_event: bool = False
    created_at: datetime = Field(sa_type=UTCDateTime)
    modified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    follow_up_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # JSON [[duration_s, value], ...] when the signal changes during the event (see
    # vtn/event_intervals.py); None: one interval of signal_value over the whole event.
    interval_schedule: str | None = Field(default=None, sa_type=Text)
    forced_reason: str | None = None     # the operator's reason for overriding program rules
    # JSON [{"rule": ..., "message": ...}, ...]: the dispatch rules the operator overrode
    # (vtn/dispatch_rules.py); settlement flags the event. None: no rule overridden.
    rule_overrides: str | None = Field(default=None, sa_type=Text)

    @property
    def cancelled(self) -> bool:
        return self.status == CANCELLED


class EventTransition(SQLModel, table=True):
    """Every status change (and modification) of an event, with its time."""
    id: int | None = Field(default=None, primary_key=True)
    event_id: str = Field(foreign_key="event.event_id", index=True)
    from_status: str | None = None
    to_status: str
    modification_number: int
    at: datetime = Field(sa_type=UTCDateTime)
    note: str = ""


class EventTarget(SQLModel, table=True):
    """One VEN's view of one event: what was delivered and what it answered."""
    # A VEN's events (every oadrDistributeEvent) are looked up by VEN, not by event.
    __table_args__ = (Index("ix_eventtarget_ven_id", "ven_id"),)
    event_id: str = Field(foreign_key="event.event_id", primary_key=True)
    ven_id: str = Field(foreign_key="ven.ven_id", primary_key=True)
    delivered_modification: int = -1
    opt_type: str | None = None
    opt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    opt_source: str | None = None     # createdEvent | eiOpt | notice | operator


class OptSchedule(SQLModel, table=True):
    """An EiOpt oadrCreateOpt: an event opt-out/in, or an availability schedule."""
    __table_args__ = (UniqueConstraint("ven_id", "opt_id"),)
    id: int | None = Field(default=None, primary_key=True)
    ven_id: str = Field(foreign_key="ven.ven_id", index=True)
    opt_id: str
    opt_type: str
    opt_reason: str
    event_id: str | None = None
    modification_number: int | None = None
    market_context: str | None = None
    resource_ids: str = ""            # comma-separated targets' resource ids
    created_at: datetime = Field(sa_type=UTCDateTime)
    cancelled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class OptAvailability(SQLModel, table=True):
    """One interval of an EiOpt vavailability schedule."""
    id: int | None = Field(default=None, primary_key=True)
    opt_schedule_id: int = Field(foreign_key="optschedule.id", index=True)
    start_utc: datetime = Field(sa_type=UTCDateTime)
    end_utc: datetime = Field(sa_type=UTCDateTime)


class ReportRegistration(SQLModel, table=True):
    """One data point (r_id) of a report a VEN offered in oadrRegisterReport."""
    __table_args__ = (UniqueConstraint("ven_id", "report_specifier_id", "r_id"),)
    id: int | None = Field(default=None, primary_key=True)
    ven_id: str = Field(foreign_key="ven.ven_id", index=True)
    report_specifier_id: str
    report_name: str
    r_id: str
    resource_id: str | None = None
    measurement: str | None = None    # itemDescription, e.g. RealPower, power, stateOfCharge
    unit: str | None = None
    scale: str | None = None
    item_name: str | None = None      # itemBase element: powerReal, energyReal, customUnit, ...
    report_type: str | None = None
    reading_type: str | None = None
    min_period_s: float | None = None
    max_period_s: float | None = None
    registered_at: datetime = Field(sa_type=UTCDateTime)


class ReportRequest(SQLModel, table=True):
    """A report the VTN asked a VEN for (oadrRegisteredReport or oadrCreateReport)."""
    report_request_id: str = Field(primary_key=True)
    ven_id: str = Field(foreign_key="ven.ven_id", index=True)
    report_specifier_id: str
    report_name: str
    r_ids: str                        # comma-separated
    granularity_s: float
    report_back_duration_s: float
    one_shot: bool = False
    created_at: datetime = Field(sa_type=UTCDateTime)
    acknowledged_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancelled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class OutboundMessage(SQLModel, table=True):
    """A message queued for a VEN, handed out in order on oadrPoll."""
    # Every poll asks for a VEN's oldest undelivered message: a partial index holds only
    # those, so the lookup stays one probe however many were delivered before.
    __table_args__ = (Index("ix_outboundmessage_pending", "ven_id", "id",
                            sqlite_where=text("delivered_at IS NULL"),
                            postgresql_where=text("delivered_at IS NULL")),)
    id: int | None = Field(default=None, primary_key=True)
    ven_id: str = Field(foreign_key="ven.ven_id", index=True)
    message_type: str
    payload: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class PushEndpoint(SQLModel, table=True):
    """A VEN registered for the push exchange model: its queue is POSTed to `address`.

    One VTN process at a time delivers a VEN's queue (in order): the one holding the
    lease (`lease_owner` until `lease_until`). `next_attempt_at` spaces the retries
    while the VEN is unreachable; `failing_since` is when the current streak began."""
    ven_id: str = Field(primary_key=True, foreign_key="ven.ven_id")
    address: str
    registered_at: datetime = Field(sa_type=UTCDateTime)
    lease_owner: str | None = None
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    attempts: int = 0                 # failed attempts in the current streak
    next_attempt_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    failing_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = None


class TelemetryPoint(SQLModel, table=True):
    """One reporting interval of one VEN; kw is power into the device (charging > 0)."""
    __table_args__ = (UniqueConstraint("ven_id", "interval_start"),)
    id: int | None = Field(default=None, primary_key=True)
    ven_id: str = Field(foreign_key="ven.ven_id", index=True)
    interval_start: datetime = Field(sa_type=UTCDateTime)
    interval_end: datetime = Field(sa_type=UTCDateTime)
    kw: float | None = None
    kwh: float | None = None
    soc_pct: float | None = None
    plugged_in: bool | None = None
    online: bool | None = None
    manual_override: bool | None = None
    received_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # oadrPayloadResourceStatus oadrLoadControlState current values
    load_capacity: float | None = None
    load_level_offset: float | None = None
    load_percent_offset: float | None = None
    load_setpoint: float | None = None


class TelemetryRevision(SQLModel, table=True):
    """A re-sent interval whose value differs from the stored one (append-only: the
    TelemetryPoint keeps the first received; settlement uses it and flags the VEN)."""
    id: int | None = Field(default=None, primary_key=True)
    ven_id: str = Field(foreign_key="ven.ven_id", index=True)
    interval_start: datetime = Field(sa_type=UTCDateTime)
    interval_end: datetime = Field(sa_type=UTCDateTime)
    quantity: str                     # a TelemetryPoint column, or interval_end
    first_value: str                  # as stored (JSON)
    value: str                        # as re-sent (JSON)
    report_request_id: str | None = None
    received_at: datetime = Field(sa_type=UTCDateTime)


class KeptTelemetry(SQLModel):
    """A value as the VEN sent it (JSON), with why it is not a stored reading."""
    id: int | None = Field(default=None, primary_key=True)
    ven_id: str = Field(foreign_key="ven.ven_id", index=True)
    report_request_id: str | None = None
    report_name: str
    r_id: str | None = None
    payload: str = Field(sa_type=Text)
    reason: str = Field(sa_type=Text)
    received_at: datetime = Field(sa_type=UTCDateTime)


class TelemetryRaw(KeptTelemetry, table=True):
    """A value the VTN cannot store by meaning, kept with its rID and metadata."""
    interval_start: datetime = Field(sa_type=UTCDateTime)
    interval_end: datetime = Field(sa_type=UTCDateTime)
    registration: str = Field(sa_type=Text)     # JSON: what the VEN declared for the rID


class TelemetryQuarantine(KeptTelemetry, table=True):
    """A value (or a whole report: no interval) the VTN did not believe, with the reason."""
    interval_start: datetime | None = Field(default=None, sa_type=UTCDateTime)
    interval_end: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Notice(SQLModel, table=True):
    """A notice sent (or attempted) to a participant."""
    __table_args__ = (UniqueConstraint("ven_id", "event_id", "kind"),)
    id: int | None = Field(default=None, primary_key=True)
    ven_id: str = Field(foreign_key="ven.ven_id", index=True)
    participant_id: str | None = None
    event_id: str | None = None
    kind: str                         # published | follow_up | connectivity
    channel: str
    token: str = Field(unique=True, index=True)
    sent_at: datetime = Field(sa_type=UTCDateTime)
    delivered: bool = False
    error: str | None = None


class Oadr3Client(SQLModel, table=True):
    """An OpenADR 3.1 OAuth 2.0 client (client-credentials grant): business logic or a VEN."""
    client_id: str = Field(primary_key=True)
    role: str                         # bl | ven
    scopes: str                       # space-separated OAuth scopes it may be granted
    secret_hash: str                  # scrypt$n$r$p$salt$hash (hex); the secret is never stored
    created_at: datetime = Field(sa_type=UTCDateTime)
    # The same secret as the MQTT broker's password, hashed the way mosquitto_passwd does
    # ($7$: PBKDF2-SHA512); `vtn mqtt acl` writes it into the broker's password file.
    mqtt_password_hash: str | None = None


class Oadr3Report(SQLModel, table=True):
    """An OpenADR 3.1 report as posted; its USAGE/DEMAND/SoC values are also TelemetryPoints."""
    report_id: str = Field(primary_key=True)
    client_id: str = Field(index=True)
    ven_id: str = Field(foreign_key="ven.ven_id", index=True)
    client_name: str = Field(index=True)
    event_id: str = Field(foreign_key="event.event_id", index=True)
    program_id: str = Field(index=True)
    body: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_type=UTCDateTime)
    modified_at: datetime = Field(sa_type=UTCDateTime)


class Oadr3Subscription(SQLModel, table=True):
    """An OpenADR 3.1 subscription (webhook callbacks for object operations)."""
    subscription_id: str = Field(primary_key=True)
    client_id: str = Field(index=True)
    client_name: str = Field(index=True)
    program_id: str | None = Field(default=None, index=True)
    body: str = Field(default="{}", sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_type=UTCDateTime)
    modified_at: datetime = Field(sa_type=UTCDateTime)


class PlannerDecision(SQLModel, table=True):
    """Why the planner called a program's day or did not, with what it saw at its data
    cut-off (schedules.planner.DayDecision); the latest decision per program and day."""
    __table_args__ = (UniqueConstraint("program_id", "day"),)
    id: int | None = Field(default=None, primary_key=True)
    program_id: str = Field(index=True)
    day: date
    decided_utc: datetime = Field(sa_type=UTCDateTime)
    event_id: str | None = Field(default=None, foreign_key="event.event_id", index=True)
    reason: str
    forecast_peak_mw: float | None = None
    threshold_mw: float | None = None
    rank: int | None = None           # the day's forecast peak among the season's so far
    budget_left: int | None = None    # events left before the season maximum
    exclusions: str = ""              # storm / emergency periods touching the window, "; "-joined
    forecast_source: str | None = None


class ObjectChange(SQLModel, table=True):
    """A change of a stored object (an event created, modified, cancelled; a 3.1 report,
    subscription, ven or resource), written in the transaction that makes it, whichever
    edge or command made it. The 3.1 notifier turns
    each into its subscribers' notifications (Oadr3Delivery) and marks it fanned out."""
    id: int | None = Field(default=None, primary_key=True)
    object_type: str                  # EVENT (the 3.1 objectTypes names)
    object_id: str = Field(index=True)
    operation: str                    # CREATE | UPDATE | DELETE
    note: str = ""                    # the transition note: planned, published, modified ...
    at: datetime = Field(sa_type=UTCDateTime)
    # Objects other than events: the object as shown to business logic, and its VEN (who
    # else may be told); an event is read from its row when it is fanned out.
    body: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    ven_id: str | None = None
    fanned_out: bool = Field(default=False, index=True)
    claimed_by: str | None = None     # the fan-out round that took it


class Oadr3Delivery(SQLModel, table=True):
    """One notification to send: a webhook POST of a subscription, or an MQTT publish.

    Rows stay until delivered (or given up after the bounded attempts), so a restart loses
    none; a sender claims a row for a lease (claimed_by, claimed_until) so that several
    VTN processes on one database send each row once."""
    id: int | None = Field(default=None, primary_key=True)
    change_id: int = Field(foreign_key="objectchange.id", index=True)
    channel: str                      # webhook | mqtt
    subscription_id: str | None = Field(default=None, index=True)   # webhooks
    target: str                       # the callback URL or the MQTT topic
    bearer_token: str | None = None   # the subscription's, sent as Authorization: Bearer
    body: str = Field(sa_column=Column(Text, nullable=False))       # the Notification JSON
    attempts: int = 0
    next_attempt_at: datetime = Field(sa_type=UTCDateTime, index=True)
    claimed_by: str | None = None
    claimed_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    delivered_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    failed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_error: str | None = None


class AuditEntry(SQLModel, table=True):
    """Who changed what, when, with the values before and after (vtn/audit.py).

    Written in the transaction of the change itself: a change that is rolled back or
    refused leaves no row, and no change is stored without its row."""
    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(sa_type=UTCDateTime, index=True)
    actor: str = Field(index=True)        # admin-token, cli:<OS user>, a user's name
    action: str = Field(index=True)       # e.g. event.create, ven.disable
    subject_type: str = Field(index=True)  # event, ven, enrolment, participant, ...
    subject_id: str = Field(index=True)
    before: str | None = Field(default=None, sa_type=Text)   # JSON object
    after: str | None = Field(default=None, sa_type=Text)    # JSON object
    reason: str | None = Field(default=None, sa_type=Text)


class NonceRecord(SQLModel, table=True):
    """A signed message's ReplayProtect nonce, kept until its timestamp leaves the window.

    Shared by every VTN process on the database and kept across restarts, so a captured
    message is refused wherever and whenever it is replayed. `key` digests the signing
    certificate's fingerprint with the nonce: a bounded, unique key whatever a peer sends.
    """
    key: str = Field(primary_key=True)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)


# Console and admin-API roles, least to most: each may do what the one before it may.
VIEWER, OPERATOR, ADMIN = "viewer", "operator", "admin"
ROLES = (VIEWER, OPERATOR, ADMIN)


class User(SQLModel, table=True):
    """A person using the console or the admin API (vtn/auth.py)."""
    __tablename__ = "console_user"
    username: str = Field(primary_key=True)
    password_hash: str                # argon2id; the password is never stored
    role: str                         # viewer | operator | admin
    created_at: datetime = Field(sa_type=UTCDateTime)
    disabled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ApiToken(SQLModel, table=True):
    """A user's admin-API bearer token; only its SHA-256 is stored (shown once at creation)."""
    __tablename__ = "api_token"
    token_digest: str = Field(primary_key=True)
    username: str = Field(foreign_key="console_user.username", index=True)
    name: str = ""                    # what the user calls it (e.g. "grafana")
    created_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class UserSession(SQLModel, table=True):
    """A console login: the cookie holds a random id, the row its SHA-256 and CSRF token."""
    __tablename__ = "user_session"
    session_digest: str = Field(primary_key=True)
    username: str = Field(foreign_key="console_user.username", index=True)
    csrf_token: str
    created_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)


VTN_MODELS = (Program, Participant, Ven, Resource, Enrolment, Event, EventTransition, EventTarget,
              OptSchedule, OptAvailability, ReportRegistration, ReportRequest, OutboundMessage,
              TelemetryPoint, TelemetryRevision, TelemetryRaw, TelemetryQuarantine, Notice,
              PlannerDecision, Oadr3Client, Oadr3Report, Oadr3Subscription, NonceRecord,
              ObjectChange, Oadr3Delivery, AuditEntry, User, ApiToken, UserSession,
              PushEndpoint)


def vtn_metadata():
    """The VTN's tables only (SQLModel's shared metadata also holds the VEN's local tables)."""
    from sqlalchemy import MetaData
    metadata = MetaData()
    names = {model.__tablename__ for model in VTN_MODELS}
    for table in SQLModel.metadata.sorted_tables:
        if table.name in names:
            table.to_metadata(metadata)
    return metadata
