"""Signed OpenADR messages without re-reading the key, and an O(1) nonce cache.

openleadr's `messaging.create_message` parses the PEM private key twice for
every message (once to pick the signature algorithm, once inside signxml) and
re-splits the PEM certificate: ~90 ms per message with RSA-2048, ~1.5 ms with
ECDSA P-256. `MessageSigner` parses the key and certificate once and then
renders and signs as create_message does: the same preflight, the same Jinja
templates (but autoescaped), the same signature (detached, C14N 1.0, the `oadr`
namespace prefix, algorithm chosen from the key type, the ReplayProtect
signature property), byte for byte what signxml's XMLSigner writes. It is a
drop-in for the `_create_message` callable openleadr keeps on OpenADRClient
instances and on VTNService.

Signing and verifying (`sign_fast`, `verify_fast`) do not go through signxml's
generic path (~0.4 ms to sign, ~1 ms to verify a poll): the ds:Signature of
this profile has one fixed shape (two references, #oadrSignedObject and the
ReplayProtect object, each C14N'd and SHA-256 digested; SignedInfo C14N'd and
signed with ECDSA or RSA PKCS#1 v1.5 SHA-256), so the SignedInfo is written
from a template in its canonical form and verified with `cryptography`
directly. `verify_fast` checks every part of that shape and says when a
signature has another shape (the caller then asks signxml).

openleadr's receiving side remembers (timestamp, nonce) pairs in a global set
and prunes it by scanning the whole set on every message. `NonceCache` keeps
them in arrival order and drops expired ones from the front: amortised O(1).
"""
from __future__ import annotations

import binascii
import hashlib
import hmac
import re
from base64 import b64encode
from collections import deque
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable
from uuid import uuid4

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (decode_dss_signature,
                                                             encode_dss_signature)
from jinja2 import Environment, PackageLoader
from lxml import etree
from openleadr import errors, messaging, utils
from openleadr.preflight import preflight_message
from signxml import XMLSigner, methods
from signxml.algorithms import SignatureMethod
from signxml.util import iterate_pem

_C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
_EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
_OADR_NS = "http://openadr.org/oadr-2.0b/2012/07"
_DS_NS = "http://www.w3.org/2000/09/xmldsig#"
_DSP_NS = "http://openadr.org/oadr-2.0b/2012/07/xmldsig-properties"
_DSP = "{" + _DSP_NS + "}"
_DS = "{" + _DS_NS + "}"
_SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
_ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
_RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
_SIGNED_OBJECT = "#oadrSignedObject"
_PROPERTIES = "#prop"

# openleadr's templates, rendered with autoescape: its own environment does not escape,
# so a requestID of `<x` broke the answer (500) and a crafted one injected elements into
# a message the VTN then signed. The envelope marks the prebuilt signature and signed
# object `|safe`, so only peer-controlled values are escaped. A separate environment, so
# that stock openleadr peers in the same process stay exactly as shipped.
TEMPLATES = Environment(loader=PackageLoader("openleadr", "templates"), autoescape=True,
                        trim_blocks=True, lstrip_blocks=True)
TEMPLATES.filters.update(messaging.TEMPLATES.filters)


def signature_fragment(key: Any) -> str:
    """The signxml algorithm fragment openleadr picks for a private key (RSA for unknown types)."""
    if isinstance(key, rsa.RSAPrivateKey):
        return "rsa-sha256"
    if isinstance(key, dsa.DSAPrivateKey):
        return "dsa-sha256"
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return "ecdsa-sha256"
    return "rsa-sha256"


@lru_cache(maxsize=None)
def _xml_signer(fragment: str) -> XMLSigner:
    """One keyless XMLSigner per algorithm, shared by every signer of the process.

    sign() keeps no per-call state on the instance (we never pass id_attribute),
    and it runs synchronously, so sharing is safe within the event-loop thread.
    """
    signer = XMLSigner(method=methods.detached, c14n_algorithm=_C14N)
    signer.namespaces["oadr"] = _OADR_NS
    signer.sign_alg = SignatureMethod.from_fragment(fragment)
    return signer


