"""OpenADR 2.0b over XMPP: what the VTN's edge (vtn/xmpp.py) and the VEN's link
(ven/openadr20b/xmpp_link.py) share. slixmpp, through a real XMPP server (Prosody).

The binding follows avob/OpenADR's XMPP service (OpenADRXMPPClient's
OadrXmppClient20b.java, OpenADRServerVTN20b's xmpp/XmppListener.java), the 2.0b
profile's own text not being at hand:

- Every OpenADR message is the body of a <message/> stanza: the signed oadrPayload
  as text. The signed bytes arrive unchanged; as an XML child of the stanza they would
  be re-serialised by the XMPP libraries on the way (new namespace prefixes), which
  breaks the signature's digest.
- The VEN registers with oadrTransportName xmpp and its full JID as
  oadrTransportAddress; the VTN sends its messages to that JID, the VEN sends every
  request (registration, oadrRequestEvent, oadrCreatedEvent, oadrCreateOpt, reports)
  to the VTN's JID.
- Request and answer are paired by XEP-0201 threads: a request carries
  <thread>ID</thread>, its answer <thread parent="ID">. avob pairs nothing (each side
  answers with a new message, one JID resource per service); here one JID serves every
  service, the message type naming it. An answer nobody waits for any more is dropped,
  never taken for a request (two peers could otherwise answer each other forever).
- TLS is required (STARTTLS, the server certificate verified against the CA, our
  client certificate presented to a server that asks for one); the server
  authenticates the JID (SASL). The XML signature's certificate stands in for the TLS
  peer certificate of the HTTP transports: `signer_certificate` accepts it only when
  the CA issued it, it is in its validity period and not revoked.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Awaitable, Callable

import slixmpp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from lxml import etree

from flexadr import tls

log = logging.getLogger(__name__)

_DS = "{http://www.w3.org/2000/09/xmldsig#}"
RECONNECT_FIRST_S = 0.5       # doubled after each failed connection ...
RECONNECT_MAX_S = 30.0        # ... up to this
CONNECT_TIMEOUT_S = 10.0

# (sender's full JID, message body) -> the answer's body ("" an empty one), None for none
RequestHandler = Callable[[str, bytes], Awaitable[str | None]]


@dataclass(frozen=True)
class XmppSettings:
    """One side's account on the XMPP server."""
    host: str                   # the server to connect to (the JID's domain is checked on its certificate)
    port: int
    jid: str                    # full JID: user@domain/resource
    password: str
    cert: Path                  # the TLS client certificate: the same as the 2.0b one
    key: Path
    ca_file: Path
    tls_profile: tls.TlsProfile = "default"


class Unanswered(Exception):
    """A request got no answer (not connected, the peer offline, or too late)."""


def bare(jid: str) -> str:
    """user@domain of a JID."""
    return str(slixmpp.JID(jid).bare)


def valid_jid(text: str) -> str | None:
    """The full JID in `text`, or None if it is not one (a registration's address)."""
    try:
        jid = slixmpp.JID(text.strip())
    except (slixmpp.InvalidJID, AttributeError, TypeError):
        return None
    return str(jid.full) if jid.user and jid.domain and jid.resource else None


