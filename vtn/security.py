"""Every OpenADR request, from bytes to handler, on one checked path.

openleadr's VTNService.handler parses a body with a schema-validating lxml parser
(one request declaring an entity segfaults the process), verifies signatures only
of messages that carry a venID, answers errors with a bare oadrResponse, and turns
any other exception into HTTP 500. `MessagePath` replaces that handler (as the
app's middleware, for the routes of openleadr's services) and keeps the services
themselves: their handlers and handle_message dispatch.

In order, each step refusing with the profile's code, one log line and nothing
written:
1. the body: application/xml, at most MAX_BYTES, DTD-free, well-formed, bounded
   depth (flexadr.oadr_xml) -> 400;
2. the 2.0b XSD -> 400;
3. the XML signature, made with the peer's certificate (`Peer`: the TLS client
   certificate; over XMPP the signature's own, if the CA issued it); its
   ReplayProtect timestamp inside the window around now and its nonce never seen
   by any VTN process on the database (ReplayGuard) -> 463;
4. the vtnID is ours (452); a venID belongs to that certificate and is
   registered (463, or oadrRequestReregistration as openleadr does), and the
   sender may speak for it (over XMPP: the JID it registered from) -> 463;
5. the handler, in one store transaction with the rendering of its answer: an
   openleadr ProtocolError keeps its code, any other exception (or an answer
   that would not be valid 2.0b) is invalid data (454), and either rolls back
   everything the handler wrote; the answer is the
   type the profile pairs with the request, with the code, the requestID echoed
   and the venID where known (error_answer). A fault of this path itself answers
   469 and logs where it happened: never an HTTP 500.
"""
from __future__ import annotations

import hashlib
import logging
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable, ContextManager

from aiohttp import web
from lxml import etree
from openleadr import enums, errors, hooks, utils
from openleadr.messaging import VERIFIER
from openleadr.service import VTNService

from flexadr import oadr_xml, xsd
from flexadr.signing import BadSignature, Ids, OtherShape, prebuilt, verify_fast
from flexadr.clock import Clock
from vtn import metrics

log = logging.getLogger(__name__)
CODES = enums.STATUS_CODES
BAD_REQUEST = 400
OTHER_ERROR = CODES.DEPLOYMENT_ERROR_OR_OTHER_ERROR   # 469: a fault of the VTN, not of the message
_EI = "{http://docs.oasis-open.org/ns/energyinterop/201110}"
_PYLD = "{http://docs.oasis-open.org/ns/energyinterop/201110/payloads}"
_DSP = "{http://openadr.org/oadr-2.0b/2012/07/xmldsig-properties}"
_DS = "{http://www.w3.org/2000/09/xmldsig#}"
_SIGNED_ID = "oadrSignedObject"
_SIGNED_OBJECT = "{http://openadr.org/oadr-2.0b/2012/07}oadrSignedObject"
# Messages a VEN may send before it has a registration (openleadr's rule).
_BEFORE_REGISTRATION = ("oadrCreatePartyRegistration", "oadrQueryRegistration")
# The profile's answer to each request type; everything else is answered oadrResponse.
PAIRED = {
    "oadrCreatePartyRegistration": "oadrCreatedPartyRegistration",
    "oadrQueryRegistration": "oadrCreatedPartyRegistration",
    "oadrCancelPartyRegistration": "oadrCanceledPartyRegistration",
    "oadrRequestEvent": "oadrDistributeEvent",
    "oadrCreateOpt": "oadrCreatedOpt",
    "oadrCancelOpt": "oadrCanceledOpt",
    "oadrRegisterReport": "oadrRegisteredReport",
    "oadrUpdateReport": "oadrUpdatedReport",
    "oadrCreateReport": "oadrCreatedReport",
    "oadrCancelReport": "oadrCanceledReport",
}
PROFILES = [{"profile_name": "2.0b", "transports": [{"transport_name": "simpleHttp"}]}]


class Refused(Exception):
    """A request answered with an OpenADR error code; `detail` is logged, not sent."""

    def __init__(self, code: int, description: str, detail: str = ""):
        super().__init__(description)
        self.code = code
        self.description = description
        self.detail = detail


class PartlyRefused(errors.InvalidDataError):
    """Raised by a handler that stored what it could accept and refuses the rest: the
    answer carries 454, but the request's transaction is committed (quarantined
    telemetry and the values accepted beside it must be kept)."""


