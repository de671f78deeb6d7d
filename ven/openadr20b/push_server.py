"""The VEN's push endpoint (OpenADR 2.0b push exchange model, simple HTTP).

A VEN registered with oadrHttpPullModel false gets the VTN's messages POSTed to
`{public_url}/{service}` instead of fetching them with oadrPoll. Each one is
checked as the client checks what it polls: mutual TLS (the VTN's certificate
verified against the CA), DTD-free bounded XML (flexadr.oadr_xml), the 2.0b XSD,
the signature made with the TLS certificate (and the VTN's pinned fingerprint
when configured), ReplayProtect against the client's nonce cache. It is then
handed to openleadr's poll handling (`FlexClient.take_pushed`), so events, report
requests, cancellations and re-registration go through the same handlers and
policy as in pull mode. The first message those handlers send back (e.g.
oadrCreatedEvent) is the HTTP answer; anything else they send (a re-registration)
goes to the VTN as a request. A message that needs no answer gets oadrResponse 200.

A refused message is answered with an HTTP error and no OpenADR body, so the VTN
keeps it queued and tries again.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from openleadr import utils

from flexadr import oadr_xml, tls
from ven.openadr20b.client import FlexClient, Refused

log = logging.getLogger(__name__)

SERVICES = ("EiEvent", "EiReport", "EiRegisterParty")


@dataclass(frozen=True)
class PushListen:
    """Where the push endpoint listens, and the URL the VEN registers as its address."""
    host: str
    port: int
    public_url: str          # https://host:port/path; the VTN POSTs to {public_url}/EiEvent, ...
    tls_profile: tls.TlsProfile = "default"


class PushServer:
    def __init__(self, client: FlexClient, listen: PushListen, cert: Path, key: Path,
                 ca_file: Path, vtn_fingerprint: str | None):
        self.client, self.listen, self.vtn_fingerprint = client, listen, vtn_fingerprint
        self._context = tls.server_context(listen.tls_profile, [tls.CertKey(cert, key)], ca_file)
        self._runner: web.AppRunner | None = None

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
        await self.client.stop_pushed()

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            message_type, payload = self._checked(request, body)
        except Refused as err:
            log.warning("VEN %s refused a pushed message from %s: %s", self.client.ven_name,
                        request.remote, err.reason)
            return web.Response(status=err.status, text=err.reason)
        await self.client._execute_hooks("after_receive_xml", body.decode())
        answer = await self.client.take_pushed(message_type, payload)
        if answer is None:      # the handling failed: the VTN keeps the message and retries
            return web.Response(status=503, text="the VEN could not handle the message")
        return web.Response(text=answer, content_type="application/xml")

    def _checked(self, request: web.Request, body: bytes) -> tuple[str, dict]:
        if not request.headers.get("content-type", "").lower().startswith("application/xml"):
            raise Refused(415, "the Content-Type must be application/xml")
        tls_fingerprint = utils.get_cert_fingerprint_from_request(request)
        if tls_fingerprint is None:
            raise Refused(403, "a TLS client certificate is required")
        if self.vtn_fingerprint and tls_fingerprint != self.vtn_fingerprint:
            raise Refused(403, f"the TLS certificate {tls_fingerprint} is not the VTN's")
        return self.client.checked(body, tls_fingerprint)
