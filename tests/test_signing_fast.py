"""The signature fast path: sign_fast writes what signxml writes, and verify_fast refuses
whatever signxml refuses and more (references elsewhere, another certificate), with
signxml as the reference in every case."""
from __future__ import annotations

import ssl
from base64 import b64encode

import pytest
from lxml import etree
from openleadr import messaging

from certs.pki import CertPaths, create_ca, issue
from flexadr import xsd
from flexadr.signing import (BadSignature, Ids, MessageSigner, OtherShape, canonical, verify_fast)
from tests.test_signing import MESSAGES
from vtn.security import Refused, verify_signature

DS = "{http://www.w3.org/2000/09/xmldsig#}"
EI = "{http://docs.oasis-open.org/ns/energyinterop/201110}"
OADR = "{http://openadr.org/oadr-2.0b/2012/07}"
DSP = "{http://openadr.org/oadr-2.0b/2012/07/xmldsig-properties}"
C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"


@pytest.fixture(scope="module", params=["ecdsa", "rsa"])
def pki(request, tmp_path_factory) -> tuple[CertPaths, CertPaths]:
    """Two VEN identities of one CA: the sender and someone else."""
    root = tmp_path_factory.mktemp(request.param)
    ca = create_ca(root, key_type=request.param)
    return (issue(ca, root, "ven-1", key_type=request.param),
            issue(ca, root, "ven-2", key_type=request.param))


@pytest.fixture(scope="module")
def signer(pki) -> MessageSigner:
    return MessageSigner.from_files(pki[0].cert, pki[0].key)


def _der(identity: CertPaths) -> bytes:
    return ssl.PEM_cert_to_DER_cert(identity.cert.read_text())


def _tree(message: str) -> etree._Element:
    return etree.fromstring(message.encode("utf-8"))


def _signxml_accepts(tree: etree._Element, identity: CertPaths) -> bool:
    try:
        messaging.VERIFIER.verify(tree, x509_cert=identity.cert.read_bytes(), expect_references=2)
    except Exception:   # noqa: BLE001 - any signxml refusal
        return False
    return True


def _fast_accepts(tree: etree._Element, identity: CertPaths) -> bool:
    """verify_fast's verdict through the VTN's verify_signature (signxml for other shapes)."""
    try:
        verify_signature(tree, _der(identity))
    except Refused:
        return False
    return True