class Endpoint:
    """One XMPP connection, kept up: requests out (awaiting their answers), requests in
    (answered by `on_request`)."""

    def __init__(self, settings: XmppSettings, on_request: RequestHandler):
        self.settings, self.on_request = settings, on_request
        self.connected = asyncio.Event()
        self._client: slixmpp.ClientXMPP | None = None
        self._pending: dict[str, tuple[str, asyncio.Future]] = {}   # thread -> (peer's bare JID, answer)
        self._task: asyncio.Task | None = None
        self._handling: set[asyncio.Task] = set()

    @property
    def jid(self) -> str:
        return self.settings.jid

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_connected(), name=f"xmpp-{self.jid}")

    async def stop(self) -> None:
        for task in (self._task, *self._handling):
            if task is not None:
                task.cancel()
        await asyncio.gather(*(t for t in (self._task, *self._handling) if t is not None),
                             return_exceptions=True)
        self._task = None
        if self._client is not None:
            self._client.disconnect(wait=0)
            self._client = None
        self.connected.clear()
        self._fail_pending("the XMPP connection was closed")

    async def request(self, to: str, body: str, timeout_s: float) -> bytes:
        """Send `body` to `to`; the body of its answer."""
        client = self._client
        if client is None or not self.connected.is_set():
            raise Unanswered(f"not connected to the XMPP server {self.settings.host}")
        thread = uuid.uuid4().hex
        answer = asyncio.get_running_loop().create_future()
        self._pending[thread] = (bare(to), answer)
        message = client.make_message(mto=to, mbody=body, mtype="normal")
        message["id"], message["thread"] = thread, thread
        try:
            message.send()
            return await asyncio.wait_for(answer, timeout_s)
        except asyncio.TimeoutError:
            raise Unanswered(f"no answer from {to} within {timeout_s:g} s") from None
        finally:
            self._pending.pop(thread, None)

    async def _keep_connected(self) -> None:
        delay = RECONNECT_FIRST_S
        while True:
            closed = asyncio.get_running_loop().create_future()
            client = self._new_client(closed)
            started = await self._session(client, closed)
            if started:
                delay = RECONNECT_FIRST_S
                await closed
                log.warning("%s: XMPP connection to %s:%s lost", self.jid, self.settings.host,
                            self.settings.port)
            self.connected.clear()
            self._client = None
            self._fail_pending("the XMPP connection was lost")
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX_S)

    def _new_client(self, closed: asyncio.Future) -> slixmpp.ClientXMPP:
        s = self.settings
        client = slixmpp.ClientXMPP(s.jid, s.password)
        client.ssl_context = tls.client_context(s.tls_profile, tls.CertKey(s.cert, s.key),
                                                s.ca_file)
        client.enable_direct_tls = False     # STARTTLS on the c2s port (TLS then required)
        client.add_event_handler("message", self._on_message)
        client.add_event_handler("message_error", self._on_message)

        def close(reason) -> None:
            if not closed.done():
                closed.set_result(reason)
        for event in ("disconnected", "connection_failed", "failed_all_auth", "stream_error"):
            client.add_event_handler(event, close)
        return client

    async def _session(self, client: slixmpp.ClientXMPP, closed: asyncio.Future) -> bool:
        """Connect and authenticate; True once the session started."""
        started = asyncio.get_running_loop().create_future()
        client.add_event_handler("session_start",
                                 lambda _event: started.done() or started.set_result(True))
        client.connect(self.settings.host, self.settings.port)
        await asyncio.wait({started, closed}, timeout=CONNECT_TIMEOUT_S,
                           return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            log.warning("%s: cannot connect to the XMPP server %s:%s (%s)", self.jid,
                        self.settings.host, self.settings.port,
                        closed.result() if closed.done() else "timed out")
            client.disconnect(wait=0)
            return False
        client.send_presence()
        self._client = client
        self.connected.set()
        log.info("%s connected to the XMPP server %s:%s", self.jid, self.settings.host,
                 self.settings.port)
        return True

    def _fail_pending(self, why: str) -> None:
        for _, answer in self._pending.values():
            if not answer.done():
                answer.set_exception(Unanswered(why))

    def _on_message(self, message) -> None:
        sender, body = str(message["from"]), message["body"]
        if message["type"] == "error":      # the server bounced a request: the peer is offline
            pending = self._pending.get(message["id"])
            if pending is not None and not pending[1].done():
                pending[1].set_exception(Unanswered(
                    f"{sender} is unreachable: {message['error']['condition']}"))
            return
        parent = message["parent_thread"]
        if parent:                          # an answer
            pending = self._pending.get(parent)
            if pending is None or pending[0] != bare(sender) or pending[1].done():
                log.warning("%s: dropped an answer from %s that nobody waits for", self.jid,
                            sender)
                return
            pending[1].set_result(body.encode())
            return
        if not body:
            return                          # not OpenADR (a chat state, a receipt)
        task = asyncio.create_task(self._answer(sender, message["thread"], body))
        self._handling.add(task)
        task.add_done_callback(self._handling.discard)

    async def _answer(self, sender: str, thread: str, body: str) -> None:
        try:
            answer = await self.on_request(sender, body.encode())
        except Exception:   # noqa: BLE001 - one request's fault must not end the connection
            log.exception("%s: handling a message from %s failed", self.jid, sender)
            return
        client = self._client
        if answer is None or client is None:
            return
        reply = client.make_message(mto=sender, mbody=answer, mtype="normal")
        reply["thread"] = uuid.uuid4().hex
        reply["parent_thread"] = thread or ""
        reply.send()


def issuers(ca_file: Path) -> list[x509.Certificate]:
    """The CA certificates of `ca_file`, for `signer_certificate` (read once)."""
    return x509.load_pem_x509_certificates(Path(ca_file).read_bytes())


def signer_certificate(tree: etree._Element, cas: list[x509.Certificate],
                       revoked: Callable[[], set[int]] = set) -> bytes | None:
    """The DER of the certificate in a message's XML signature, if one of `cas` issued
    it, it is valid now and its serial is not `revoked()`; else None (the message is
    then refused as not signed by a known certificate)."""
    text = tree.findtext(f"./{_DS}Signature//{_DS}X509Certificate")
    if not text or not text.strip():
        return None
    try:
        der = base64.b64decode("".join(text.split()), validate=True)
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    now = datetime.now(timezone.utc)
    if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
        return None
    for issuer in cas:
        try:
            cert.verify_directly_issued_by(issuer)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return None if cert.serial_number in revoked() else der
    return None
