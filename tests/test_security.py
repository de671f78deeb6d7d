"""Who may talk to the VTN: certificates from our CA, enrolled, with valid signatures."""
import ssl
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from openleadr import enums
from openleadr.messaging import create_message, parse_message

from certs.pki import create_ca, ensure_dev_pki, issue
from flexadr import xsd
from flexadr.clock import SystemClock
from flexadr.demo import _free_port
from ven.agent import AgentConfig, VenAgent
from vtn import metrics
from vtn.service import Vtn, VtnConfig
from vtn.store import Ven

PATH = "/OpenADR2/Simple/2.0b"
NOT_AUTHORIZED = enums.STATUS_CODES.NOT_REGISTERED_OR_AUTHORIZED  # 463


@pytest.fixture
async def vtn(tmp_path, store):
    pki = ensure_dev_pki(tmp_path / "pki", ["enrolled", "not-enrolled"])
    store.enrol(Ven(ven_id="enrolled", ven_name="enrolled", fingerprint=pki.vens["enrolled"].fingerprint,
                    program_id="connected_solutions", device_kind="battery"))
    port = _free_port()
    server = Vtn(VtnConfig("TEST_VTN", "127.0.0.1", port, pki.vtn.cert, pki.vtn.key, pki.ca.cert,
                           poll_interval=timedelta(seconds=1)), store, SystemClock())
    await server.start()
    yield pki, store, f"https://127.0.0.1:{port}{PATH}"
    await server.stop()


def _agent(name, cert, key, ca_file, url, vtn_fingerprint, state_dir):
    config = AgentConfig(ven_name=name, vtn_url=url, cert=cert, key=key, ca_file=ca_file,
                         vtn_fingerprint=vtn_fingerprint, adapter="sim",
                         adapter_config=dict(kind="battery", capacity_kwh=13.5, soc_pct=80,
                                             max_charge_kw=5, max_discharge_kw=5,
                                             charge_target_pct=None),
                         capacity_kwh=13.5, max_discharge_kw=5,
                         state_url=f"sqlite:///{state_dir / 'ven.sqlite'}")
    return VenAgent(config, SystemClock())


async def _post(url: str, service: str, message: str, cert: Path, key: Path, ca: Path):
    context = ssl.create_default_context(cafile=str(ca))
    context.load_cert_chain(str(cert), str(key))
    async with aiohttp.ClientSession(headers={"content-type": "application/xml"}) as session:
        async with session.post(f"{url}/{service}", data=message, ssl=context) as response:
            return response.status, await response.text()


async def test_enrolled_ven_registers(vtn, tmp_path):
    pki, store, url = vtn
    agent = _agent("enrolled", pki.vens["enrolled"].cert, pki.vens["enrolled"].key, pki.ca.cert,
                   url, pki.vtn.fingerprint, tmp_path)
    await agent.start()
    try:
        assert agent.registered
        assert store.ven("enrolled").registration_id == agent.link.client.registration_id
    finally:
        await agent.stop()


async def test_certificate_from_another_ca_cannot_register(vtn, tmp_path):
    pki, store, url = vtn
    rogue_ca = create_ca(tmp_path / "rogue", common_name="rogue CA")
    rogue = issue(rogue_ca, tmp_path / "rogue", "enrolled")
    agent = _agent("enrolled", rogue.cert, rogue.key, pki.ca.cert, url, pki.vtn.fingerprint, tmp_path)
    await agent.start()
    try:
        assert not agent.registered
        assert store.ven("enrolled").registration_id is None
    finally:
        await agent.stop()


async def test_certificate_of_our_ca_that_is_not_enrolled_is_refused(vtn):
    pki, store, url = vtn
    paths = pki.vens["not-enrolled"]
    message = create_message("oadrCreatePartyRegistration", cert=paths.cert.read_bytes(),
                             key=paths.key.read_bytes(), request_id="r1", ven_name="not-enrolled",
                             profile_name="2.0b", transport_name="simpleHttp", transport_address=None,
                             report_only=False, xml_signature=True, http_pull_model=True)
    status, body = await _post(url, "EiRegisterParty", message, paths.cert, paths.key, pki.ca.cert)
    assert status == 200
    xsd.validate(body)
    message_type, payload = parse_message(body)
    assert payload["response"]["response_code"] == NOT_AUTHORIZED
    assert "not enrolled" in payload["response"]["response_description"]
    assert store.ven_by_name("not-enrolled") is None


def _tamper(message: str, old: str, new: str) -> str:
    assert old in message
    return message.replace(old, new, 1)


async def test_registration_with_a_broken_signature_is_rejected(vtn):
    pki, store, url = vtn
    paths = pki.vens["enrolled"]
    message = create_message("oadrCreatePartyRegistration", cert=paths.cert.read_bytes(),
                             key=paths.key.read_bytes(), request_id="r1", ven_name="enrolled",
                             profile_name="2.0b", transport_name="simpleHttp", transport_address=None,
                             report_only=False, xml_signature=True, http_pull_model=True)
    broken = _tamper(message, "<oadr:oadrVenName>enrolled</oadr:oadrVenName>",
                     "<oadr:oadrVenName>enrolled </oadr:oadrVenName>")
    failures = metrics.SIGNATURE_FAILURES._value.get()
    status, body = await _post(url, "EiRegisterParty", broken, paths.cert, paths.key, pki.ca.cert)
    assert metrics.SIGNATURE_FAILURES._value.get() == failures + 1
    xsd.validate(body)   # the middleware's own 463 answer is valid 2.0b too
    _, payload = parse_message(body)
    assert payload["response"]["response_code"] == NOT_AUTHORIZED
    assert "signature" in payload["response"]["response_description"]
    assert store.ven("enrolled").registration_id is None


async def test_poll_with_a_broken_signature_is_rejected_and_changes_nothing(vtn, tmp_path):
    pki, store, url = vtn
    paths = pki.vens["enrolled"]
    agent = _agent("enrolled", paths.cert, paths.key, pki.ca.cert, url, pki.vtn.fingerprint, tmp_path)
    await agent.start()
    await agent.stop()
    registration = store.ven("enrolled").registration_id
    message = create_message("oadrCancelPartyRegistration", cert=paths.cert.read_bytes(),
                             key=paths.key.read_bytes(), request_id="r2", ven_id="enrolled",
                             registration_id=registration)
    broken = _tamper(message, ">r2</requestID>", ">r3</requestID>")
    status, body = await _post(url, "EiRegisterParty", broken, paths.cert, paths.key, pki.ca.cert)
    # The answer is the profile's pair of the request, with the code and the requestID.
    assert status == 200
    xsd.validate(body)
    message_type, payload = parse_message(body)
    assert message_type == "oadrCanceledPartyRegistration"
    assert payload["response"]["response_code"] == NOT_AUTHORIZED
    assert payload["response"]["request_id"] == "r3"
    assert payload["ven_id"] == "enrolled"
    assert store.ven("enrolled").registration_id == registration


async def test_malformed_xml_gets_a_clear_error(vtn):
    pki, store, url = vtn
    paths = pki.vens["enrolled"]
    status, body = await _post(url, "OadrPoll", "<oadrPayload><unclosed>", paths.cert, paths.key,
                               pki.ca.cert)
    assert status == 200
    xsd.validate(body)
    message_type, payload = parse_message(body)
    assert message_type == "oadrResponse"
    assert payload["response"]["response_code"] == 400
    assert "not well-formed XML" in payload["response"]["response_description"]