# --- the profile's signature, without signxml --------------------------------
# What signxml's XMLSigner (as openleadr configures it) writes, with the two digests,
# the signature value, the certificates and the ReplayProtect filled in. SignedInfo
# and the Object are written here in their canonical (C14N 1.0) form as they stand
# inside the Signature element, which declares ds and oadr: those are the bytes digested
# and signed. tests/test_signing_fast.py checks them against lxml's C14N and signxml.
_SIGNATURE_OPEN = f'<ds:Signature xmlns:ds="{_DS_NS}" xmlns:oadr="{_OADR_NS}">'
_IN_SCOPE = f' xmlns:ds="{_DS_NS}" xmlns:oadr="{_OADR_NS}"'


def _reference(uri: str, digest: str, empty: Callable[[str, str], str]) -> str:
    return (f'<ds:Reference URI="{uri}"><ds:Transforms>{empty("Transform", _C14N)}</ds:Transforms>'
            f'{empty("DigestMethod", _SHA256)}<ds:DigestValue>{digest}</ds:DigestValue>'
            f'</ds:Reference>')


def _signed_info(method: str, object_digest: str, properties_digest: str,
                 canonical: bool) -> str:
    """SignedInfo as signxml writes it (empty elements closed short) or canonical."""
    def empty(name: str, algorithm: str) -> str:
        if canonical:
            return f'<ds:{name} Algorithm="{algorithm}"></ds:{name}>'
        return f'<ds:{name} Algorithm="{algorithm}"/>'
    return (f'<ds:SignedInfo{_IN_SCOPE if canonical else ""}>'
            f'{empty("CanonicalizationMethod", _C14N)}{empty("SignatureMethod", method)}'
            f'{_reference(_SIGNED_OBJECT, object_digest, empty)}'
            f'{_reference(_PROPERTIES, properties_digest, empty)}</ds:SignedInfo>')


def _properties(timestamp: str, nonce: str, canonical: bool) -> str:
    return (f'<ds:Object{_IN_SCOPE if canonical else ""} Id="prop"><ds:SignatureProperties>'
            f'<ds:SignatureProperty Id="myid" Target="#mytarget">'
            f'<dsp:ReplayProtect xmlns:dsp="{_DSP_NS}"><dsp:timestamp>{_text(timestamp)}'
            f'</dsp:timestamp><dsp:nonce>{_text(nonce)}</dsp:nonce></dsp:ReplayProtect>'
            f'</ds:SignatureProperty></ds:SignatureProperties></ds:Object>')


def _text(value: str) -> str:
    """Character data as C14N writes it (the same is well-formed XML)."""
    return (value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("\r", "&#xD;"))


def _digest(canonical: bytes) -> str:
    return b64encode(hashlib.sha256(canonical).digest()).decode()


def canonical(element: etree._Element, exclusive: bool = False) -> bytes:
    """C14N 1.0 (without comments) of an element where it stands in its document."""
    return etree.tostring(element, method="c14n", exclusive=exclusive, with_comments=False)


def sign_fast(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, certificates: list[str],
              signed_object: str, timestamp: str, nonce: str, canonical_object: bool = False) -> str:
    """The ds:Signature over `signed_object` (a standalone oadrSignedObject; with
    `canonical_object`, already in its C14N form) and its ReplayProtect (timestamp, nonce):
    signxml's output for the same input, byte for byte."""
    object_digest = _digest(signed_object.encode() if canonical_object
                            else canonical(etree.fromstring(signed_object)))
    properties_digest = _digest(_properties(timestamp, nonce, canonical=True).encode())
    method = _ECDSA_SHA256 if isinstance(key, ec.EllipticCurvePrivateKey) else _RSA_SHA256
    signed_info = _signed_info(method, object_digest, properties_digest, canonical=True).encode()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(signed_info, ec.ECDSA(hashes.SHA256())))
        size = (key.curve.key_size + 7) // 8
        value = r.to_bytes(size, "big") + s.to_bytes(size, "big")
    else:
        value = key.sign(signed_info, padding.PKCS1v15(), hashes.SHA256())
    x509_data = "".join(f"<ds:X509Certificate>{cert}</ds:X509Certificate>" for cert in certificates)
    return (f'{_SIGNATURE_OPEN}{_signed_info(method, object_digest, properties_digest, False)}'
            f'<ds:SignatureValue>{b64encode(value).decode()}</ds:SignatureValue>'
            f'<ds:KeyInfo><ds:X509Data>{x509_data}</ds:X509Data></ds:KeyInfo>'
            f'{_properties(timestamp, nonce, canonical=False)}</ds:Signature>')


