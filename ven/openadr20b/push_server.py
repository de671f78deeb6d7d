"""The VEN's push endpoint (OpenADR 2.0b push exchange model, simple HTTP).

A VEN registered with oadrHttpPullModel false gets the VTN's messages POSTed to
`{public_url}/{service}` instead of fetching them with oadrPoll. Each one is
checked as the client checks what it polls: mutual TLS (the VTN's certificate
verified against the CA), DTD-free bounded XML (flexadr.oadr_xml), the 2.0b XSD,
the signature made with the TLS certificate (and the VTN's pinned fingerprint
when configured), ReplayProtect against the client's nonce cache. It is then
handed to openleadr's poll handling (`FlexClient.poll`), so events, report
requests, cancellations and re-registration go through the same handlers and
policy as in pull mode. The first message those handlers send back (e.g.
oadrCreatedEvent) is the HTTP answer; anything else they send (a re-registration)
goes to the VTN as a request. A message that needs no answer gets oadrResponse 200.

A refused message is answered with an HTTP error and no OpenADR body, so the VTN
keeps it queued and tries again.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from openleadr import messaging, utils

from flexadr import oadr_xml, tls, xsd
from flexadr.signing import validate_xml_signature
from ven.openadr20b.client import PUSHED, FlexClient, Pushed

log = logging.getLogger(__name__)

SERVICES = ("EiEvent", "EiReport", "EiRegisterParty")
ANSWER_TIMEOUT_S = 8.0     # well within the VTN's 20 s for a whole POST


@dataclass(frozen=True)
class PushListen:
    """Where the push endpoint listens, and the URL the VEN registers as its address."""
    host: str
    port: int
    public_url: str          # https://host:port/path; the VTN POSTs to {public_url}/EiEvent, ...
    tls_profile: tls.TlsProfile = "default"


class Refused(Exception):
    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status, self.reason = status, reason


class PushServer:
    def __init__(self, client: FlexClient, listen: PushListen, cert: Path, key: Path,
                 ca_file: Path, vtn_fingerprint: str | None):
        self.client, self.listen, self.vtn_fingerprint = client, listen, vtn_fingerprint
        self._context = tls.server_context(listen.tls_profile, [tls.CertKey(cert, key)], ca_file)
        self._lock = asyncio.Lock()       # one pushed message at a time, in arrival order
        self._runner: web.AppRunner | None = None
        self._background: set[asyncio.Task] = set()

    async def start(self) -> None:
        app = web.Application(client_max_size=oadr_xml.MAX_BYTES)
        prefix = urlsplit(self.listen.public_url).path.rstrip("/")
        for service in SERVICES:
            app.router.add_post(f"{prefix}/{service}", self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.listen.host, self.listen.port,
                          ssl_context=self._context).start()
        log.info("VEN %s push endpoint listening on %s:%s (%s)", self.client.ven_name,
                 self.listen.host, self.listen.port, self.listen.public_url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            message_type, payload = self._checked(request, body)
        except Refused as err:
            log.warning("VEN %s refused a pushed message from %s: %s", self.client.ven_name,
                        request.remote, err.reason)
            return web.Response(status=err.status, text=err.reason)
        await self.client._execute_hooks("after_receive_xml", body.decode())
        answer = await self._dispatch(message_type, payload)
        if answer is None:      # the handling failed: the VTN keeps the message and retries
            return web.Response(status=503, text="the VEN could not handle the message")
        return web.Response(text=answer, content_type="application/xml")

    def _checked(self, request: web.Request, body: bytes) -> tuple[str, dict]:
        if not request.headers.get("content-type", "").lower().startswith("application/xml"):
            raise Refused(415, "the Content-Type must be application/xml")
        try:
            tree = oadr_xml.parse(body)
            xsd.check(tree)
        except (oadr_xml.Malformed, xsd.SchemaViolation) as err:
            raise Refused(400, f"not valid OpenADR 2.0b: {err}") from None
        tls_fingerprint = utils.get_cert_fingerprint_from_request(request)
        if tls_fingerprint is None:
            raise Refused(403, "a TLS client certificate is required")
        if self.vtn_fingerprint and tls_fingerprint != self.vtn_fingerprint:
            raise Refused(403, f"the TLS certificate {tls_fingerprint} is not the VTN's")
        try:
            validate_xml_signature(tree, messaging.NONCE_CACHE, cert_fingerprint=tls_fingerprint)
            message_type, payload = oadr_xml.payload(tree)
        except oadr_xml.Malformed as err:
            raise Refused(400, str(err)) from None
        except Exception as err:   # noqa: BLE001 - signxml and openleadr raise many types
            raise Refused(403, f"signature or ReplayProtect refused: {err}") from None
        if payload.get("ven_id") not in (None, self.client.ven_id):
            raise Refused(403, f"the message is for venID {payload.get('ven_id')!r}")
        return message_type, payload

    async def _dispatch(self, message_type: str, payload: dict) -> str | None:
        """The client's answer to a pushed message, through the poll handling (None if
        that failed before answering)."""
        async with self._lock:
            pushed = Pushed(message_type, payload, asyncio.get_running_loop().create_future())
            token = PUSHED.set(pushed)
            try:
                handling = asyncio.create_task(self.client._poll())   # inherits PUSHED
            finally:
                PUSHED.reset(token)
            self._background.add(handling)
            handling.add_done_callback(self._finished)
            await asyncio.wait({pushed.answer, handling}, timeout=ANSWER_TIMEOUT_S,
                               return_when=asyncio.FIRST_COMPLETED)
            if pushed.answer.done():
                return utils.ensure_str(pushed.answer.result())
            pushed.answer.cancel()      # anything the handlers send later goes to the VTN
            if handling.done() and not handling.cancelled() and handling.exception() is not None:
                return None
            return self.client._create_message(
                "oadrResponse", ven_id=self.client.ven_id,
                response={"response_code": 200, "response_description": "OK",
                          "request_id": payload.get("request_id") or ""})

    def _finished(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("VEN %s: handling a pushed message failed: %r", self.client.ven_name,
                      task.exception())
