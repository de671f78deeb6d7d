"""openleadr's client, with telemetry pushed from the agent's durable outbox.

Stock openleadr samples report callbacks on its own timer and drops a report
whose send failed. Here the VTN's report requests are only recorded; the
agent's uplink sends what the outbox holds, and deletes it once acknowledged.

Registration tells the truth: stock openleadr says oadrXmlSignature false
although it signs every message, and writes oadrTransportAddress as the text
"None" for a pull VEN (the element is optional: "not required if http pull
model"); here the flag follows the signing and the empty address is left out.

Events are checked against the profile rules the XSD cannot express (UTC times,
interval uids and durations, SIMPLE levels, signal types, unique IDs): an event
that breaks one is answered 454 with optOut and never executed; stock openleadr
answers 200 to anything that passes the schema.
"""
from __future__ import annotations

import logging
import re
import ssl
import asyncio
import time
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable

from pathlib import Path

import aiohttp
from jinja2 import ChoiceLoader, FileSystemLoader
from openleadr import OpenADRClient, enums, messaging, objects, utils

from flexadr import oadr_xml, profile_rules, signing, tls, xsd
from flexadr.signing import MessageSigner, NonceCache, client_signer, install_nonce_cache

log = logging.getLogger(__name__)

# Our VEN's oadrUpdateReport: openleadr's template, plus oadrPayloadResourceStatus payloads
# (openleadr renders every value as payloadFloat). Found after openleadr's own templates,
# so every stock message renders exactly as before.
UPDATE_REPORT = "oadrUpdateReportStatus"
_TEMPLATES = Path(__file__).parent / "templates"
# Both environments: our signer's (autoescaped) and openleadr's (for an unsigned client).
for _environment in (signing.TEMPLATES, messaging.TEMPLATES):
    if not isinstance(_environment.loader, ChoiceLoader):
        _environment.loader = ChoiceLoader([_environment.loader, FileSystemLoader(_TEMPLATES)])

# How long an idle connection to the VTN stays open: past the poll interval the VTN
# asked for, so each poll reuses the connection of the one before (a TLS handshake costs
# the VTN ~2x a keep-alive poll), and closed by the VEN before the VTN's own idle timeout
# (vtn: twice the poll interval + 10 s), so a poll never races the VTN closing it. Until
# the VTN has said its poll interval: IDLE_BEFORE_REGISTRATION. Each open TLS connection
# holds asyncio's 256 KiB read buffer (docs/benchmarks.md).
IDLE_PAST_POLL = timedelta(seconds=5)
IDLE_BEFORE_REGISTRATION = timedelta(seconds=15)
# A VEN talks to one VTN: a poll and a report (or an opt) at once at most, mostly one.
CONNECTIONS = 2
_NO_ADDRESS = re.compile(r"<oadr:oadrTransportAddress>\s*(None)?\s*</oadr:oadrTransportAddress>")


class _Connector(aiohttp.TCPConnector):
    """aiohttp's connector, with an idle timeout that can follow the poll interval."""

    def keep_idle(self, seconds: float) -> None:
        self._keepalive_timeout = seconds


@dataclass(frozen=True)
class ReportRequest:
    report_request_id: str
    report_specifier_id: str
    report_name: str
    r_ids: tuple[str, ...]
    granularity: timedelta | None


@dataclass(frozen=True)
class Pushed:
    """A message the VTN pushed (ven/openadr20b/push_server.py), and the answer it is waiting for."""
    message_type: str
    payload: dict
    answer: asyncio.Future      # the first message the client would send back


# Set while a pushed message is handled, in that handling's context only.
PUSHED: ContextVar[Pushed | None] = ContextVar("flexadr_pushed", default=None)


class Refused(Exception):
    """A pushed message the VEN does not take; `status` is the HTTP answer's."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


ANSWER_TIMEOUT_S = 8.0     # well within the VTN's 20 s for a pushed message's answer


@dataclass(frozen=True)
class Sent:
    ok: bool
    detail: str
    code: int | None = None     # the VTN's responseCode, when it answered


def _report_payload(r_id: str, value):
    """A dict value is an oadrPayloadResourceStatus (rendered by UPDATE_REPORT)."""
    if isinstance(value, dict):
        return {"r_id": r_id, "resource_status": value}
    return objects.ReportPayload(r_id=r_id, value=value)


def as_list(value) -> list:
    """openleadr's parser gives a dict for a single element and a list for several."""
    return value if isinstance(value, list) else [value]


