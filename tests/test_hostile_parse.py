"""The one reader of incoming bodies (flexadr.oadr_xml): what it refuses before lxml sees a
byte, and that its payload is openleadr's, identifiers aside, without a second parse."""
import pytest
from openleadr import messaging, utils

from flexadr import oadr_xml, xsd
from flexadr.signing import MessageSigner
from tests.hostile_fuzz import corpus, distribute_event
from tests.hostile_peer import pki_for

OADR = 'xmlns:oadr="http://openadr.org/oadr-2.0b/2012/07"'


@pytest.fixture(scope="module")
def signer(tmp_path_factory):
    pki = pki_for(tmp_path_factory.mktemp("pki"))
    return MessageSigner.from_files(pki.vens["ven-h"].cert, pki.vens["ven-h"].key)


@pytest.mark.parametrize("body, reason", [
    (b'<!DOCTYPE p [<!ENTITY e "x">]><p>&e;</p>', "DOCTYPE"),
    (b'<p><!ENTITY e "x"></p>', "ENTITY"),
    (b'<?xml version="1.0" encoding="UTF-16"?><p/>', "UTF-16"),
    (b"<p>\xff\xfe</p>", "not UTF-8"),
    (b"<p>" * (oadr_xml.MAX_DEPTH + 1) + b"</p>" * (oadr_xml.MAX_DEPTH + 1), "deeper"),
    (b"<p>" + b"x" * oadr_xml.MAX_BYTES + b"</p>", "bytes"),
    (b"", "not well-formed"),
    (b"<p><q></p>", "not well-formed"),
])
def test_refused_before_lxml_or_by_a_parser_without_dtds(body, reason):
    with pytest.raises(oadr_xml.Malformed, match=reason):
        oadr_xml.parse(body)


def test_comments_and_processing_instructions_are_left_out_of_the_payload(signer):
    body = signer("oadrPoll", ven_id="ven-h")
    body = body.replace("<oadr:oadrPoll", "<!-- c --><?pi x?><oadr:oadrPoll", 1)
    assert oadr_xml.payload(oadr_xml.parse(body.encode())) == ("oadrPoll", {"ven_id": "ven-h"})


def _ids_as_sent(node, key=""):
    """openleadr's dict with its numeric reading of identifiers undone (as sent: no "0042")."""
    if isinstance(node, dict):
        return {k: _ids_as_sent(v, k) for k, v in node.items()}
    if isinstance(node, list):
        return [_ids_as_sent(v, key) for v in node]
    if key.endswith(("_id", "_name")) and isinstance(node, (int, float)) and not isinstance(node, bool):
        return str(node)
    return node


def test_the_payload_is_openleadrs_for_every_message_type(signer):
    messages = [(t, p) for _, t, p in corpus()] + [distribute_event()]
    for message_type, payload in messages:
        body = signer(message_type, **payload).encode()
        tree = oadr_xml.parse(body)
        xsd.check(tree)
        stock_type, stock = messaging.parse_message(body)
        assert oadr_xml.payload(tree) == (stock_type, _ids_as_sent(stock)), message_type


def test_identifiers_stay_the_strings_they_were_sent_as(signer):
    body = signer("oadrCancelOpt", request_id="0042", ven_id="true", opt_id="1.5").encode()
    message_type, payload = oadr_xml.payload(oadr_xml.parse(body))
    assert (payload["request_id"], payload["ven_id"], payload["opt_id"]) == ("0042", "true", "1.5")
    _, stock = messaging.parse_message(body)
    assert (stock["request_id"], stock["ven_id"], stock["opt_id"]) == (42, True, 1.5)


@pytest.mark.parametrize("ven_id", ["ven-h", "0042", "true", "1.5", "a&b<c"])
def test_a_poll_reads_as_the_general_path_reads_it(signer, ven_id):
    """The oadrPoll shortcut of oadr_xml.payload gives what normalize_dict would."""
    tree = oadr_xml.parse(signer("oadrPoll", ven_id=ven_id).encode())
    message = tree.find("{http://openadr.org/oadr-2.0b/2012/07}oadrSignedObject")[0]
    general = oadr_xml._restore(utils.normalize_dict(oadr_xml._as_dict(message)))
    assert oadr_xml.payload(tree) == ("oadrPoll", general) == ("oadrPoll", {"ven_id": ven_id})