class BadSignature(ValueError):
    """A signature of the profile's shape that does not verify; the message says why."""


class OtherShape(ValueError):
    """A signature verify_fast does not know how to check (signxml may)."""


_C14N_TRANSFORMS = {_C14N: False, _EXC_C14N: True}
_METHODS = {_ECDSA_SHA256: ec.EllipticCurvePublicKey, _RSA_SHA256: rsa.RSAPublicKey}
_SIGNATURE_CHILDREN = (f"{_DS}SignedInfo", f"{_DS}SignatureValue", f"{_DS}KeyInfo", f"{_DS}Object")
# What signxml resolves a "#name" URI by, in this order.
_ID_NAMES = ("Id", "ID", "id")
_ID_ATTRIBUTES = etree.XPath("//@*[" + " or ".join(f"local-name() = '{name}'" for name in _ID_NAMES)
                             + "]")


@lru_cache(maxsize=4096)
def _public_key(certificate_der: bytes):
    """Certificates repeat (one per VEN): parse each once."""
    return x509.load_der_x509_certificate(certificate_der).public_key()


def _only(parent: etree._Element, tag: str) -> etree._Element:
    found = [child for child in parent if child.tag == tag]
    if len(found) != 1:
        raise OtherShape(f"{len(found)} {tag} in {parent.tag}")
    return found[0]


def _algorithm(element: etree._Element, allowed) -> str:
    """The Algorithm of an element that has nothing else (no parameters, no children)."""
    algorithm = element.get("Algorithm")
    if algorithm not in allowed or len(element) or len(element.attrib) != 1:
        raise OtherShape(f"{element.tag} {algorithm}")
    return algorithm


class Ids:
    """The elements of a document by the value of their Id, ID or id attribute (of any
    namespace), found in one XPath pass: a message's three lookups (the signed object, the
    two references) read this instead of walking the tree each."""

    def __init__(self, root: etree._Element):
        self._elements: dict[tuple[str, str], list[etree._Element]] = {}
        for attribute in _ID_ATTRIBUTES(root):
            elements = self._elements.setdefault(
                (attribute.attrname.rpartition("}")[2], str(attribute)), [])
            element = attribute.getparent()
            if not elements or elements[-1] is not element:   # Id and oadr:Id on one element
                elements.append(element)

    def named(self, value: str, attribute: str = "Id") -> list[etree._Element]:
        """Every element whose `attribute` (Id, ID or id, any namespace) is `value`."""
        return self._elements.get((attribute, value), [])


def _resolve(ids: Ids, uri: str | None) -> etree._Element:
    """The one element a same-document "#name" URI names, as signxml resolves it."""
    if not uri or not uri.startswith("#") or uri.startswith("#xpointer("):
        raise OtherShape(f"reference URI {uri!r}")
    for name in _ID_NAMES:
        found = ids.named(uri[1:], name)
        if len(found) > 1:
            raise BadSignature(f"the reference URI {uri} names {len(found)} elements")
        if found:
            return found[0]
    raise BadSignature(f"the reference URI {uri} names no element")


