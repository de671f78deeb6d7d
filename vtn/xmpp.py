"""The VTN's XMPP transport (binding and sources: flexadr/xmpp.py).

One connection to the XMPP server as the VTN's JID carries both directions:
- a VEN's requests go through the VTN's message path (vtn/security.py
  `MessagePath.process`, the same steps as over HTTP) and its answer goes back to
  the sender's JID;
- the push loop (vtn/push.py) delivers an XMPP VEN's queue through `deliver`, to the
  full JID the VEN registered, and checks the answer as it checks an HTTP push answer.

Identity. Over HTTP the VTN knows a VEN by the TLS client certificate of its
connection. Over XMPP there is no such connection: the XMPP server authenticated the
sender's JID (SASL over TLS, with a client certificate the server can require), and
the message's XML signature names its certificate. The VTN accepts that certificate
only if its CA issued it, it is valid and not in the CRL (`signer_certificate`); the
message path then checks, as over HTTP, that the signature verifies with it and that
it is the certificate enrolled for the venID. The two are bound at registration: a VEN
registers over XMPP, signed with its enrolled certificate, from a JID whose user part
is its venID (the XMPP account is the VEN's: avob/OpenADR identifies XMPP VENs the
same way), naming as oadrTransportAddress the very full JID it sends from; afterwards
every message naming that venID must come from that JID (`_authorize`), and the VTN
pushes only to it. Speaking for a VEN thus takes both its private key and its XMPP
account.
"""
from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

import slixmpp

from certs.pki import RevokedSerials
from flexadr import oadr_xml
from flexadr.xmpp import (Endpoint, Unanswered, XmppSettings, bare, issuers,
                          signer_certificate, valid_jid)
from vtn.push import Answer, Undelivered
from vtn.security import Peer, Refused
from vtn.store import PushEndpoint

if TYPE_CHECKING:
    from vtn.service import Vtn


SCHEME = "xmpp:"     # an XMPP VEN's push address is xmpp:<its full JID> (RFC 5122's URI)
NOT_AUTHORIZED = 463


class NotTheSender(ValueError):
    """A registration from another JID than its VEN's, or naming another JID."""


def push_address(sender: str, transport_address, ven_id: str) -> str:
    """The push address an XMPP registration of `ven_id` records: the sender's full JID,
    which the oadrTransportAddress must name, and whose user part is the venID (as
    avob/OpenADR's XmppListener identifies a VEN by the user part of its JID)."""
    jid = valid_jid(transport_address) if isinstance(transport_address, str) else None
    if jid is None:
        raise ValueError("an XMPP VEN gives its full JID (user@domain/resource) as "
                         "oadrTransportAddress")
    if slixmpp.JID(sender).user != ven_id.lower():
        raise NotTheSender(f"the JID {bare(sender)} is not VEN {ven_id}'s (its user part "
                           f"must be the venID)")
    if jid != sender:
        raise NotTheSender(f"the oadrTransportAddress {jid} is not the JID the registration "
                           f"came from ({sender})")
    return SCHEME + jid


class XmppEdge:
    """The VTN's XMPP connection: requests in, pushed messages out."""

    def __init__(self, vtn: "Vtn", settings: XmppSettings, timeout_s: float):
        self.vtn, self.timeout_s = vtn, timeout_s
        self.endpoint = Endpoint(settings, self._request)
        self._cas = issuers(vtn.config.ca_file)
        crl = vtn.config.crl_file
        self._revoked = RevokedSerials(crl) if crl is not None else set

    @property
    def jid(self) -> str:
        return self.endpoint.jid

    def start(self) -> None:
        self.endpoint.start()

    async def close(self) -> None:
        await self.endpoint.stop()

    async def _request(self, sender: str, body: bytes) -> str | None:
        peer = Peer("xmpp", sender, self._certificate, partial(self._authorize, sender))
        return await self.vtn.message_path.process(body, peer)    # "": an empty answer

    def _certificate(self, tree) -> bytes:
        der = signer_certificate(tree, self._cas, self._revoked)
        if der is None:
            raise Refused(NOT_AUTHORIZED, "the signature's certificate is not one the VTN's CA "
                                          "issued (or it expired, or it is revoked)")
        return der

    def _authorize(self, sender: str, ven_id: str) -> None:
        with self.vtn.store.session() as s:
            endpoint = s.get(PushEndpoint, ven_id)
        if endpoint is None or endpoint.address != SCHEME + sender:
            raise Refused(NOT_AUTHORIZED, f"VEN {ven_id} is not registered for XMPP from {sender}")

    async def deliver(self, endpoint: PushEndpoint, service: str, message_xml: str) -> Answer:
        """The push loop's transport: send to the VEN's JID, await its answer."""
        jid = endpoint.address.removeprefix(SCHEME)
        try:
            body = await self.endpoint.request(jid, message_xml, self.timeout_s)
        except Unanswered as err:
            raise Undelivered(str(err)) from None
        try:
            certificate = self._certificate(oadr_xml.parse(body))
        except (oadr_xml.Malformed, Refused):
            certificate = None      # the push loop refuses the answer, and sends again later
        return Answer(body, certificate)
