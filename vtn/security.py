"""Message-level security the openleadr server leaves out.

openleadr authenticates only messages that carry a venID, so a registration
request would be accepted with any signature, or none. This middleware makes
every request on a TLS connection carry a valid XML signature made with the
same certificate as the TLS client certificate.
"""
from __future__ import annotations

import logging

from aiohttp import web
from lxml import etree
from openleadr import enums, utils
from openleadr.messaging import validate_xml_signature

from vtn import metrics

log = logging.getLogger(__name__)
_VEN_ID = "{http://docs.oasis-open.org/ns/energyinterop/201110}venID"


class SignatureRejected(Exception):
    pass


def check_unidentified_message(body: bytes, tls_fingerprint: str | None) -> None:
    """Verify signature + replay protection of a message without venID (openleadr skips those)."""
    try:
        tree = etree.fromstring(body)
    except etree.XMLSyntaxError:
        return  # openleadr answers malformed XML with its own 400
    if tree.find(f".//{_VEN_ID}") is not None and tree.findtext(f".//{_VEN_ID}"):
        return  # openleadr verifies these against the enrolled fingerprint
    try:
        cert = utils.extract_pem_cert(tree)
    except Exception as err:
        raise SignatureRejected("the message is not signed") from err
    if utils.certificate_fingerprint(cert) != tls_fingerprint:
        raise SignatureRejected("the message was signed with another certificate than the TLS one")
    try:
        validate_xml_signature(tree)
    except Exception as err:
        raise SignatureRejected(f"invalid signature: {err}") from err


def signature_middleware(create_message, vtn_id: str):
    @web.middleware
    async def middleware(request: web.Request, handler):
        if not request.secure:
            return await handler(request)
        body = await request.read()
        try:
            check_unidentified_message(body, utils.get_cert_fingerprint_from_request(request))
        except SignatureRejected as err:
            log.warning("rejected message from %s: %s", request.remote, err)
            metrics.SIGNATURE_FAILURES.inc()
            code = enums.STATUS_CODES.NOT_REGISTERED_OR_AUTHORIZED
            message = create_message("oadrResponse", vtn_id=vtn_id, ven_id="",
                                     response={"response_code": code,
                                               "response_description": str(err),
                                               "request_id": None})
            return web.Response(text=message, content_type="application/xml")
        return await handler(request)
    return middleware