class _Empty(Exception):
    """An oadrResponse needs no answer (openleadr's SendEmptyHTTPResponse)."""


@dataclass
class Incoming:
    """What is known of a request so far: enough to pair and address an error answer."""
    message_type: str | None = None
    request_id: str | None = None
    ven_id: str | None = None
    payload: dict = field(default_factory=dict)


def error_answer(vtn_id: str, incoming: Incoming, code: int, description: str) -> tuple[str, dict]:
    """The profile's paired answer to `incoming`, carrying an error code."""
    answer_type = PAIRED.get(incoming.message_type or "", "oadrResponse")
    payload = incoming.payload
    answer: dict[str, Any] = {
        "response": {"response_code": code, "response_description": description,
                     "request_id": incoming.request_id or ""},
        "vtn_id": vtn_id, "ven_id": incoming.ven_id or "", "request_id": utils.generate_id()}
    if answer_type == "oadrCreatedPartyRegistration":
        answer.update(registration_id=None, profiles=PROFILES)
    elif answer_type == "oadrCanceledPartyRegistration":
        answer["registration_id"] = _text(payload.get("registration_id"))
    elif answer_type == "oadrDistributeEvent":
        answer["events"] = []
    elif answer_type in ("oadrCreatedOpt", "oadrCanceledOpt"):
        answer["opt_id"] = _text(payload.get("opt_id"))
    elif answer_type == "oadrRegisteredReport":
        answer["report_requests"] = []
    elif answer_type in ("oadrCreatedReport", "oadrCanceledReport"):
        answer["pending_reports"] = []
    return answer_type, answer


def _site(err: BaseException) -> str:
    """Where an exception was raised, and what it says: for one log line."""
    frame = err.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    where = (f"{frame.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.tb_lineno}"
             if frame is not None else "?")
    return f"{where}: {type(err).__name__}: {err}"


def _text(value) -> str:
    return value if isinstance(value, str) else ""


class ReplayGuard:
    """ReplayProtect: a timestamp inside [now - past, now + future] and a nonce used once.

    The nonces live in the store, so every VTN process on the database shares them and a
    restart forgets none. Each check is one unique-key insert, in the request's own
    transaction (a refused request keeps no nonce, like nothing else it sent); expired rows
    are deleted in bulk, at most once per `past` window per process.
    """

    def __init__(self, store, clock: Clock, past: timedelta, future: timedelta):
        self.store, self.clock, self.past, self.future = store, clock, past, future
        self._next_prune: datetime | None = None

    def check(self, fingerprint: str, timestamp: datetime, nonce: str) -> None:
        now = self.clock.now()
        skew = (timestamp - now).total_seconds()
        if skew > self.future.total_seconds() or -skew > self.past.total_seconds():
            raise Refused(CODES.NOT_REGISTERED_OR_AUTHORIZED,
                          f"ReplayProtect timestamp {timestamp.isoformat()} is {skew:+.1f} s from "
                          f"the VTN's clock; accepted: -{self.past.total_seconds():g} s to "
                          f"+{self.future.total_seconds():g} s")
        key = hashlib.sha256(f"{fingerprint}\n{nonce}".encode()).hexdigest()
        if not self.store.use_nonce(key, timestamp + self.past):
            raise Refused(CODES.NOT_REGISTERED_OR_AUTHORIZED,
                          "this ReplayProtect nonce was used before: the message is a replay")
        if self._next_prune is None or now >= self._next_prune:
            self._next_prune = now + self.past
            self.store.prune_nonces(now)


def _replay_pair(timestamp: str | None, nonce: str | None) -> tuple[datetime, str]:
    if timestamp is not None and nonce:
        try:
            return utils.parse_datetime(timestamp), nonce
        except (ValueError, TypeError, OverflowError):
            pass
    raise Refused(CODES.NOT_REGISTERED_OR_AUTHORIZED, "the signature has no valid ReplayProtect")


def _verified_replay_protect(results) -> tuple[datetime, str]:
    """(timestamp, nonce) from the signed SignatureProperties, not from anywhere in the body
    (an unsigned ds:Object could carry a fresh pair in front of the signed one)."""
    for result in results:
        signed = result.signed_xml
        if signed is None:
            continue
        timestamp = signed.findtext(f".//{_DSP}timestamp")
        nonce = signed.findtext(f".//{_DSP}nonce")
        if timestamp is not None and nonce:
            return _replay_pair(timestamp, nonce)
    return _replay_pair(None, None)


