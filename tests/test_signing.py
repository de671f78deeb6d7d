"""The cached signer makes the messages openleadr makes, and they verify; the nonce cache
refuses replays and forgets what left the window."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from lxml import etree
from openleadr import errors, messaging, objects
from signxml.exceptions import InvalidSignature

from certs.pki import CertPaths, create_ca, issue
from flexadr import xsd
from flexadr.signing import MessageSigner, NonceCache, client_signer, install_nonce_cache, \
    validate_xml_signature
from ven.openadr20b.client import FlexClient

DS = "{http://www.w3.org/2000/09/xmldsig#}"
EI = "{http://docs.oasis-open.org/ns/energyinterop/201110}"


@pytest.fixture(scope="module", params=["ecdsa", "rsa"])
def identity(request, tmp_path_factory) -> CertPaths:
    root = tmp_path_factory.mktemp(request.param)
    ca = create_ca(root, key_type=request.param)
    return issue(ca, root, "ven-1", key_type=request.param)


@pytest.fixture
def signer(identity) -> MessageSigner:
    return MessageSigner.from_files(identity.cert, identity.key)


def _report() -> objects.Report:
    start = datetime(2026, 7, 1, 16, tzinfo=timezone.utc)
    return objects.Report(report_request_id="rr-1", report_specifier_id="spec-1",
                          report_name="TELEMETRY_USAGE", dtstart=start,
                          intervals=[objects.ReportInterval(
                              dtstart=start, duration=timedelta(minutes=15),
                              report_payload=objects.ReportPayload(r_id="kw", value=4.5))])


MESSAGES = {
    "oadrPoll": dict(ven_id="ven-1"),
    "oadrQueryRegistration": dict(request_id="req-1"),
    "oadrCreatedReport": dict(ven_id="ven-1", pending_reports=[{"report_request_id": "rr-1"}],
                              response={"response_code": 200, "response_description": "OK",
                                        "request_id": "req-1"}),
    "oadrUpdateReport": dict(ven_id="ven-1", request_id="req-2", reports=[_report()]),
}


def _tree(message: str) -> etree._Element:
    return etree.fromstring(message.encode("utf-8"))


@pytest.mark.parametrize("message_type", MESSAGES)
def test_signed_messages_pass_the_xsd_and_openleadrs_own_signature_check(signer, message_type):
    message = signer(message_type, **MESSAGES[message_type])
    tree = xsd.validate(message)
    assert xsd.message_type(tree) == message_type
    messaging.validate_xml_signature(tree)          # raises on a bad signature


def test_same_bytes_as_openleadr_given_the_same_replay_protect(identity, signer, monkeypatch):
    fixed = messaging._create_replay_protect()
    monkeypatch.setattr(messaging, "_create_replay_protect",
                        lambda: etree.fromstring(etree.tostring(fixed)))
    stock = messaging.create_message("oadrPoll", cert=identity.cert.read_bytes(),
                                      key=identity.key.read_bytes(), ven_id="ven-1")
    cached = signer("oadrPoll", ven_id="ven-1")
    if signer.algorithm.endswith("rsa-sha256"):
        assert cached == stock                       # PKCS#1 v1.5 is deterministic
    else:
        # ECDSA signatures are randomised: everything but the signature value is equal.
        def without_value(message: str) -> bytes:
            tree = _tree(message)
            tree.find(f".//{DS}SignatureValue").text = ""
            return etree.tostring(tree)
        assert without_value(cached) == without_value(stock)
        assert _tree(cached).findtext(f".//{DS}SignatureValue") != ""


def test_algorithm_follows_the_key_type(identity, signer):
    expected = "rsa-sha256" if "rsa" in str(identity.cert.parent) else "ecdsa-sha256"
    assert signer.algorithm.endswith(expected)


def test_a_tampered_message_fails(signer):
    tree = _tree(signer("oadrPoll", ven_id="ven-1"))
    tree.find(f".//{EI}venID").text = "ven-2"
    with pytest.raises(InvalidSignature):
        messaging.validate_xml_signature(tree)


def test_a_message_signed_by_another_key_is_refused_by_fingerprint(identity, tmp_path):
    other = issue(create_ca(tmp_path), tmp_path, "ven-2")
    tree = _tree(MessageSigner.from_files(other.cert, other.key)("oadrPoll", ven_id="ven-1"))
    with pytest.raises(errors.FingerprintMismatch):
        validate_xml_signature(tree, NonceCache(), cert_fingerprint=identity.fingerprint)


def test_replay_of_the_same_nonce_is_refused(signer):
    cache = NonceCache()
    message = signer("oadrPoll", ven_id="ven-1")
    validate_xml_signature(_tree(message), cache)
    with pytest.raises(ValueError, match="already used"):
        validate_xml_signature(_tree(message), cache)
    validate_xml_signature(_tree(signer("oadrPoll", ven_id="ven-1")), cache)   # a fresh nonce passes


def test_installed_cache_makes_openleadrs_check_refuse_a_replay(signer, monkeypatch):
    monkeypatch.setattr(messaging, "NONCE_CACHE", messaging.NONCE_CACHE)
    monkeypatch.setattr(messaging, "_update_nonce_cache", messaging._update_nonce_cache)
    cache = install_nonce_cache()
    message = signer("oadrPoll", ven_id="ven-1")
    messaging.validate_xml_signature(_tree(message))
    assert len(cache) == 1
    with pytest.raises(ValueError, match="already used"):
        messaging.validate_xml_signature(_tree(message))


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 7, 1, 12, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now


def test_nonce_cache_forgets_what_left_the_window_and_refuses_stale_timestamps():
    clock = Clock()
    cache = NonceCache(timedelta(seconds=5), now=clock)
    for i in range(100):
        cache.check_and_add(clock.now, f"n{i}")
    assert len(cache) == 100
    clock.now += timedelta(seconds=6)
    cache.check_and_add(clock.now, "fresh")
    assert len(cache) == 1 and (clock.now, "fresh") in cache
    with pytest.raises(ValueError, match="too long ago"):
        cache.check_and_add(clock.now - timedelta(seconds=6), "n1")


def test_out_of_order_timestamps_are_kept_until_they_expire():
    clock = Clock()
    cache = NonceCache(timedelta(seconds=5), now=clock)
    cache.add(clock.now, "late")
    cache.add(clock.now - timedelta(seconds=4), "early")
    clock.now += timedelta(seconds=2)       # "early" left the window, "late" has not
    cache.prune()
    with pytest.raises(ValueError):          # still refused, by its timestamp
        cache.check_and_add(clock.now - timedelta(seconds=6), "early")
    with pytest.raises(ValueError, match="already used"):
        cache.check_and_add(datetime(2026, 7, 1, 12, tzinfo=timezone.utc), "late")


def test_flex_client_signs_with_the_cached_signer(identity):
    client = FlexClient(ven_name="ven-1", vtn_url="https://127.0.0.1:1/OpenADR2/Simple/2.0b",
                        cert=str(identity.cert), key=str(identity.key), show_fingerprint=False)
    assert isinstance(client._create_message, MessageSigner)
    messaging.validate_xml_signature(xsd.validate(client._create_message("oadrPoll", ven_id="ven-1")))


def test_an_unsigned_client_stays_unsigned():
    client = FlexClient(ven_name="ven-1", vtn_url="http://127.0.0.1:1/OpenADR2/Simple/2.0b",
                        show_fingerprint=False)
    assert not isinstance(client._create_message, MessageSigner)
    assert client_signer(client._create_message) is client._create_message
    tree = _tree(client._create_message("oadrPoll", ven_id="ven-1"))
    assert tree.find(f".//{DS}Signature") is None


def test_a_missing_certificate_is_refused(identity):
    with pytest.raises(ValueError, match="certificate"):
        MessageSigner(b"not a certificate", Path(identity.key).read_bytes())


HOSTILE = "</requestID><ei:venID>evil</ei:venID>&\"'<x]]>"


def _hostile_ids(node, key=""):
    """Every identifier of a payload replaced by HOSTILE."""
    if isinstance(node, dict):
        return {k: _hostile_ids(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_hostile_ids(v, key) for v in node]
    if key.endswith("_id") and isinstance(node, str):
        return HOSTILE
    return node


def _every_message() -> list[tuple[str, dict]]:
    """What a VEN sends (the fuzz corpus), and what the VTN answers: every paired error
    answer, oadrRequestReregistration and an oadrDistributeEvent with three intervals."""
    from dataclasses import asdict, is_dataclass

    from tests.hostile_fuzz import corpus, distribute_event
    from vtn.security import PAIRED, Incoming, error_answer
    sent = [(message_type, payload) for _, message_type, payload in corpus()]
    answers = [error_answer("V", Incoming(message_type=t, request_id="r", ven_id="v",
                                          payload={"opt_id": "o", "registration_id": "g"}),
                            454, "bad") for t in PAIRED]
    answers += [("oadrRequestReregistration", {"ven_id": "v"}), distribute_event()]

    def plain(payload):
        return {k: ([asdict(i) if is_dataclass(i) else i for i in v] if isinstance(v, list)
                    else asdict(v) if is_dataclass(v) else v) for k, v in payload.items()}
    return [(t, _hostile_ids(plain(p))) for t, p in sent + answers]


@pytest.mark.parametrize("message_type, payload", _every_message(),
                         ids=lambda value: value if isinstance(value, str) else "")
def test_hostile_identifiers_are_escaped_in_every_template(signer, message_type, payload):
    from flexadr import oadr_xml
    message = signer(message_type, **payload)
    tree = xsd.validate(message)                      # still valid 2.0b
    assert "<ei:venID>evil" not in message            # nothing injected
    _, parsed = oadr_xml.payload(tree)
    assert HOSTILE in set(_strings(parsed))           # and it reads back as sent


def _strings(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node