def _check_reference(ids: Ids, reference: etree._Element) -> etree._Element:
    """The element a Reference signs, once its digest is checked."""
    if set(reference.attrib) != {"URI"}:
        raise OtherShape("Reference attributes")
    children = list(reference)
    if [child.tag for child in children] != [f"{_DS}Transforms", f"{_DS}DigestMethod",
                                              f"{_DS}DigestValue"]:
        raise OtherShape("Reference children")
    transforms, digest_method, digest_value = children
    if len(transforms) != 1 or transforms[0].tag != f"{_DS}Transform":
        raise OtherShape("Transforms")
    exclusive = _C14N_TRANSFORMS[_algorithm(transforms[0], _C14N_TRANSFORMS)]
    _algorithm(digest_method, (_SHA256,))
    target = _resolve(ids, reference.get("URI"))
    expected = _base64(digest_value.text, "DigestValue")
    if not hmac.compare_digest(hashlib.sha256(canonical(target, exclusive)).digest(), expected):
        raise BadSignature(f"the digest of {reference.get('URI')} does not match: "
                           f"the signed content was changed")
    return target


def _base64(text: str | None, what: str) -> bytes:
    try:
        return binascii.a2b_base64((text or "").encode("ascii"))
    except (binascii.Error, UnicodeEncodeError):
        raise BadSignature(f"the {what} is not base64") from None


def verify_fast(root: etree._Element, peer_certificate_der: bytes,
                ids: Ids | None = None) -> tuple[str, str]:
    """Verify the signature of an oadrPayload (`root`) made with the TLS peer's certificate;
    the signed ReplayProtect (timestamp text, nonce). `ids`: the document's Ids, if the
    caller has them already.

    Accepts only the profile's shape: one ds:Signature under oadrPayload with SignedInfo,
    SignatureValue, KeyInfo (one X509Certificate, the TLS one) and one Object; C14N 1.0
    (or exclusive C14N) of SignedInfo; ECDSA-SHA256 or RSA-SHA256 with a key of that type;
    exactly two references, SHA-256, one C14N transform each, one to the oadrSignedObject
    under oadrPayload and one to the Object, each URI naming exactly one element.
    Raises BadSignature when a signature of that shape is wrong, OtherShape when the
    signature has another shape.
    """
    signature = _only(root, f"{_DS}Signature")
    if tuple(child.tag for child in signature) != _SIGNATURE_CHILDREN:
        raise OtherShape("Signature children")
    signed_info, signature_value, key_info, properties = signature
    children = list(signed_info)
    if [child.tag for child in children] != [f"{_DS}CanonicalizationMethod",
                                             f"{_DS}SignatureMethod",
                                             f"{_DS}Reference", f"{_DS}Reference"]:
        raise OtherShape("SignedInfo children")
    c14n_method, signature_method, *references = children
    exclusive = _C14N_TRANSFORMS[_algorithm(c14n_method, _C14N_TRANSFORMS)]
    key_type = _METHODS[_algorithm(signature_method, _METHODS)]
    x509_data = _only(key_info, f"{_DS}X509Data")
    if len(key_info) != 1 or len(x509_data) != 1:
        raise OtherShape("KeyInfo")
    certificate = _only(x509_data, f"{_DS}X509Certificate")
    if _base64(certificate.text, "X509Certificate") != peer_certificate_der:
        raise BadSignature("the message was signed with another certificate than the TLS one")
    ids = ids if ids is not None else Ids(root)
    signed = [_check_reference(ids, reference) for reference in references]
    signed_object = _only(root, f"{{{_OADR_NS}}}oadrSignedObject")
    first, second = signed
    if not ((first is signed_object and second is properties)
            or (first is properties and second is signed_object)):
        raise BadSignature("the signature must cover the oadrSignedObject and its own "
                           "ReplayProtect, once each")
    key = _public_key(peer_certificate_der)
    if not isinstance(key, key_type):
        raise BadSignature(f"a {type(key).__name__} cannot make a {signature_method.get('Algorithm')}")
    _check_value(key, _base64(signature_value.text, "SignatureValue"),
                 canonical(signed_info, exclusive))
    return _replay_protect(properties)


