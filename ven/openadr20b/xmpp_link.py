"""The VEN's XMPP transport (binding and sources: flexadr/xmpp.py).

One connection to the XMPP server as the VEN's JID: the client's requests
(registration with oadrTransportName xmpp and this JID as oadrTransportAddress,
oadrRequestEvent, oadrCreatedEvent, oadrCreateOpt, reports) go to the VTN's JID and
come back as their answers; what the VTN pushes is checked like a pushed HTTP
message and handed to the same poll handling (`FlexClient.take_pushed`), its answer
sent back. Only the VTN's JID is listened to, and every message must be signed by
a certificate the CA issued (and the VTN's pinned fingerprint, when configured):
the XMPP server vouches for the JID, the signature for the VTN.

Offline, the agent behaves as in pull mode: the VTN keeps its queue and sends it
again once the VEN is back (vtn/push.py); the client's own requests fail and the
outbox keeps the telemetry.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from openleadr import utils

from flexadr import oadr_xml
from flexadr.xmpp import Endpoint, Unanswered, XmppSettings, bare, issuers, signer_certificate
from ven.openadr20b.client import FlexClient, Refused

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 10.0
CONNECT_WAIT_S = 10.0     # at start, before registering; the connection keeps trying after


@dataclass(frozen=True)
class XmppExchange:
    """The VEN's account on the XMPP server, and the VTN's JID there."""
    account: XmppSettings
    vtn_jid: str


class XmppTransport:
    def __init__(self, client: FlexClient, exchange: XmppExchange, vtn_fingerprint: str | None):
        self.client, self.exchange, self.vtn_fingerprint = client, exchange, vtn_fingerprint
        self.endpoint = Endpoint(exchange.account, self._pushed)
        self._cas = issuers(exchange.account.ca_file)
        client.push_address, client.transport_name = exchange.account.jid, "xmpp"
        client.send_over = self.send

    async def start(self) -> None:
        self.endpoint.start()
        try:
            await asyncio.wait_for(self.endpoint.connected.wait(), CONNECT_WAIT_S)
        except asyncio.TimeoutError:
            log.error("VEN %s is not connected to the XMPP server yet", self.client.ven_name)

    async def stop(self) -> None:
        await self.endpoint.stop()
        await self.client.stop_pushed()

    async def send(self, message: str) -> tuple[bytes, str] | None:
        """A request to the VTN: its answer and whose certificate must sign it."""
        try:
            body = await self.endpoint.request(self.exchange.vtn_jid, message, REQUEST_TIMEOUT_S)
        except Unanswered as err:
            log.warning("VEN %s: no answer over XMPP: %s", self.client.ven_name, err)
            return None
        if not body:
            return None     # the empty answer to an oadrResponse
        try:
            return body, self._signer(body)
        except Refused as err:
            log.warning("VEN %s: refused the VTN's answer: %s", self.client.ven_name, err.reason)
            return None

    def _signer(self, body: bytes) -> str:
        """The fingerprint a message of the VTN must be signed with: the pinned one, and
        in any case that of a certificate the CA issued."""
        try:
            der = signer_certificate(oadr_xml.parse(body), self._cas)
        except oadr_xml.Malformed as err:
            raise Refused(400, str(err)) from None
        if der is None:
            raise Refused(403, "the signature's certificate is not one the CA issued")
        fingerprint = utils.certificate_fingerprint_from_der(der)
        if self.vtn_fingerprint and fingerprint != self.vtn_fingerprint:
            raise Refused(403, f"signed by {fingerprint}, not by the VTN's certificate")
        return fingerprint

    async def _pushed(self, sender: str, body: bytes) -> str | None:
        if bare(sender) != bare(self.exchange.vtn_jid):
            log.warning("VEN %s ignored a message from %s: not the VTN's JID",
                        self.client.ven_name, sender)
            return None
        try:
            message_type, payload = self.client.checked(body, self._signer(body))
        except Refused as err:
            log.warning("VEN %s refused a pushed message from %s: %s", self.client.ven_name,
                        sender, err.reason)
            return None     # no answer: the VTN keeps the message and sends it again
        await self.client._execute_hooks("after_receive_xml", body.decode())
        return await self.client.take_pushed(message_type, payload)