class VenSigner(MessageSigner):
    """The cached signer; a pull VEN's registration leaves the empty address out, and
    its oadrCreatedEvent answers 454 + optOut to the events that break the profile."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.refused_events: dict[str, list[str]] = {}   # FlexClient shares its own

    def render(self, message_type: str, **message_payload: Any) -> str:
        if message_type == "oadrCreatedEvent":
            _mark_refusals(message_payload, self.refused_events)
        signed_object = super().render(message_type, **message_payload)
        if message_type == "oadrCreatePartyRegistration" \
                and not message_payload.get("transport_address"):
            signed_object = _NO_ADDRESS.sub("", signed_object)
        return signed_object


def _mark_refusals(payload: dict, refused_events: dict[str, list[str]]) -> None:
    for response in payload.get("event_responses", []):
        lines = refused_events.get(response["event_id"])
        if lines:
            response.update(response_code=enums.STATUS_CODES.INVALID_DATA,
                            response_description=lines[0][:200], opt_type="optOut")


class FlexClient(OpenADRClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # APScheduler skips a run that starts more than 1 s late, silently at our log
        # level: a VEN whose loop was busy at poll time would then hear nothing for a whole
        # interval. Run late instead, once however many runs were missed.
        self.scheduler.configure(job_defaults={"misfire_grace_time": None, "coalesce": True})
        # openleadr re-parses the PEM key for every message it signs; parse it once.
        self._create_message = client_signer(self._create_message, VenSigner)
        # ... and scans its whole (process-wide) nonce set for every message it verifies:
        # with a fleet of agents in one process that set is large.
        if not isinstance(messaging.NONCE_CACHE, NonceCache):
            install_nonce_cache()
        self.signs = isinstance(self._create_message, MessageSigner)
        self.refused_events: dict[str, list[str]] = {}   # eventID -> profile rules it breaks
        self.add_hook("before_parse_xml", self._check_events)
        if self.signs:
            self._create_message.refused_events = self.refused_events
        self.requested: dict[str, ReportRequest] = {}   # report name -> what the VTN asked for
        self.first_request_at: float | None = None      # time.monotonic() of the first one
        # The push exchange model: the VTN POSTs to this URL (or sends to this JID, XMPP)
        # and the client never polls.
        self.push_address: str | None = None
        self.transport_name = "simpleHttp"
        # XMPP (ven/openadr20b/xmpp_link.py): sends a request to the VTN; its answer, and the
        # fingerprint of the certificate that answer must be signed with (None: no answer)
        self.send_over: Callable[[str], Awaitable[tuple[bytes, str] | None]] | None = None
        self._pushed_lock = asyncio.Lock()     # one pushed message at a time, in arrival order
        self._pushed_tasks: set[asyncio.Task] = set()

    def _check_events(self, content: str) -> None:
        """Runs on every schema-valid message before openleadr parses it."""
        if "oadrDistributeEvent" not in content:    # (after the signature, if signed)
            return
        broken = profile_rules.event_violations(oadr_xml.parse(content.encode()))
        for event_id, lines in broken.items():
            if self.refused_events.get(event_id) != lines:
                log.warning("VEN %s refuses event %s: %s", self.ven_name, event_id, "; ".join(lines))
        self.refused_events.update(broken)

    async def create_party_registration(self, *args, **kwargs):
        kwargs.setdefault("xml_signature", self.signs)
        if self.push_address:
            kwargs.setdefault("http_pull_model", False)
            kwargs.setdefault("transport_address", self.push_address)
            kwargs.setdefault("transport_name", self.transport_name)
        return await super().create_party_registration(*args, **kwargs)

    def checked(self, body: bytes, signer_fingerprint: str) -> tuple[str, dict]:
        """(type, payload) of a message the VTN pushed: DTD-free bounded XML, valid 2.0b,
        signed with the certificate of `signer_fingerprint`, ReplayProtect fresh, for
        this VEN. Raises Refused."""
        try:
            tree = oadr_xml.parse(body)
            xsd.check(tree)
        except (oadr_xml.Malformed, xsd.SchemaViolation) as err:
            raise Refused(400, f"not valid OpenADR 2.0b: {err}") from None
        try:
            signing.validate_xml_signature(tree, messaging.NONCE_CACHE,
                                           cert_fingerprint=signer_fingerprint)
            message_type, payload = oadr_xml.payload(tree)
        except oadr_xml.Malformed as err:
            raise Refused(400, str(err)) from None
        except Exception as err:   # noqa: BLE001 - signxml and openleadr raise many types
            raise Refused(403, f"signature or ReplayProtect refused: {err}") from None
        if self.ven_id and payload.get("ven_id") not in (None, self.ven_id):
            raise Refused(403, f"the message is for venID {payload.get('ven_id')!r}")
        return message_type, payload

    async def take_pushed(self, message_type: str, payload: dict) -> str | None:
        """The client's answer to a pushed message, through the poll handling (None if
        that failed before answering)."""
        async with self._pushed_lock:
            pushed = Pushed(message_type, payload, asyncio.get_running_loop().create_future())
            token = PUSHED.set(pushed)
            try:
                handling = asyncio.create_task(self._poll())   # inherits PUSHED
            finally:
                PUSHED.reset(token)
            self._pushed_tasks.add(handling)
            handling.add_done_callback(self._pushed_finished)
            await asyncio.wait({pushed.answer, handling}, timeout=ANSWER_TIMEOUT_S,
                               return_when=asyncio.FIRST_COMPLETED)
            if pushed.answer.done():
                return utils.ensure_str(pushed.answer.result())
            pushed.answer.cancel()      # anything the handlers send later goes to the VTN
            if handling.done() and not handling.cancelled() and handling.exception() is not None:
                return None
            return self._create_message(
                "oadrResponse", ven_id=self.ven_id,
                response={"response_code": 200, "response_description": "OK",
                          "request_id": payload.get("request_id") or ""})

    def _pushed_finished(self, task: asyncio.Task) -> None:
        self._pushed_tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("VEN %s: handling a pushed message failed: %r", self.ven_name,
                      task.exception())

    async def stop_pushed(self) -> None:
        for task in self._pushed_tasks:
            task.cancel()
        await asyncio.gather(*self._pushed_tasks, return_exceptions=True)

    async def poll(self):
        """In push mode openleadr's poll handling (`_poll`) dispatches the pushed message
        instead of fetching one: the same handlers take a message by either path."""
        if not self.push_address:
            return await super().poll()
        pushed = PUSHED.get()
        return (pushed.message_type, pushed.payload) if pushed else (None, {})

    async def _perform_request(self, service, message):
        pushed = PUSHED.get()
        if pushed is not None and not pushed.answer.done():
            # The answer to a pushed message goes back as its answer (HTTP response, XMPP).
            pushed.answer.set_result(message)
            return "oadrResponse", {}
        if self.send_over is not None:
            return await self._request_over(message)
        return await super()._perform_request(service, message)

    async def _request_over(self, message: str):
        """openleadr's _perform_request (hooks, checks, parsing, answers) over `send_over`."""
        await self._execute_hooks("before_send_xml", utils.ensure_str(message))
        answer = await self.send_over(utils.ensure_str(message))
        if answer is None:
            return None, {}
        content, signer_fingerprint = answer
        await self._execute_hooks("after_receive_xml", utils.ensure_str(content))
        try:
            message_type, payload = self.checked(content, signer_fingerprint)
            await self._execute_hooks("before_parse_xml", utils.ensure_str(content))
            await self._execute_hooks("after_parse_xml", message_type, payload)
        except Refused as err:
            log.warning("VEN %s: refused the VTN's answer: %s", self.ven_name, err.reason)
            return None, {}
        code = (payload.get("response") or {}).get("response_code")
        if code is not None and code != 200:
            log.warning("VEN %s: the VTN answered %s: %s", self.ven_name, code,
                        payload["response"].get("response_description"))
        return message_type, payload

    async def stop(self):
        """openleadr's, also when no HTTP session is open (XMPP; or openleadr closed it)."""
        if self.client_session is not None:
            return await super().stop()
        if self.scheduler.running:
            self.scheduler.shutdown()
        if self.report_queue_task:
            self.report_queue_task.cancel()

    async def _ensure_client_session(self) -> None:
        """openleadr's session (same TLS setup, headers and timeouts), with a bounded pool
        whose idle connections outlive the poll interval, and TLS session resumption."""
        if self.client_session:
            self._keep_idle()
            return
        secure = {"ssl": self._tls_context()} if self.cert_path else {}
        self.client_session = aiohttp.ClientSession(
            connector=_Connector(limit=CONNECTIONS, limit_per_host=CONNECTIONS,
                                 keepalive_timeout=self._idle_s(), **secure),
            headers={"content-type": "application/xml"},
            timeout=aiohttp.ClientTimeout(sock_connect=5, sock_read=10))

    def _idle_s(self) -> float:
        if self.poll_frequency is None:
            return IDLE_BEFORE_REGISTRATION.total_seconds()
        return (self.poll_frequency + IDLE_PAST_POLL).total_seconds()

    def _keep_idle(self) -> None:
        """Follow the poll interval the VTN asked for (known once registered)."""
        connector = self.client_session.connector
        if isinstance(connector, _Connector):
            connector.keep_idle(self._idle_s())

    def _tls_context(self) -> ssl.SSLContext:
        context = tls.ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(self.ca_file)
        context.load_cert_chain(self.cert_path, self.key_path, self.passphrase)
        context.check_hostname = self.check_hostname
        return context

    async def create_report(self, response_payload: dict) -> None:
        """Record the VTN's report requests (instead of scheduling openleadr's timers)."""
        for request in response_payload.get("report_requests", []):
            specifier = request["report_specifier"]
            report = utils.find_by(self.reports, "report_specifier_id",
                                   specifier["report_specifier_id"])
            if report is None:
                log.error("VTN asked for unknown report %s", specifier["report_specifier_id"])
                continue
            r_ids = tuple(p["r_id"] for p in as_list(specifier["specifier_payloads"]))
            name = report.report_name.removeprefix("METADATA_")
            self.requested[name] = ReportRequest(request["report_request_id"],
                                                 report.report_specifier_id, name, r_ids,
                                                 specifier.get("granularity"))
            log.info("VTN requested %s every %s", name, specifier.get("granularity"))
            if self.first_request_at is None:
                self.first_request_at = time.monotonic()
        request_id = response_payload.get("request_id") or \
            response_payload.get("response", {}).get("request_id")
        message = self._create_message(
            "oadrCreatedReport", ven_id=self.ven_id,
            response={"response_code": 200, "response_description": "OK", "request_id": request_id},
            pending_reports=[{"report_request_id": r["report_request_id"]}
                             for r in response_payload.get("report_requests", [])])
        await self._perform_request("EiReport", message)

    def offered(self) -> set[str]:
        """Names of the reports this client registered with the VTN."""
        return {report.report_name.removeprefix("METADATA_") for report in self.reports}

    def waiting_for_requests(self, settle_s: float) -> bool:
        """Some offered report has not been requested yet, and the VTN may still ask
        for it: it sends one request per poll, so give it `settle_s` after the first."""
        if self.offered() <= self.requested.keys():
            return False
        return self.first_request_at is None or time.monotonic() - self.first_request_at < settle_s

    async def send_intervals(self, name: str, rows: list[tuple[datetime, timedelta, dict]]) -> Sent:
        """Send one report of intervals [(start, duration, {r_id: value})]; True when acknowledged."""
        request = self.requested.get(name)
        if request is None:
            return Sent(False, f"the VTN has not requested {name}")
        intervals = [objects.ReportInterval(dtstart=start, duration=duration,
                                            report_payload=_report_payload(r_id, value))
                     for start, duration, values in rows
                     for r_id, value in values.items() if r_id in request.r_ids and value is not None]
        if not intervals:
            return Sent(True, "nothing the VTN asked for")
        report = objects.Report(report_request_id=request.report_request_id,
                                report_specifier_id=request.report_specifier_id,
                                report_name=name, intervals=intervals,
                                dtstart=min(i.dtstart for i in intervals))
        message = self._create_message(UPDATE_REPORT, reports=[report], ven_id=self.ven_id,
                                       request_id=utils.generate_id())
        result = await self._perform_request("EiReport", message)
        response_type, payload = result if result else (None, {})
        code = payload.get("response", {}).get("response_code")
        if response_type == "oadrUpdatedReport" and code == 200:
            return Sent(True, "acknowledged", code)
        description = payload.get("response", {}).get("response_description")
        return Sent(False, f"not acknowledged: {response_type} {code} {description}", code)