def _check_value(key, value: bytes, signed_info: bytes) -> None:
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            size = (key.curve.key_size + 7) // 8
            if len(value) != 2 * size:
                raise BadSignature("the ECDSA SignatureValue has the wrong length")
            value = encode_dss_signature(int.from_bytes(value[:size], "big"),
                                         int.from_bytes(value[size:], "big"))
            key.verify(value, signed_info, ec.ECDSA(hashes.SHA256()))
        else:
            key.verify(value, signed_info, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise BadSignature("the SignatureValue does not verify with the TLS certificate's key") \
            from None


def _replay_protect(properties: etree._Element) -> tuple[str, str]:
    """(timestamp, nonce) text of the signed Object's one ReplayProtect."""
    path = (f"{_DS}SignatureProperties/{_DS}SignatureProperty/{_DSP}ReplayProtect")
    found = properties.findall(path)
    if len(found) != 1:
        raise BadSignature("the signed Object must hold exactly one ReplayProtect")
    timestamp, nonce = found[0].findtext(f"{_DSP}timestamp"), found[0].findtext(f"{_DSP}nonce")
    if not timestamp or not nonce:
        raise BadSignature("the ReplayProtect has no timestamp or no nonce")
    return timestamp, nonce


class MessageSigner:
    """`signer(message_type, **payload) -> str`, like openleadr's create_message partial.

    Deliberately not a descriptor (no __get__): openleadr stores its create_message
    partial as a class attribute of VTNService, and this object can take its place.
    """

    def __init__(self, cert_pem: bytes | str, key_pem: bytes | str, passphrase: str | None = None):
        key_bytes = utils.ensure_bytes(key_pem)
        self._key = messaging.load_private_key(key_bytes, passphrase)
        if self._key is None:
            raise ValueError("the private key could not be loaded (neither PEM nor DER)")
        # signxml would split the PEM chain with a regex on every call; do it once.
        self._cert_chain = list(iterate_pem(cert_pem))
        if not self._cert_chain:
            raise ValueError("no PEM certificate found")
        self._certificates = [cert.replace("\r", "") for cert in self._cert_chain]
        self._signer = _xml_signer(signature_fragment(self._key))
        self._fast = isinstance(self._key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey))

    @classmethod
    def from_files(cls, cert: str | Path, key: str | Path, passphrase: str | None = None) -> "MessageSigner":
        return cls(Path(cert).read_bytes(), Path(key).read_bytes(), passphrase)

    @property
    def algorithm(self) -> str:
        return self._signer.sign_alg.value

    def __call__(self, message_type: str, **message_payload: Any) -> str:
        # Same steps as openleadr.messaging.create_message; only the key handling differs.
        signed_object = prebuilt(message_type, message_payload) if self._fast else None
        if signed_object is not None:
            return _payload(self.sign(signed_object, canonical_object=True), signed_object)
        return self.envelope(self.render(message_type, **message_payload))

    def render(self, message_type: str, **message_payload: Any) -> str:
        """The oadrSignedObject of a message, escaped, not yet signed."""
        return render(message_type, **message_payload)

    def envelope(self, signed_object: str) -> str:
        """The oadrPayload carrying `signed_object` and its signature."""
        return _payload(self.sign(signed_object), signed_object)

    def sign(self, signed_object: str, canonical_object: bool = False) -> str:
        """The detached ds:Signature over #oadrSignedObject, with a fresh ReplayProtect.
        `canonical_object`: the signed object is written in its C14N form already."""
        if self._fast:
            return sign_fast(self._key, self._certificates, signed_object,
                             *_replay_protect_values(), canonical_object)
        replay_protect = messaging._create_replay_protect()
        tree = etree.fromstring(signed_object)
        signature_tree = self._signer.sign(tree, key=self._key, cert=self._cert_chain,
                                           reference_uri="#oadrSignedObject",
                                           signature_properties=replay_protect)
        return etree.tostring(signature_tree).decode("utf-8")