def verify_signature(tree: etree._Element, tls_certificate: bytes | None,
                     ids: Ids | None = None) -> tuple[str, datetime, str]:
    """The signing certificate's fingerprint and the signed (timestamp, nonce).

    `tls_certificate` is the DER of the TLS client certificate; `ids` the tree's Ids, if
    known. The profile's signature
    shape is checked by flexadr.signing.verify_fast (~4x cheaper); any other shape by
    signxml, as openleadr does.
    """
    if tls_certificate is None:
        raise Refused(CODES.NOT_REGISTERED_OR_AUTHORIZED, "a TLS client certificate is required")
    certificate = tree.find(f"./{_DS}Signature//{_DS}X509Certificate")
    if certificate is None or not (certificate.text or "").strip():
        raise Refused(CODES.NOT_REGISTERED_OR_AUTHORIZED, "the message is not signed")
    tls_fingerprint = utils.certificate_fingerprint_from_der(tls_certificate)
    try:
        return (tls_fingerprint, *_replay_pair(*verify_fast(tree, tls_certificate, ids)))
    except BadSignature as err:
        raise Refused(CODES.NOT_REGISTERED_OR_AUTHORIZED, f"invalid signature: {err}")
    except OtherShape:
        pass
    cert = utils.extract_pem_cert(tree)
    try:
        fingerprint = utils.certificate_fingerprint(cert)
    except Exception:   # noqa: BLE001 - whatever the peer put there, it is not a certificate
        raise Refused(CODES.NOT_REGISTERED_OR_AUTHORIZED, "the signing certificate is unreadable")
    if fingerprint != tls_fingerprint:
        raise Refused(CODES.NOT_REGISTERED_OR_AUTHORIZED,
                      "the message was signed with another certificate than the TLS one")
    try:
        results = VERIFIER.verify(tree, x509_cert=utils.ensure_bytes(cert), expect_references=2)
    except Exception as err:   # noqa: BLE001 - signxml raises many types for a bad signature
        raise Refused(CODES.NOT_REGISTERED_OR_AUTHORIZED, f"invalid signature: {err}")
    return (fingerprint, *_verified_replay_protect(results))


# The client certificate of each open TLS connection: getpeercert re-encodes it per call.
_PEER_DER: "weakref.WeakKeyDictionary[Any, bytes | None]" = weakref.WeakKeyDictionary()


def tls_certificate(request: web.Request) -> bytes | None:
    """The DER of the TLS client certificate of a request, if any."""
    ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
    if ssl_object is None:
        return None
    if ssl_object not in _PEER_DER:
        _PEER_DER[ssl_object] = ssl_object.getpeercert(binary_form=True) or None
    return _PEER_DER[ssl_object]


def _anyone(_ven_id: str) -> None:
    """Over HTTP the TLS certificate is the whole identity."""


@dataclass(frozen=True)
class Peer:
    """Who sent a message, as the transport that carried it knows them."""
    transport: str      # "simpleHttp" or "xmpp" (oadrTransportName)
    address: str        # the TLS peer's IP address, the sender's full JID: for log lines
    # The DER of the certificate the message must be signed with (None: refused 463): the
    # TLS client certificate over HTTP, the signature's own when its CA issued it (XMPP).
    certificate: Callable[[etree._Element], bytes | None]
    # Raises Refused if this sender may not speak for the (registered) venID.
    authorize: Callable[[str], None] = _anyone


