"""Participant notices: what to tell whom (pure) and the channels that carry it (I/O).

A notice goes out at an event's publication, at the program's follow-up time
(e.g. 4 h before start) and when a device has been offline for too many
events. Each carries an opt-out link with a one-time token; following it
records the participant's opt-out for that event.

Channels are pluggable: anything with `async send(message)`; EmailNotifier
(SMTP) and WebhookNotifier (HTTP POST of JSON) ship here.
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import smtplib
import socket
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from typing import Protocol, Sequence
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import aiohttp

from flexadr.clock import Clock
from schedules import model
from vtn import audit
from vtn.operator_input import check_url, refuse_address
from vtn.store import CANCELLED, COMPLETED, PENDING, Event, Notice, Participant, Store

log = logging.getLogger(__name__)

PUBLISHED, FOLLOW_UP, CONNECTIVITY = "published", "follow_up", "connectivity"
# Defaults for the notice text; each program file's [connectivity] decides.
OFFLINE_EVENTS_BEFORE_NOTICE = 3      # notify once offline for MORE than this many events
UNENROL_AFTER = timedelta(days=7)
SMTP_POLICY = SMTP.clone(max_line_length=200)   # keep subjects on one line


@dataclass(frozen=True)
class NoticeMessage:
    kind: str
    participant_id: str
    ven_id: str
    event_id: str | None
    channel: str
    to: str                      # e-mail address or webhook URL
    subject: str
    body: str
    opt_out_url: str | None
    token: str


class Notifier(Protocol):
    async def send(self, message: NoticeMessage) -> None:
        """Deliver one notice; raise on failure."""


class EmailNotifier:
    def __init__(self, host: str, port: int, sender: str, timeout_s: float = 10.0):
        self.host, self.port, self.sender, self.timeout_s = host, port, sender, timeout_s

    async def send(self, message: NoticeMessage) -> None:
        email = EmailMessage(policy=SMTP_POLICY)
        email["From"] = self.sender
        email["To"] = message.to
        email["Subject"] = message.subject
        email["X-Flexadr-Notice"] = f"{message.kind} {message.event_id or ''}".strip()
        email.set_content(message.body)
        await asyncio.to_thread(self._send, email)

    def _send(self, email: EmailMessage) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
            smtp.send_message(email)


class WebhookNotifier:
    """POSTs the notice as JSON. The URL's host must resolve to public addresses only (unless
    allow_private), and redirects are not followed: a participant's URL cannot make the VTN
    call into its own network (e.g. 169.254.169.254)."""

    def __init__(self, timeout_s: float = 10.0, allow_private: bool = False):
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.allow_private = allow_private

    async def send(self, message: NoticeMessage) -> None:
        await self._check(message.to)
        async with aiohttp.ClientSession(timeout=self.timeout) as session:
            async with session.post(message.to, json=asdict(message),
                                    allow_redirects=False) as response:
                if response.status >= 300:
                    raise RuntimeError(f"webhook {message.to} answered HTTP {response.status}")


    async def _check(self, url: str) -> None:
        check_url(url, self.allow_private)
        if self.allow_private:
            return
        parts = urlsplit(url)
        infos = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
            type=socket.SOCK_STREAM)
        for *_, sockaddr in infos:
            refuse_address(ipaddress.ip_address(sockaddr[0].split("%", 1)[0]))


class ChannelNotifier:
    """Sends each notice through the channel its participant chose."""

    def __init__(self, **channels: Notifier):
        self.channels = channels

    async def send(self, message: NoticeMessage) -> None:
        notifier = self.channels.get(message.channel)
        if notifier is None:
            raise RuntimeError(f"no notifier for channel {message.channel!r}")
        await notifier.send(message)


# --- what to say (pure) --------------------------------------------------------------------

def compose(kind: str, event: Event | None, participant: Participant, ven_id: str, token: str,
            public_url: str | None, tz: ZoneInfo, program_name: str) -> NoticeMessage:
    opt_out_url = f"{public_url.rstrip('/')}/optout/{token}" if public_url and event else None
    if kind == CONNECTIVITY:
        subject = f"{program_name}: your device has been offline"
        body = (f"Hello {participant.name},\n\nyour device ({ven_id}) has not been online for "
                f"more than {OFFLINE_EVENTS_BEFORE_NOTICE} consecutive events of {program_name}. "
                f"Please reconnect it within {UNENROL_AFTER.days} days to stay enrolled.\n")
    else:
        start = event.start_utc.astimezone(tz)
        end = event.end_utc.astimezone(tz)
        when = f"{start:%A %d %B %Y, %H:%M} to {end:%H:%M} ({start.tzname()})"
        if event.status == CANCELLED:
            subject = f"{program_name}: event on {start:%d %B} cancelled"
            body = f"Hello {participant.name},\n\nthe event of {when} is cancelled.\n"
        else:
            lead = "Reminder: " if kind == FOLLOW_UP else ""
            subject = f"{lead}{program_name} event {start:%A %d %B}, {start:%H:%M}-{end:%H:%M}"
            body = (f"Hello {participant.name},\n\n{program_name} calls an event {when}. "
                    f"Your device ({ven_id}) takes part automatically.\n")
            if opt_out_url:
                body += f"\nTo opt out of this event, open:\n{opt_out_url}\n"
    to = participant.email if participant.channel == "email" else participant.webhook_url
    return NoticeMessage(kind=kind, participant_id=participant.participant_id, ven_id=ven_id,
                         event_id=event.event_id if event else None, channel=participant.channel,
                         to=to or "", subject=subject, body=body, opt_out_url=opt_out_url,
                         token=token)


def offline_streak(events: Sequence[Event], online_during: dict[str, bool]) -> list[Event]:
    """The completed events at the end of the list during which the device was offline."""
    streak: list[Event] = []
    for event in events:
        if online_during.get(event.event_id, False):
            streak = []
        else:
            streak.append(event)
    return streak


# --- when to say it (store + clock + notifier) ---------------------------------------------

class NoticeService:
    def __init__(self, store: Store, notifier: Notifier, clock: Clock,
                 public_url: str | None = None, tz: ZoneInfo = ZoneInfo("America/New_York")):
        self.store, self.notifier, self.clock = store, notifier, clock
        self.public_url, self.tz = public_url, tz
        self._rules: dict = {}

    async def dispatch_due(self, check_connectivity: bool = True) -> list[Notice]:
        """Send every notice that is due and was not sent yet (safe to call repeatedly).

        The connectivity rule only changes when an event completes: callers that
        tick often pass check_connectivity=False in between.
        """
        now = self.clock.now()
        sent = []
        for event in self.store.open_events():
            if event.status == PENDING:
                continue
            kinds = [PUBLISHED]
            if event.follow_up_at is not None and event.follow_up_at <= now < event.start_utc:
                kinds.append(FOLLOW_UP)
            done = {(n.ven_id, n.kind) for n in self.store.notices(event_id=event.event_id)}
            for target in self.store.targets(event.event_id):
                for kind in kinds:
                    if (target.ven_id, kind) in done:
                        continue
                    notice = await self._notify(kind, event, target.ven_id, now)
                    if notice is not None:
                        sent.append(notice)
        if check_connectivity:
            sent.extend(await self._connectivity(now))
        return sent

    async def _notify(self, kind: str, event: Event | None, ven_id: str,
                      now: datetime) -> Notice | None:
        ven = self.store.ven(ven_id)
        participant = self.store.participant(ven.participant_id) if ven.participant_id else None
        if participant is None or participant.channel == "none":
            return None
        program = self.store.program(ven.program_id)
        token = secrets.token_urlsafe(24)
        notice = Notice(ven_id=ven_id, participant_id=participant.participant_id,
                        event_id=event.event_id if event else None, kind=kind,
                        channel=participant.channel, token=token, sent_at=now)
        if not self.store.add_notice(notice):     # already sent (by us or another process)
            return None
        message = compose(kind, event, participant, ven_id, token, self.public_url, self.tz,
                          program.name if program else ven.program_id)
        try:
            await self.notifier.send(message)
        except Exception as err:   # noqa: BLE001 - a channel failure is stored, not fatal
            log.warning("notice %s to %s failed: %s", kind, participant.participant_id, err)
            self.store.update_notice(notice.id, delivered=False, error=str(err))
            return notice
        self.store.update_notice(notice.id, delivered=True, error=None)
        notice.delivered = True
        return notice

    def _rule(self, program_id: str):
        """The program file's connectivity rule (None: the program has none)."""
        if program_id not in self._rules:
            try:
                self._rules[program_id] = model.load(program_id).connectivity
            except (FileNotFoundError, model.ProgramError):
                self._rules[program_id] = None
        return self._rules[program_id]

    async def _connectivity(self, now: datetime) -> list[Notice]:
        sent = []
        for ven in self.store.vens():
            rule = self._rule(ven.program_id)
            if not ven.participant_id or rule is None:
                continue
            streak = self.offline_streak(ven.ven_id)
            if len(streak) <= rule.offline_events_before_notice:
                continue
            # Once per streak: keyed on the event that crossed the threshold.
            crossing = streak[rule.offline_events_before_notice]
            notice = await self._notify_connectivity(ven.ven_id, crossing, now)
            if notice is not None:
                sent.append(notice)
        return sent

    async def _notify_connectivity(self, ven_id: str, crossing: Event, now: datetime):
        ven = self.store.ven(ven_id)
        participant = self.store.participant(ven.participant_id)
        program = self.store.program(ven.program_id)
        token = secrets.token_urlsafe(24)
        notice = Notice(ven_id=ven_id, participant_id=participant.participant_id,
                        event_id=crossing.event_id, kind=CONNECTIVITY,
                        channel=participant.channel, token=token, sent_at=now)
        if not self.store.add_notice(notice):
            return None
        message = compose(CONNECTIVITY, None, participant, ven_id, token, None, self.tz,
                          program.name if program else ven.program_id)
        try:
            await self.notifier.send(message)
            self.store.update_notice(notice.id, delivered=True, error=None)
        except Exception as err:   # noqa: BLE001
            self.store.update_notice(notice.id, delivered=False, error=str(err))
        return notice

    def offline_streak(self, ven_id: str) -> list[Event]:
        completed = [event for target, event in self.store.targets_of_ven(ven_id)
                     if event.status == COMPLETED]
        online = {event.event_id: self._online_during(ven_id, event) for event in completed}
        return offline_streak(completed, online)

    def _online_during(self, ven_id: str, event: Event) -> bool:
        points = self.store.telemetry(ven_id, event.start_utc, event.end_utc)
        return any(point.online is not False for point in points)

    def to_unenrol(self) -> list[dict]:
        """VENs notified for connectivity more than 7 days ago that have not been online since."""
        now = self.clock.now()
        due = []
        for notice in self.store.notices(kind=CONNECTIVITY):
            ven = self.store.ven(notice.ven_id)
            rule = self._rule(ven.program_id)
            after = timedelta(days=rule.reconnect_days) if rule else UNENROL_AFTER
            if now - notice.sent_at < after:
                continue
            later = [p for p in self.store.telemetry(notice.ven_id, notice.sent_at, None)
                     if p.online is not False]
            if not later:
                due.append({"ven_id": notice.ven_id, "participant_id": notice.participant_id,
                            "notified_at": notice.sent_at,
                            "unenrol_after": notice.sent_at + after})
        return due