_STOCK_REPLAY_PROTECT = messaging._create_replay_protect


def _replay_protect_values() -> tuple[str, str]:
    """(timestamp, nonce) of a fresh ReplayProtect, as openleadr makes them, without building
    its lxml element; openleadr's function is looked up at call time, so a test (or a
    hostile peer's clock) patching it is honoured."""
    if messaging._create_replay_protect is _STOCK_REPLAY_PROTECT:
        return utils.datetimeformat(datetime.now(timezone.utc)), uuid4().hex
    replay_protect = messaging._create_replay_protect()
    return replay_protect.findtext(f"{_DSP}timestamp"), replay_protect.findtext(f"{_DSP}nonce")


def _payload(signature: str, signed_object: str) -> str:
    """openleadr's oadrPayload.xml template, rendered: the same bytes."""
    return ('<?xml version="1.0" encoding="utf-8"?>\n'
            f'<oadr:oadrPayload xmlns:oadr="{_OADR_NS}">\n{signature}{signed_object}\n'
            '</oadr:oadrPayload>')


# The answers of every poll, written in their canonical (C14N) form: nothing to render,
# parse or canonicalize before digesting, and valid 2.0b by construction (any text the
# XSD's string types take), so the message path need not check them against the XSD.
_RESPONSE = (f'<oadr:oadrSignedObject xmlns:oadr="{_OADR_NS}" oadr:Id="oadrSignedObject">'
             '<oadr:oadrResponse xmlns:ei="http://docs.oasis-open.org/ns/energyinterop/201110"'
             ' ei:schemaVersion="2.0b"><ei:eiResponse><ei:responseCode>{code}</ei:responseCode>'
             '<ei:responseDescription>{description}</ei:responseDescription>'
             '<requestID xmlns="http://docs.oasis-open.org/ns/energyinterop/201110/payloads">'
             '{request_id}</requestID></ei:eiResponse><ei:venID>{ven_id}</ei:venID>'
             '</oadr:oadrResponse></oadr:oadrSignedObject>')
# Characters XML 1.0 cannot carry: such a value goes the template way (and is refused there).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def prebuilt(message_type: str, payload: dict) -> str | None:
    """The canonical oadrSignedObject of an oadrResponse, or None for anything else
    (other types, values of unexpected types: openleadr's templates handle those)."""
    if message_type != "oadrResponse":
        return None
    response = payload.get("response")
    if not isinstance(response, dict) or not isinstance(payload.get("ven_id"), str):
        return None
    code, description = response.get("response_code"), response.get("response_description")
    request_id = response.get("request_id")
    request_id = "" if request_id is None else request_id
    if type(code) is not int or not isinstance(description, str) or not isinstance(request_id, str):
        return None
    values = (description, request_id, payload["ven_id"])
    if any(_NOT_XML.search(value) for value in values):
        return None
    description, request_id, ven_id = map(_text, values)
    return _RESPONSE.format(code=code, description=description, request_id=request_id,
                            ven_id=ven_id)


def render(message_type: str, **message_payload: Any) -> str:
    """The oadrSignedObject of a message, escaped, before it is signed."""
    message_payload = preflight_message(message_type, message_payload)
    template = TEMPLATES.get_template(f"{message_type}.xml")
    return utils.flatten_xml(template.render(**message_payload))


def client_signer(create_message: Any,
                  signer_class: type[MessageSigner] = MessageSigner) -> Callable[..., str]:
    """The cached signer equivalent to an OpenADRClient's `_create_message` partial.

    Returns the partial unchanged when it does not sign (no cert/key, or signatures
    disabled): there is nothing to cache then.
    """
    keywords = getattr(create_message, "keywords", {})
    cert, key = keywords.get("cert"), keywords.get("key")
    if not cert or not key or keywords.get("disable_signature"):
        return create_message
    return signer_class(cert, key, keywords.get("passphrase"))