class MessagePath:
    """The OpenADR request path of one VTN (see the module docstring)."""

    def __init__(self, vtn_id: str, signer: Callable[..., str], ven_lookup: Callable,
                 replay: ReplayGuard, transaction: Callable[[], ContextManager],
                 services: dict[str, VTNService]):
        self.vtn_id, self.signer, self.ven_lookup, self.replay = vtn_id, signer, ven_lookup, replay
        self.transaction, self.services = transaction, services

    @web.middleware
    async def middleware(self, request: web.Request, handler):
        service = getattr(request.match_info.handler, "__self__", None)
        if not isinstance(service, VTNService):
            return await handler(request)
        return await self.handle(request, service)

    async def handle(self, request: web.Request, service: VTNService) -> web.Response:
        """An HTTP request: its body, read and checked here, then `process`."""
        content_type = request.headers.get("content-type", "")
        peer = Peer("simpleHttp", str(request.remote),
                    lambda _tree, der=tls_certificate(request): der)
        try:
            if not content_type.lower().startswith("application/xml"):
                raise Refused(BAD_REQUEST, f"the Content-Type must be application/xml, "
                                           f"not {content_type!r}")
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise Refused(BAD_REQUEST, f"the message is larger than {oadr_xml.MAX_BYTES} bytes")
        except Refused as err:
            text = self._refused(Incoming(), peer, err)
        else:
            text = await self.process(body, peer, service)
        return web.Response(text=text, content_type="application/xml")

    async def process(self, body: bytes, peer: Peer, service: VTNService | None = None) -> str:
        """The signed answer to one message, whatever carried it ("" for none). `service`:
        the one it was sent to; None: the one that takes its message type (XMPP)."""
        incoming = Incoming()
        try:
            # One transaction: a request refused at any step stores nothing; a PartlyRefused
            # one keeps what its handler accepted.
            with self.transaction():
                try:
                    answer_type, answer = await self._answer(body, peer, service, incoming)
                except PartlyRefused as err:
                    partly = err
                except _Empty:
                    return self._respond("")    # committed: the nonce stays used
                else:
                    return self._respond(self._build(answer_type, answer))
            log.warning("partly refused %s from %s (venID %s): %s", incoming.message_type,
                        peer.address, incoming.ven_id, partly.response_description)
            code, description = partly.response_code, partly.response_description
        except Refused as err:
            return self._refused(incoming, peer, err)
        except Exception as err:   # noqa: BLE001 - a bug of this path must not become a 500 either
            log.error("the message path failed on a %s from %s at %s", incoming.message_type,
                      peer.address, _site(err))
            code, description = OTHER_ERROR, "the VTN could not process this message"
        return self._error(incoming, code, description)

    def _refused(self, incoming: Incoming, peer: Peer, err: Refused) -> str:
        log.warning("refused %s from %s (venID %s): %s %s%s", incoming.message_type or "message",
                    peer.address, incoming.ven_id, err.code, err.description,
                    f" [{err.detail}]" if err.detail else "")
        return self._error(incoming, err.code, err.description)

    def _error(self, incoming: Incoming, code: int, description: str) -> str:
        answer_type, answer = error_answer(self.vtn_id, incoming, code, description)
        return self._respond(self.signer(answer_type, **answer))

    def _build(self, answer_type: str, answer: dict) -> str:
        """The signed answer, refused (so the request rolls back) if it cannot be built or
        would not be valid 2.0b: what a peer sent must not make the VTN speak out of profile
        (a negative samplingRate used to come back as the duration P-1DT23H)."""
        try:
            text = self.signer(answer_type, **answer)
        except Exception as err:   # noqa: BLE001 - an answer we cannot build is refused
            raise Refused(CODES.INVALID_DATA, f"the {answer_type} answer could not be built",
                          _site(err))
        if prebuilt(answer_type, answer) is not None:
            return text     # valid by construction (tests/test_signing_fast.py)
        try:
            xsd.validate(text)
        except xsd.SchemaViolation as err:
            raise Refused(CODES.INVALID_DATA, f"the {answer_type} answer would not be valid 2.0b",
                          err.errors[0])
        return text

    @staticmethod
    def _respond(text: str) -> str:
        hooks.call("before_respond", text)    # what the VTN sends, for its observers
        return text

    async def _answer(self, body: bytes, peer: Peer, service: VTNService | None,
                      incoming: Incoming) -> tuple[str, dict]:
        try:
            tree = oadr_xml.parse(body)
        except oadr_xml.Malformed as err:
            raise Refused(BAD_REQUEST, str(err))
        self._sketch(tree, incoming)
        try:
            xsd.check(tree)
        except xsd.SchemaViolation as err:
            raise Refused(BAD_REQUEST, f"not valid OpenADR 2.0b: {err.errors[0]}")
        fingerprint, timestamp, nonce = self._verify(peer, tree)
        self.replay.check(fingerprint, timestamp, nonce)
        try:
            message_type, payload = oadr_xml.payload(tree)
        except oadr_xml.Malformed as err:
            raise Refused(BAD_REQUEST, str(err))
        incoming.message_type, incoming.payload = message_type, payload
        incoming.request_id = _text(payload.get("request_id")) or incoming.request_id
        if message_type == "oadrResponse":
            raise _Empty()
        service = service or next((s for s in self.services.values()
                                   if message_type in s.handlers), None)
        if service is None:
            raise Refused(CODES.COMPLIANCE_ERROR, f"no service of this VTN takes a {message_type}")
        if message_type not in service.handlers:
            raise Refused(CODES.COMPLIANCE_ERROR, f"a {message_type} is not sent to "
                                                  f"{service.__service_name__}")
        if payload.get("vtn_id") is not None and payload["vtn_id"] != self.vtn_id:
            raise Refused(CODES.INVALID_ID, f"the vtnID is {self.vtn_id!r}, not {payload['vtn_id']!r}")
        if "ven_id" in payload:
            incoming.ven_id = _text(payload["ven_id"])
            registered = await self._identify(payload["ven_id"], fingerprint)
            if not registered and message_type not in _BEFORE_REGISTRATION:
                return "oadrRequestReregistration", {"ven_id": payload["ven_id"]}
            if message_type not in _BEFORE_REGISTRATION:
                peer.authorize(payload["ven_id"])
        if message_type == "oadrCreatePartyRegistration":
            payload["fingerprint"], payload["carried_by"] = fingerprint, peer
        return await self._handle(service, message_type, payload, incoming)

    @staticmethod
    def _sketch(tree: etree._Element, incoming: Incoming) -> None:
        """Type, requestID and venID, read before validation so an error can be paired."""
        incoming.message_type = xsd.message_type(tree)
        # Not in the signature, whose certificate and properties are most of a poll.
        signed = tree.find(_SIGNED_OBJECT)
        scope = signed if signed is not None else tree
        incoming.request_id = scope.findtext(f".//{_PYLD}requestID")
        incoming.ven_id = scope.findtext(f".//{_EI}venID")

    @staticmethod
    def _verify(peer: Peer, tree: etree._Element) -> tuple[str, datetime, str]:
        ids = Ids(tree)
        signed = ids.named(_SIGNED_ID)
        if len(signed) != 1 or signed[0].getparent() is not tree:
            raise Refused(CODES.NOT_REGISTERED_OR_AUTHORIZED,
                          "exactly one oadrSignedObject, under oadrPayload, must be signed")
        try:
            return verify_signature(tree, peer.certificate(tree), ids)
        except Refused:
            metrics.SIGNATURE_FAILURES.inc()
            raise

    async def _identify(self, ven_id, fingerprint: str) -> bool:
        """Is the venID this certificate's? Returns whether it is registered."""
        try:
            ven = (await utils.await_if_required(self.ven_lookup(ven_id))
                   if isinstance(ven_id, str) else None)
        except errors.ProtocolError as err:     # e.g. 463 for a disabled VEN
            raise Refused(err.response_code, err.response_description)
        if ven is None:
            raise Refused(CODES.NOT_REGISTERED_OR_AUTHORIZED, f"venID {ven_id!r} is not enrolled")
        if ven.get("fingerprint") != fingerprint:
            raise Refused(CODES.NOT_REGISTERED_OR_AUTHORIZED,
                          f"venID {ven_id!r} belongs to another certificate")
        return ven.get("registration_id") is not None

    async def _handle(self, service: VTNService, message_type: str, payload: dict,
                      incoming: Incoming) -> tuple[str, dict]:
        try:
            answer_type, answer = await service.handle_message(message_type, payload)
        except PartlyRefused:
            raise
        except errors.RequestReregistration as err:
            return "oadrRequestReregistration", {"ven_id": err.ven_id}
        except errors.SendEmptyHTTPResponse:
            raise _Empty()
        except errors.ProtocolError as err:
            raise Refused(err.response_code, err.response_description)
        except Exception as err:   # noqa: BLE001 - a peer's data must never become a 500
            raise Refused(CODES.INVALID_DATA, f"the {message_type} could not be processed: "
                                              f"{type(err).__name__}", _site(err))
        answer["vtn_id"] = self.vtn_id
        if "ven_id" not in answer:
            answer["ven_id"] = payload.get("ven_id")
        return answer_type, answer