def opt_out_target(store: Store, token: str, clock: Clock) -> tuple[Event | None, str]:
    """What an opt-out link stands for: (the event, or None with the reason it does not apply).

    Reading it changes nothing: a mail scanner that follows the link records no opt-out."""
    notice = store.notice_by_token(token)
    if notice is None or notice.event_id is None or notice.kind == CONNECTIVITY:
        return None, "This opt-out link is not valid."
    event = store.event(notice.event_id)
    if event.status in (CANCELLED, COMPLETED) or clock.now() >= event.end_utc:
        return None, f"The event {event.event_id} is over or cancelled; nothing to opt out of."
    return event, notice.ven_id


def record_opt_out(store: Store, token: str, clock: Clock) -> tuple[bool, str]:
    """Confirm an opt-out link (the POST of its page): (recorded?, message for the participant)."""
    event, ven_id_or_reason = opt_out_target(store, token, clock)
    if event is None:
        return False, ven_id_or_reason
    ven_id = ven_id_or_reason
    with store.transaction():
        before = audit.snapshot(store.target(event.event_id, ven_id))
        store.record_opt(ven_id, event.event_id, "optOut", clock.now(), source="notice")
        with store.session() as session:       # the participant, through the notice's link
            notice = store.notice_by_token(token)
            audit.record(session, actor=f"participant:{notice.participant_id or ven_id}",
                         action="event.opt_out", subject_type="event_target",
                         subject_id=f"{event.event_id}/{ven_id}", before=before,
                         after=audit.snapshot(store.target(event.event_id, ven_id)),
                         clock=clock)
    return True, f"You have opted out of event {event.event_id}."