# --- receiving side ------------------------------------------------------------
class NonceCache:
    """(timestamp, nonce) pairs seen within the replay window.

    A set answers "seen?" in O(1); a deque in arrival order lets expired pairs be
    dropped from the front, so each pair is added and removed once: amortised O(1)
    per message instead of openleadr's full scan. Pairs that arrive out of timestamp
    order may outlive the window slightly (until the pairs in front of them expire);
    that only keeps memory a little longer and never weakens the check, because
    anything older than the window is refused by its timestamp alone.

    Quacks like openleadr's NONCE_CACHE for `in` and like its _update_nonce_cache
    for `add(timestamp, nonce)`, so it can replace both (see install_nonce_cache).
    """

    def __init__(self, window: timedelta | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.window = window if window is not None else messaging.REPLAY_PROTECT_MAX_TIME_DELTA
        self._now = now
        self._seen: set[tuple[datetime, str]] = set()
        self._order: deque[tuple[datetime, str]] = deque()

    def __contains__(self, item: object) -> bool:
        return item in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def __iter__(self):
        return iter(list(self._seen))

    def add(self, timestamp: datetime, nonce: str) -> None:
        item = (timestamp, nonce)
        if item not in self._seen:
            self._seen.add(item)
            self._order.append(item)
        self.prune()

    def prune(self) -> None:
        cutoff = self._now() - self.window
        order, seen = self._order, self._seen
        while order and order[0][0] < cutoff:
            seen.discard(order.popleft())

    def check_and_add(self, timestamp: datetime, nonce: str) -> None:
        """openleadr's replay rules: refuse a stale timestamp or a pair seen before."""
        if timestamp < self._now() - self.window:
            raise ValueError("The message was signed too long ago.")
        if (timestamp, nonce) in self._seen:
            raise ValueError("This combination of timestamp and nonce was already used.")
        self.add(timestamp, nonce)


def replay_protect(xml_tree: etree._Element) -> tuple[datetime, str]:
    """The (timestamp, nonce) of a signed message's ReplayProtect property."""
    try:
        timestamp = utils.parse_datetime(xml_tree.findtext(f".//{_DSP}timestamp"))
        nonce = xml_tree.findtext(f".//{_DSP}nonce")
    except Exception as err:
        raise ValueError("Missing or malformed ReplayProtect element in the message signature.") from err
    if nonce is None:
        raise ValueError("Missing 'nonce' element in ReplayProtect in incoming message.")
    return timestamp, nonce


def validate_xml_signature(xml_tree: etree._Element, nonce_cache: NonceCache,
                           cert_fingerprint: str | None = None) -> None:
    """openleadr's validate_xml_signature, with replay protection against `nonce_cache`."""
    cert = utils.extract_pem_cert(xml_tree)
    if cert_fingerprint:
        fingerprint = utils.certificate_fingerprint(cert)
        if fingerprint != cert_fingerprint:
            raise errors.FingerprintMismatch(
                f"The certificate fingerprint was incorrect. Expected: {cert_fingerprint}; "
                f"Received: {fingerprint}. Ignoring message.")
    messaging.VERIFIER.verify(xml_tree, x509_cert=utils.ensure_bytes(cert), expect_references=2)
    nonce_cache.check_and_add(*replay_protect(xml_tree))


def install_nonce_cache(cache: NonceCache | None = None) -> NonceCache:
    """Make openleadr's own replay check (messaging._verify_replay_protect, used by
    validate_xml_signature on both client and server) use an O(1) NonceCache.

    openleadr's check is `(timestamp, nonce) in NONCE_CACHE` followed by
    `_update_nonce_cache(timestamp, nonce)`; both are module globals looked up at
    call time, so replacing them is enough. Process-wide, like openleadr's cache.
    """
    cache = cache or NonceCache()
    messaging.NONCE_CACHE = cache
    messaging._update_nonce_cache = cache.add
    return cache