def _resign(tree: etree._Element, identity: CertPaths) -> etree._Element:
    """Sign the (altered) SignedInfo again with a VEN's key: only the shape is wrong then."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
    key = serialization.load_pem_private_key(identity.key.read_bytes(), None)
    data = canonical(tree.find(f"{DS}Signature/{DS}SignedInfo"))
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        value = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        value = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    tree.find(f"{DS}Signature/{DS}SignatureValue").text = b64encode(value).decode()
    return tree


@pytest.mark.parametrize("message_type", MESSAGES)
def test_fast_signatures_are_valid_2_0b_and_verify_with_signxml_and_fast(pki, signer, message_type):
    message = signer(message_type, **MESSAGES[message_type])
    tree = xsd.validate(message)
    assert _signxml_accepts(tree, pki[0])
    timestamp, nonce = verify_fast(tree, _der(pki[0]))
    assert (timestamp, nonce) == (tree.findtext(f".//{DSP}timestamp"), tree.findtext(f".//{DSP}nonce"))


def test_the_written_signed_info_is_what_was_signed(signer):
    """The canonical SignedInfo written from the template equals lxml's C14N of the
    emitted one, so any C14N implementation reads the same bytes."""
    tree = _tree(signer("oadrPoll", ven_id="ven-1"))
    signature = tree.find(f"{DS}Signature")
    standalone = etree.fromstring(etree.tostring(signature))
    assert canonical(signature.find(f"{DS}SignedInfo")) == \
        canonical(standalone.find(f"{DS}SignedInfo"))


def test_signxml_signatures_verify_fast(pki, signer):
    """What stock openleadr peers send (signxml's XMLSigner) takes the fast path."""
    message = messaging.create_message("oadrPoll", cert=pki[0].cert.read_bytes(),
                                       key=pki[0].key.read_bytes(), ven_id="ven-1")
    assert verify_fast(_tree(message), _der(pki[0]))[1]


def _set(path: str, value: str):
    def mutate(tree, pki):
        tree.find(path).text = value
        return tree
    return mutate


def _digest_value(tree, pki):
    tree.find(f".//{DS}DigestValue").text = b64encode(b"\0" * 32).decode()
    return tree


def _signature_value(tree, pki):
    element = tree.find(f".//{DS}SignatureValue")
    raw = bytearray(__import__("base64").b64decode(element.text))
    raw[5] ^= 1
    element.text = b64encode(bytes(raw)).decode()
    return tree


def _signed_by_another_key(tree, pki):
    """The TLS certificate in KeyInfo, but the signature made with another VEN's key."""
    return _resign(tree, pki[1])


def _third_reference(tree, pki):
    signed_info = tree.find(f"{DS}Signature/{DS}SignedInfo")
    references = signed_info.findall(f"{DS}Reference")
    signed_info.append(etree.fromstring(etree.tostring(references[1])))
    return _resign(tree, pki[0])


def _one_reference(tree, pki):
    signed_info = tree.find(f"{DS}Signature/{DS}SignedInfo")
    signed_info.remove(signed_info.findall(f"{DS}Reference")[1])
    return _resign(tree, pki[0])


def _both_references_to_the_properties(tree, pki):
    """Valid digests, validly signed, but the message itself is not covered."""
    first = tree.find(f"{DS}Signature/{DS}SignedInfo/{DS}Reference")
    first.set("URI", "#prop")
    first.find(f"{DS}DigestValue").text = tree.findall(f".//{DS}DigestValue")[1].text
    return _resign(tree, pki[0])


def _wrapped(tree, pki):
    """Signature wrapping: the signed original moved into an Object of the Signature, a
    forged oadrSignedObject (no Id) in its place."""
    original = tree.find(f"{OADR}oadrSignedObject")
    forged = etree.fromstring(etree.tostring(original))
    forged.attrib.clear()
    forged.find(f".//{EI}venID").text = "ven-forged"
    tree.remove(original)
    holder = etree.SubElement(tree.find(f"{DS}Signature"), f"{DS}Object")
    holder.append(original)
    tree.append(forged)
    return tree


def _duplicate_id(tree, pki):
    """A second element claiming Id=oadrSignedObject (ambiguous reference)."""
    holder = etree.SubElement(tree.find(f"{DS}Signature"), f"{DS}Object")
    holder.append(etree.fromstring(etree.tostring(tree.find(f"{OADR}oadrSignedObject"))))
    return tree


def _claimed_again(attribute: str, value: str):
    """A second element, in an Object of the Signature, claiming an Id a reference names."""
    def mutate(tree, pki):
        holder = etree.SubElement(tree.find(f"{DS}Signature"), f"{DS}Object")
        etree.SubElement(holder, "claim").set(attribute, value)
        return tree
    return mutate


def _algorithm(path: str, algorithm: str, resign: bool = True):
    def mutate(tree, pki):
        tree.find(path).set("Algorithm", algorithm)
        return _resign(tree, pki[0]) if resign else tree
    return mutate


def _enveloped_transform(tree, pki):
    transforms = tree.find(f"{DS}Signature/{DS}SignedInfo/{DS}Reference/{DS}Transforms")
    etree.SubElement(transforms, f"{DS}Transform").set(
        "Algorithm", "http://www.w3.org/2000/09/xmldsig#enveloped-signature")
    return _resign(tree, pki[0])


SIGNED_INFO = f"{DS}Signature/{DS}SignedInfo"
REFUSALS = {
    "tampered payload": _set(f".//{EI}venID", "ven-9"),
    "tampered nonce": _set(f".//{DSP}nonce", "0" * 32),
    "tampered timestamp": _set(f".//{DSP}timestamp", "2030-01-01T00:00:00Z"),
    "wrong digest": _digest_value,
    "wrong signature value": _signature_value,
    "signed with another key": _signed_by_another_key,
    "three references": _third_reference,
    "one reference": _one_reference,
    "message not referenced": _both_references_to_the_properties,
    "signature wrapping": _wrapped,
    "ambiguous reference": _duplicate_id,
    "the properties' Id claimed twice": _claimed_again("Id", "prop"),
    "the signed object's Id claimed in another namespace": _claimed_again(
        "{urn:other}Id", "oadrSignedObject"),
    "sha1 digest method": _algorithm(f"{SIGNED_INFO}/{DS}Reference/{DS}DigestMethod",
                                     "http://www.w3.org/2000/09/xmldsig#sha1"),
    "sha1 signature method": _algorithm(f"{SIGNED_INFO}/{DS}SignatureMethod",
                                        "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
                                        resign=False),
    "hmac signature method": _algorithm(f"{SIGNED_INFO}/{DS}SignatureMethod",
                                        "http://www.w3.org/2000/09/xmldsig#hmac-sha1",
                                        resign=False),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_refused_by_the_fast_path_whenever_signxml_refuses(pki, signer, case):
    tree = REFUSALS[case](_tree(signer("oadrPoll", ven_id="ven-1")), pki)
    assert not _fast_accepts(tree, pki[0])
    # signxml alone is looser on where the references point (the VTN's message path checks
    # that separately): the fast path must never be.
    if case not in ("message not referenced", "signature wrapping"):
        assert not _signxml_accepts(tree, pki[0])


def test_a_key_of_the_other_type_is_refused(pki, signer):
    """A SignatureMethod that does not match the TLS certificate's key type."""
    tree = _tree(signer("oadrPoll", ven_id="ven-1"))
    method = tree.find(f"{SIGNED_INFO}/{DS}SignatureMethod")
    other = {"ecdsa-sha256": "rsa-sha256", "rsa-sha256": "ecdsa-sha256"}
    algorithm = method.get("Algorithm")
    method.set("Algorithm", algorithm.replace(algorithm.rsplit("#", 1)[1],
                                              other[algorithm.rsplit("#", 1)[1]]))
    with pytest.raises(BadSignature, match="cannot make"):
        verify_fast(_resign(tree, pki[0]), _der(pki[0]))


def test_the_certificate_must_be_the_tls_one(pki, signer):
    """A valid signature by ven-1 over a connection authenticated as ven-2."""
    tree = _tree(signer("oadrPoll", ven_id="ven-1"))
    with pytest.raises(BadSignature, match="another certificate"):
        verify_fast(tree, _der(pki[1]))
    with pytest.raises(Refused, match="another certificate"):
        verify_signature(tree, _der(pki[1]))


def _inclusive_namespaces(tree, pki):
    transform = tree.find(f"{SIGNED_INFO}/{DS}Reference/{DS}Transforms/{DS}Transform")
    transform.set("Algorithm", "http://www.w3.org/2001/10/xml-exc-c14n#")
    etree.SubElement(transform, "{http://www.w3.org/2001/10/xml-exc-c14n#}InclusiveNamespaces",
                     PrefixList="oadr")
    return _resign(tree, pki[0])


@pytest.mark.parametrize("mutate", [_enveloped_transform, _inclusive_namespaces])
def test_other_shapes_are_left_to_signxml(pki, signer, mutate):
    """Not the profile's shape: verify_fast says so, and verify_signature's verdict is
    signxml's (an enveloped-signature transform is a no-op on a detached signature, and
    exclusive C14N with the oadr prefix kept reads this message as inclusive C14N does:
    both valid, both accepted)."""
    tree = mutate(_tree(signer("oadrPoll", ven_id="ven-1")), pki)
    with pytest.raises(OtherShape):
        verify_fast(tree, _der(pki[0]))
    assert _signxml_accepts(tree, pki[0])
    assert _fast_accepts(tree, pki[0])


ANSWERS = [
    {"ven_id": "ven-1", "vtn_id": "vtn", "request_id": "r",
     "response": {"response_code": 200, "response_description": "OK", "request_id": "req-1"}},
    {"ven_id": "<ven & \"1\">'", "response": {"response_code": 463, "request_id": None,
                                                "response_description": "venID <x> & 'y'"}},
    {"ven_id": "", "response": {"response_code": 452, "response_description": "", "request_id": ""}},
]


@pytest.mark.parametrize("answer", ANSWERS)
def test_the_prebuilt_oadr_response_is_the_templates_message(pki, signer, answer):
    """The same document as openleadr's template (escaped) gives, valid 2.0b, canonical as
    written, and verified by signxml and by openleadr's own check."""
    from flexadr.signing import prebuilt, render
    written = prebuilt("oadrResponse", answer)
    assert written == canonical(etree.fromstring(written)).decode()
    assert written == canonical(etree.fromstring(render("oadrResponse", **answer))).decode()
    tree = xsd.validate(signer("oadrResponse", **answer))
    assert _signxml_accepts(tree, pki[0])
    messaging.validate_xml_signature(tree)
    assert tree.findtext(f".//{EI}venID") == answer["ven_id"]


@pytest.mark.parametrize("answer", [
    {"ven_id": None, "response": {"response_code": 200, "response_description": "OK"}},
    {"ven_id": "v", "response": {"response_code": "200", "response_description": "OK"}},
    {"ven_id": "v\x01", "response": {"response_code": 200, "response_description": "OK"}},
    {"ven_id": "v"},
])
def test_unexpected_values_go_the_template_way(answer):
    from flexadr.signing import prebuilt
    assert prebuilt("oadrResponse", answer) is None


def test_ids_find_what_an_xpath_per_attribute_name_finds():
    """Ids (one pass over the document) against signxml's lookup: one XPath per name."""
    document = etree.fromstring(
        '<r xmlns:x="urn:x"><a Id="s" x:Id="s"/><b ID="s"/><c id="p"><d x:id="p"/></c>'
        '<e Id="t"/><f Id="s"/></r>')
    ids = Ids(document)
    for name in ("Id", "ID", "id"):
        xpath = etree.XPath(f"//*[@*[local-name() = '{name}'] = $id]")
        for value in ("s", "p", "t", "absent"):
            assert ids.named(value, name) == xpath(document, id=value)
    assert [element.tag for element in ids.named("s")] == ["a", "f"]
