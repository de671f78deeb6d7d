"""The OpenADR 2.0b push exchange model on the VTN: a push VEN's queue, POSTed to it.

A VEN that registers with oadrHttpPullModel false and an oadrTransportAddress gets
the messages a pull VEN would fetch with oadrPoll (the same queue, outbound_message,
built by the same code: `Vtn.compose`), each POSTed to `{address}/{service}` as soon
as it is queued. The VEN's answer (oadrCreatedEvent to an oadrDistributeEvent,
oadrCreatedReport to an oadrCreateReport, ...) is checked like any request (XSD,
signature with the certificate of the TLS connection, ReplayProtect, the VEN's
enrolled fingerprint) and handed to the handler that takes the same message on the
poll path. Only a checked answer confirms the delivery; until then the message stays
in the database queue.

- One VTN process at a time delivers a VEN's queue, in order: the one holding the
  VEN's lease (pushendpoint.lease_owner / lease_until). A process that dies
  mid-delivery loses its lease when it expires; another process then delivers
  again what was not confirmed (at least once; a VEN's event handling is
  idempotent per event version).
- An unreachable VEN is retried with exponential backoff (`PushSettings`). Once
  more events wait for it than the program's connectivity rule allows
  (offline_events_before_notice), the VTN logs an error and sends the
  participant the connectivity notice (vtn/notify.py).

The loop (`PushDelivery`) is transport-neutral: a transport is anything with
`deliver(endpoint, service, message_xml) -> Answer`. `HttpsPush` is the simple-HTTP
one (mutual TLS: the VTN's certificate as client certificate, the VEN's verified
against the CA and pinned to its enrolled fingerprint); vtn/xmpp.py's `XmppEdge` the
XMPP one; `BySchemes` picks one by the scheme of the VEN's address.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

import aiohttp
from openleadr import errors, hooks, utils
from sqlalchemy import exists, or_, update
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import select

from flexadr import oadr_xml, xsd
from flexadr.clock import Clock
from flexadr.tls import CertKey, TlsProfile, client_context
from vtn import metrics
from vtn.notify import OFFLINE_EVENTS_BEFORE_NOTICE
from vtn.operator_input import check_url
from vtn.security import Refused, verify_signature
from vtn.store import OutboundMessage, PushEndpoint, Store, Ven
from vtn.store.db import DISTRIBUTE_EVENT

if TYPE_CHECKING:
    from vtn.service import Vtn

log = logging.getLogger(__name__)

# The 2.0b service each queued message type is POSTed to (openleadr's URL scheme).
SERVICE = {
    "oadrDistributeEvent": "EiEvent",
    "oadrCreateReport": "EiReport",
    "oadrCancelReport": "EiReport",
    "oadrRegisterReport": "EiReport",
    "oadrRequestReregistration": "EiRegisterParty",
    "oadrCancelPartyRegistration": "EiRegisterParty",
}
# The answers the profile pairs with each pushed message; oadrResponse for any of them
# (e.g. an event that needs no response, or an error the VEN reports).
ANSWERS = {
    "oadrDistributeEvent": "oadrCreatedEvent",
    "oadrCreateReport": "oadrCreatedReport",
    "oadrCancelReport": "oadrCanceledReport",
    "oadrRegisterReport": "oadrRegisteredReport",
    "oadrCancelPartyRegistration": "oadrCanceledPartyRegistration",
}
MAX_ADDRESS = 2000


@dataclass(frozen=True)
class PushSettings:
    scan_interval: timedelta = timedelta(milliseconds=250)   # how often the queue is looked at
    timeout: timedelta = timedelta(seconds=20)               # one POST, answer included
    first_retry: timedelta = timedelta(seconds=2)            # doubled after each failure ...
    max_retry: timedelta = timedelta(minutes=5)              # ... up to this
    lease: timedelta = timedelta(seconds=60)                 # renewed before each message
    # VENs delivered to at once. With fewer, a VTN short of CPU serves its pull VENs'
    # polls first and push waits: 1,000 push VENs beside 1,000 pull VENs took 55 s at 16,
    # 25 s at 64, none sent twice (docs/benchmarks.md). Before the batched claim, 64 on
    # a box at load 8-12 made POSTs run past `timeout`, and be sent again.
    in_flight: int = 64


def check_address(address) -> str:
    """An oadrTransportAddress a push VEN may register: an https URL without credentials.

    Private and loopback hosts are allowed (VENs usually sit in private networks and the
    VEN is known by its certificate), unlike the webhooks of notices."""
    if not isinstance(address, str) or not address.strip():
        raise ValueError("a push VEN must give its https URL as oadrTransportAddress")
    address = address.strip()
    if len(address) > MAX_ADDRESS:
        raise ValueError(f"the oadrTransportAddress is longer than {MAX_ADDRESS} characters")
    check_url(address, allow_private=True)
    parts = urlsplit(address)
    if parts.scheme != "https":
        raise ValueError(f"the oadrTransportAddress must be an https URL (mutual TLS), "
                         f"not {parts.scheme}://")
    if parts.query or parts.fragment:
        raise ValueError("the oadrTransportAddress must not carry a query or a fragment")
    return address.rstrip("/")


def register(store: Store, ven_id: str, address: str | None, at: datetime) -> None:
    """Record how a VEN that just registered is reached: push to `address`, or pull (None)."""
    if address is None:     # nearly every VEN: one Core statement, no ORM session
        store.remove_push_endpoint(ven_id)
        return
    with store.session() as s:
        endpoint = s.get(PushEndpoint, ven_id)
        if endpoint is None:
            s.add(PushEndpoint(ven_id=ven_id, address=address, registered_at=at))
        else:
            endpoint.address, endpoint.registered_at = address, at
            endpoint.attempts, endpoint.next_attempt_at = 0, None
            endpoint.failing_since = endpoint.last_error = None
            s.add(endpoint)
        s.commit()


@dataclass(frozen=True)
class Answer:
    body: bytes
    # DER of the certificate the VEN's endpoint presented (XMPP: the answer's signature's
    # own, when the CA issued it): the answer must be signed with it
    tls_certificate: bytes | None


class Undelivered(Exception):
    """The VEN did not confirm a message: retried later."""


class Transport(Protocol):
    async def deliver(self, endpoint: PushEndpoint, service: str, message_xml: str) -> Answer:
        """Send one message to the VEN; its answer. Raise Undelivered (or OSError) if none."""

    async def close(self) -> None: ...


class HttpsPush:
    """Simple HTTP push: POST over mutual TLS.

    The VEN's certificate is verified against the CA; its host name is not checked,
    because the VEN is identified by the certificate itself: the answer must be signed
    with the TLS certificate, which must be the one enrolled for the VEN."""

    def __init__(self, identity: CertKey, ca_file, profile: TlsProfile, settings: PushSettings):
        self._context = client_context(profile, identity, ca_file, check_hostname=False)
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._context, limit=self._settings.in_flight),
                timeout=aiohttp.ClientTimeout(total=self._settings.timeout.total_seconds()))
        return self._session

    async def deliver(self, endpoint: PushEndpoint, service: str, message_xml: str) -> Answer:
        url = f"{endpoint.address}/{service}"
        try:
            async with self._client().post(url, data=message_xml.encode(),
                                           headers={"content-type": "application/xml"}) as reply:
                certificate = _peer_certificate(reply)
                body = await reply.read()
                if reply.status != 200:
                    raise Undelivered(f"HTTP {reply.status} from {url}")
        except (aiohttp.ClientError, asyncio.TimeoutError, ssl.SSLError) as err:
            raise Undelivered(f"{type(err).__name__} at {url}: {err}") from None
        return Answer(body, certificate)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class BySchemes:
    """One transport per scheme of the push address: `https` (HttpsPush), `xmpp`
    (vtn/xmpp.py, whose addresses are xmpp:<full JID>)."""

    def __init__(self, transports: dict[str, Transport]):
        self.transports = transports

    async def deliver(self, endpoint: PushEndpoint, service: str, message_xml: str) -> Answer:
        scheme = urlsplit(endpoint.address).scheme
        transport = self.transports.get(scheme)
        if transport is None:
            raise Undelivered(f"this VTN has no {scheme} transport for {endpoint.address}")
        return await transport.deliver(endpoint, service, message_xml)

    async def close(self) -> None:
        for transport in self.transports.values():
            await transport.close()


def _peer_certificate(reply: aiohttp.ClientResponse) -> bytes | None:
    # The connection is already released when the whole (small) answer came with the
    # headers; its protocol still holds the TLS transport. aiohttp has no public accessor.
    protocol = getattr(reply, "_protocol", None)
    transport = protocol.transport if protocol is not None else None
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    return ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None


@dataclass
class Claimed:
    """A VEN whose lease this process took: its endpoint, and its queue at that moment."""
    endpoint: PushEndpoint
    queue: list[OutboundMessage]
    at: datetime


def _lease_free(now: datetime, owner: str | None = None):
    """The endpoint's lease is nobody's (or `owner`'s) at `now`."""
    free = or_(PushEndpoint.lease_until.is_(None), PushEndpoint.lease_until < now)
    return free if owner is None else or_(free, PushEndpoint.lease_owner == owner)


def _head(queue: list[OutboundMessage]) -> list[OutboundMessage] | None:
    """The oldest undelivered message, with the distributions queued right after it
    (one oadrDistributeEvent carries every current event, as on the poll path)."""
    if not queue:
        return None
    head = [queue[0]]
    if head[0].message_type == DISTRIBUTE_EVENT:
        for message in queue[1:]:
            if message.message_type != DISTRIBUTE_EVENT:
                break
            head.append(message)
    return head


class PushDelivery:
    """Delivers every push VEN's queue from this process (see the module docstring)."""

    def __init__(self, vtn: "Vtn", transport: Transport, settings: PushSettings, wall: Clock):
        self.vtn, self.store, self.transport, self.settings = vtn, vtn.store, transport, settings
        self.wall = wall      # leases and retries run on wall time, whatever the VTN's clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._busy: set[str] = set()
        self._unreachable: set[str] = set()     # logged as past the connectivity limit
        self._slots = asyncio.Semaphore(settings.in_flight)
        self._task: asyncio.Task | None = None
        self._deliveries: set[asyncio.Task] = set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="push-delivery")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._deliveries) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._release_all()
        await self.transport.close()

    async def _run(self) -> None:
        failing = None      # the scan's error, logged once until the scan works again
        while True:
            try:
                for claimed in self._claim_due():
                    self._busy.add(claimed.endpoint.ven_id)
                    task = asyncio.create_task(self._deliver_queue(claimed))
                    self._deliveries.add(task)
                    task.add_done_callback(self._deliveries.discard)
                failing = None
            except Exception as err:   # noqa: BLE001 - keep delivering; the next scan retries
                if str(err) != failing:
                    log.error("push: the queue scan failed: %s", err)
                failing = str(err)
            await asyncio.sleep(self.settings.scan_interval.total_seconds())

    def _claim_due(self) -> list[Claimed]:
        """Take the leases of the VENs whose turn it is, with each one's endpoint and
        queue, in one transaction for the whole batch (statement by statement per VEN,
        this cost about as much CPU as the VEN's TLS handshake).

        A VEN's turn: registered for push, undelivered messages, no process delivering to
        it, its retry time come. At most twice `in_flight` VENs are this process's at a
        time (those delivered to, and as many waiting for a slot); the others are left to
        the next scans, or to other processes."""
        room = 2 * self.settings.in_flight - len(self._busy)
        if room <= 0:
            return []
        now = self.wall.now()
        with self.store.session() as s:
            waiting = exists().where(OutboundMessage.ven_id == PushEndpoint.ven_id,
                                     OutboundMessage.delivered_at.is_(None))
            due = s.exec(select(PushEndpoint.ven_id).join(Ven, Ven.ven_id == PushEndpoint.ven_id)
                         .where(Ven.registration_id.is_not(None), waiting, _lease_free(now),
                                PushEndpoint.ven_id.not_in(self._busy),
                                or_(PushEndpoint.next_attempt_at.is_(None),
                                    PushEndpoint.next_attempt_at <= now))
                         .order_by(PushEndpoint.ven_id).limit(room)).all()
            if not due:
                return []
            # Locked in one order, skipping rows another process is claiming (PostgreSQL;
            # SQLite has one writer at a time): processes never wait on each other here.
            free = s.exec(select(PushEndpoint.ven_id)
                          .where(PushEndpoint.ven_id.in_(due), _lease_free(now, self.owner))
                          .order_by(PushEndpoint.ven_id)
                          .with_for_update(skip_locked=True)).all()
            if not free:
                return []
            s.exec(update(PushEndpoint).where(PushEndpoint.ven_id.in_(free))
                   .values(lease_owner=self.owner, lease_until=now + self.settings.lease))
            endpoints = s.exec(select(PushEndpoint).where(PushEndpoint.ven_id.in_(free))).all()
            queued = s.exec(select(OutboundMessage)
                            .where(OutboundMessage.ven_id.in_(free),
                                   OutboundMessage.delivered_at.is_(None))
                            .order_by(OutboundMessage.id)).all()
            s.commit()
        queues: dict[str, list[OutboundMessage]] = {ven_id: [] for ven_id in free}
        for message in queued:
            queues[message.ven_id].append(message)
        return [Claimed(endpoint, queues[endpoint.ven_id], now) for endpoint in endpoints]

    def _renew(self, ven_id: str) -> bool:
        """Renew the VEN's lease; False if it expired and another process holds it."""
        now = self.wall.now()
        with self.store.session() as s:
            taken = s.exec(update(PushEndpoint)
                           .where(PushEndpoint.ven_id == ven_id, _lease_free(now, self.owner))
                           .values(lease_owner=self.owner,
                                   lease_until=now + self.settings.lease)).rowcount
            s.commit()
            return bool(taken)

    def _release(self, ven_id: str, **changes) -> None:
        with self.store.session() as s:
            s.exec(update(PushEndpoint).where(PushEndpoint.ven_id == ven_id,
                                              PushEndpoint.lease_owner == self.owner)
                   .values(lease_owner=None, lease_until=None, **changes))
            s.commit()

    def _release_all(self) -> None:
        try:
            with self.store.session() as s:
                s.exec(update(PushEndpoint).where(PushEndpoint.lease_owner == self.owner)
                       .values(lease_owner=None, lease_until=None))
                s.commit()
        except SQLAlchemyError as err:     # stopping all the same: the leases expire
            log.warning("push: could not release this process's leases: %s", err)

    async def _deliver_queue(self, claimed: Claimed) -> None:
        ven_id = claimed.endpoint.ven_id
        try:
            async with self._slots:
                await self._deliver_all(claimed)
        except asyncio.CancelledError:
            raise
        except Exception as err:   # noqa: BLE001 - one VEN's fault must not stop the others
            log.exception("push to VEN %s failed", ven_id)
            # Not at once again: a fault of ours would repeat at every scan.
            self._release(ven_id, next_attempt_at=self.wall.now() + self.settings.max_retry,
                          last_error=f"{type(err).__name__}: {err}"[:500])
        finally:
            self._busy.discard(ven_id)

    async def _deliver_all(self, claimed: Claimed) -> None:
        """Deliver the VEN's queue as claimed, in order, while the lease is ours (renewed
        at half its time); stop at the first message the VEN does not confirm. What is
        queued meanwhile goes at a next scan."""
        endpoint, queue = claimed.endpoint, claimed.queue
        renew_at = claimed.at + self.settings.lease / 2
        delivered, released = 0, False
        while (head := _head(queue)) is not None:
            if self.wall.now() >= renew_at:
                if not self._renew(endpoint.ven_id):
                    return      # expired and taken by another process
                renew_at = self.wall.now() + self.settings.lease / 2
                # It may have lapsed while the VEN waited for a slot, and another process
                # delivered part of the queue meanwhile.
                queue = list(self.store.pending_messages(endpoint.ven_id))
                continue
            last = len(head) == len(queue)
            try:
                await self._deliver_one(endpoint, head, release=last)
            except (Undelivered, OSError) as err:
                if delivered:   # a new streak
                    endpoint.attempts, endpoint.failing_since = 0, None
                await self._failed(endpoint, str(err))
                return
            del queue[:len(head)]
            delivered, released = delivered + 1, last
        if not delivered:
            self._release(endpoint.ven_id)
            return
        if endpoint.attempts:
            log.info("push: VEN %s is reachable again after %d failed attempt(s)",
                     endpoint.ven_id, endpoint.attempts)
        self._unreachable.discard(endpoint.ven_id)
        if not released:
            self.store.push_confirmed(endpoint.ven_id, self.owner)

    async def _deliver_one(self, endpoint: PushEndpoint, head: list[OutboundMessage],
                           release: bool) -> None:
        """Send `head` and record its delivery; with `release`, the VEN's lease ends (its
        failure record cleared) in the same transaction."""
        composed, handed_out = self.vtn.compose(endpoint.ven_id, head[0], self.vtn.clock.now())
        if composed is not None:     # None: no longer applies (as on the poll path)
            await self._send(endpoint, *composed)
        with self.store.transaction():
            handed_out()
            self.store.set_delivered([m.id for m in head], self.vtn.clock.now())
            if release:
                self.store.push_confirmed(endpoint.ven_id, self.owner)

    async def _send(self, endpoint: PushEndpoint, message_type: str, payload: dict) -> None:
        """Sign and POST one message; returns once the VEN's answer is taken."""
        ven_id = endpoint.ven_id
        payload = dict(payload, vtn_id=self.vtn.config.vtn_id, ven_id=ven_id)
        payload.setdefault("request_id", utils.generate_id())
        xml = self.vtn.signer(message_type, **payload)
        hooks.call("before_respond", xml)    # what the VTN sends, for its observers
        answer = await self.transport.deliver(endpoint, SERVICE[message_type], xml)
        await self._take_answer(ven_id, message_type, answer)
        metrics.MESSAGES_OUT.labels(message_type).inc()
        log.info("pushed %s to VEN %s", message_type, ven_id)

    async def _take_answer(self, ven_id: str, sent: str, answer: Answer) -> None:
        """Check the VEN's answer like a request and hand it to its poll-path handler, in
        one transaction as on that path.

        Raises Undelivered if it is no answer of this VEN's (the message is sent again);
        an answer that says the VEN could not use the message confirms it all the same."""
        try:
            message_type, payload = self._checked(ven_id, answer)
        except Refused as err:
            raise Undelivered(f"the answer was refused: {err.code} {err.description}") from None
        if message_type not in (ANSWERS.get(sent), "oadrResponse"):
            raise Undelivered(f"a {message_type} is no answer to a {sent}")
        if message_type == "oadrResponse":
            response = payload.get("response") or {}
            if str(response.get("response_code")) != "200":
                log.warning("VEN %s answered %s to a pushed %s: %s", ven_id,
                            response.get("response_code"), sent, response.get("response_description"))
            return
        service = next(s for s in self.vtn.server.services.values() if message_type in s.handlers)
        try:
            with self.store.transaction():
                await service.handle_message(message_type, payload)
        except errors.ProtocolError as err:     # rolled back, as the poll path would
            log.warning("VEN %s: its %s to a pushed %s was refused: %s %s", ven_id, message_type,
                        sent, err.response_code, err.response_description)

    def _checked(self, ven_id: str, answer: Answer) -> tuple[str, dict]:
        """(type, payload) of a VEN's answer: XSD-valid, signed with the TLS certificate,
        which is the VEN's enrolled one, ReplayProtect fresh and unused."""
        try:
            tree = oadr_xml.parse(answer.body)
            xsd.check(tree)
        except (oadr_xml.Malformed, xsd.SchemaViolation) as err:
            raise Refused(400, f"not valid OpenADR 2.0b: {err}") from None
        fingerprint, timestamp, nonce = verify_signature(tree, answer.tls_certificate)
        ven = self.store.ven(ven_id)
        if ven is None or fingerprint != ven.fingerprint:
            raise Refused(463, "the answer was signed with another certificate than the VEN's")
        self.vtn.replay.check(fingerprint, timestamp, nonce)
        message_type, payload = oadr_xml.payload(tree)
        if payload.get("ven_id") not in (None, ven_id):
            raise Refused(452, f"the answer names venID {payload.get('ven_id')!r}")
        return message_type, payload

    async def _failed(self, endpoint: PushEndpoint, reason: str) -> None:
        now = self.wall.now()
        attempts = endpoint.attempts + 1
        delay = min(self.settings.first_retry * 2 ** (attempts - 1), self.settings.max_retry)
        self._release(endpoint.ven_id, attempts=attempts, next_attempt_at=now + delay,
                      failing_since=endpoint.failing_since or now, last_error=reason[:500])
        log.warning("push to VEN %s failed (attempt %d, next in %.0f s): %s", endpoint.ven_id,
                    attempts, delay.total_seconds(), reason)
        await self._connectivity(endpoint.ven_id, endpoint.failing_since or now)

    async def _connectivity(self, ven_id: str, since: datetime) -> None:
        """Past the program's limit of events missed: one error line (per streak and
        process) and the participant's connectivity notice (once per streak, any process)."""
        ven = self.store.ven(ven_id)
        notices = self.vtn.notices
        rule = notices._rule(ven.program_id) if notices is not None else None
        limit = (rule.offline_events_before_notice if rule is not None
                 else OFFLINE_EVENTS_BEFORE_NOTICE)
        missed = sorted((self.store.event(t.event_id) for t in self.store.undelivered(ven_id)),
                        key=lambda event: (event.created_at, event.event_id))
        if len(missed) <= limit:
            return
        if ven_id not in self._unreachable:
            self._unreachable.add(ven_id)
            log.error("push: VEN %s unreachable since %s with %d event(s) undelivered (the "
                      "program allows %d)", ven_id, since.isoformat(timespec="seconds"),
                      len(missed), limit)
        if notices is not None and rule is not None and ven.participant_id:
            await notices._notify_connectivity(ven_id, missed[limit], self.vtn.clock.now())
