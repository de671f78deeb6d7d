"""The VEN's oadrCreatePartyRegistration says what the VEN does: it signs, and it pulls."""
from lxml import etree
from openleadr import messaging

from certs.pki import ensure_dev_pki
from flexadr import xsd
from ven.openadr20b.client import FlexClient

OADR = "{http://openadr.org/oadr-2.0b/2012/07}"


def _capture_sent(client: FlexClient) -> list[str]:
    """What the client sends, kept instead of posted (there is no VTN here)."""
    sent = []

    async def capture(service, message):
        sent.append(message)
        return None, {}
    client._perform_request = capture
    return sent


def _client(tmp_path) -> FlexClient:
    pki = ensure_dev_pki(tmp_path, ["ven-1"])
    return FlexClient(ven_name="ven-1", vtn_url="https://127.0.0.1:1/OpenADR2/Simple/2.0b",
                      cert=str(pki.vens["ven-1"].cert), key=str(pki.vens["ven-1"].key),
                      show_fingerprint=False)


async def test_a_signing_pull_ven_says_it_signs_and_sends_no_transport_address(tmp_path):
    client = _client(tmp_path)
    sent = _capture_sent(client)
    await client.create_party_registration(ven_id=None, request_id="r1")
    tree = xsd.validate(sent[0])
    messaging.validate_xml_signature(tree)                    # signed, and still verifies
    assert tree.findtext(f".//{OADR}oadrXmlSignature") == "true"
    assert tree.find(f".//{OADR}oadrTransportAddress") is None
    assert b">None<" not in etree.tostring(tree)


async def test_an_address_the_ven_has_is_kept(tmp_path):
    client = _client(tmp_path)
    sent = _capture_sent(client)
    await client.create_party_registration(transport_address="https://ven-1.example/oadr",
                                           request_id="r1")
    tree = xsd.validate(sent[0])
    assert tree.findtext(f".//{OADR}oadrTransportAddress") == "https://ven-1.example/oadr"
