"""Signed OpenADR messages without re-reading the key, and an O(1) nonce cache.

openleadr's `messaging.create_message` parses the PEM private key twice for
every message (once to pick the signature algorithm, once inside signxml) and
re-splits the PEM certificate: ~90 ms per message with RSA-2048, ~1.5 ms with
ECDSA P-256. `MessageSigner` parses the key and certificate once and then
renders and signs as create_message does: the same preflight, the same Jinja
templates (but autoescaped), the same signxml XMLSigner settings (detached, C14N 1.0, the
`oadr` namespace prefix, algorithm chosen from the key type) and the same
ReplayProtect signature property. It is a drop-in for the `_create_message`
callable openleadr keeps on OpenADRClient instances and on VTNService.

openleadr's receiving side remembers (timestamp, nonce) pairs in a global set
and prunes it by scanning the whole set on every message. `NonceCache` keeps
them in arrival order and drops expired ones from the front: amortised O(1).
"""
from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric import dsa, ec, rsa
from jinja2 import Environment, PackageLoader
from lxml import etree
from openleadr import errors, messaging, utils
from openleadr.preflight import preflight_message
from signxml import XMLSigner, methods
from signxml.algorithms import SignatureMethod
from signxml.util import iterate_pem

_C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
_OADR_NS = "http://openadr.org/oadr-2.0b/2012/07"
_DSP = "{http://openadr.org/oadr-2.0b/2012/07/xmldsig-properties}"

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
        self._signer = _xml_signer(signature_fragment(self._key))

    @classmethod
    def from_files(cls, cert: str | Path, key: str | Path, passphrase: str | None = None) -> "MessageSigner":
        return cls(Path(cert).read_bytes(), Path(key).read_bytes(), passphrase)

    @property
    def algorithm(self) -> str:
        return self._signer.sign_alg.value

    def __call__(self, message_type: str, **message_payload: Any) -> str:
        # Same steps as openleadr.messaging.create_message; only the key handling differs.
        return self.envelope(self.render(message_type, **message_payload))

    def render(self, message_type: str, **message_payload: Any) -> str:
        """The oadrSignedObject of a message, escaped, not yet signed."""
        return render(message_type, **message_payload)

    def envelope(self, signed_object: str) -> str:
        """The oadrPayload carrying `signed_object` and its signature."""
        signature = self.sign(signed_object)
        return TEMPLATES.get_template("oadrPayload.xml").render(
            signature=signature, signed_object=signed_object)

    def sign(self, signed_object: str) -> str:
        """The detached ds:Signature over #oadrSignedObject, with a fresh ReplayProtect."""
        tree = etree.fromstring(signed_object)
        # Looked up at call time so a test (or openleadr itself) patching it is honoured.
        replay_protect = messaging._create_replay_protect()
        signature_tree = self._signer.sign(tree, key=self._key, cert=self._cert_chain,
                                           reference_uri="#oadrSignedObject",
                                           signature_properties=replay_protect)
        return etree.tostring(signature_tree).decode("utf-8")


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
