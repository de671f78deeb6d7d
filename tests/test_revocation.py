"""Revocation and VTN-initiated registration control, against real peers: the CA's CRL at
the TLS handshake, disabled / revoked / unenrolled VENs refused (463) with nothing written,
and oadrCancelPartyRegistration / oadrRequestReregistration reaching a stock openleadr VEN."""
import asyncio
import ssl
from datetime import date

import aiohttp
import pytest
from openleadr import enums

from certs.pki import RevokedSerials, crl_path, ensure_dev_pki, revoked_serials, write_crl
from flexadr.clock import SystemClock
from flexadr.demo import _free_port
from tests.test_openadr_20b import Stock, enrolled_stock_vens, eventually, started_vtn
from tests.test_operator_input import snapshot
from vtn.cli import main
from vtn.programs import ensure_program
from vtn.service import Vtn, VtnConfig
from vtn.store import Enrolment, Participant

TOKEN = "revocation-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOT_AUTHORIZED = enums.STATUS_CODES.NOT_REGISTERED_OR_AUTHORIZED   # 463
NAMES = ["good", "bad", "late"]


async def handshake(port: int, pki, name: str) -> str | None:
    """Open a TLS 1.2 connection with VEN `name`'s certificate: None, or why it failed.

    TLS 1.2 because there the server's verdict on the client certificate ends the
    handshake itself (in 1.3 it arrives after the client thinks it is done). asyncio's
    server drops the connection without an alert, so the reason is not on the wire: the
    tests show the same certificate accepted before its revocation and refused after."""
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(pki.vens[name].cert), str(pki.vens[name].key))
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=context), 10)
    except (ssl.SSLError, ConnectionError) as err:
        return repr(err)
    writer.close()
    return None


async def test_a_revoked_certificate_cannot_complete_the_tls_handshake(tmp_path, store, capsys):
    pki = ensure_dev_pki(tmp_path / "pki", NAMES)
    crl = crl_path(pki.ca)
    revoke = ["certs", "revoke", "--ca-cert", str(pki.ca.cert), "--ca-key", str(pki.ca.key)]
    assert main([*revoke, str(pki.vens["bad"].cert)]) == 0
    assert "revoked" in capsys.readouterr().out and len(revoked_serials(crl)) == 1
    port = _free_port()
    vtn = Vtn(VtnConfig("TEST_VTN", "127.0.0.1", port, pki.vtn.cert, pki.vtn.key, pki.ca.cert,
                        crl_file=crl), store, SystemClock())
    await vtn.start(run_ticker=False)
    try:
        assert await handshake(port, pki, "good") is None
        assert await handshake(port, pki, "bad") is not None
        assert await handshake(port, pki, "late") is None
        # Revoked while the VTN runs: the next tick re-reads the CRL.
        assert main([*revoke, str(pki.vens["late"].cert)]) == 0
        await vtn.tick()
        assert await handshake(port, pki, "late") is not None
        assert await handshake(port, pki, "good") is None
    finally:
        await vtn.stop()
    # Another CA's certificate is refused by `vtn certs revoke`, and the CRL is unchanged.
    other = ensure_dev_pki(tmp_path / "other", ["stranger"])
    assert main([*revoke, str(other.vens["stranger"].cert)]) == 2
    assert "not issued by this CA" in capsys.readouterr().err and len(revoked_serials(crl)) == 2
    assert main([*revoke, str(tmp_path / "missing.crt")]) == 2


def test_the_crl_keeps_its_entries_and_moves_forward(tmp_path):
    from cryptography import x509
    pki = ensure_dev_pki(tmp_path / "pki", [])
    first = x509.load_pem_x509_crl(write_crl(pki.ca, serials=[7]).read_bytes())
    second = x509.load_pem_x509_crl(write_crl(pki.ca, serials=[9]).read_bytes())
    assert revoked_serials(crl_path(pki.ca)) == {7, 9}
    assert second.last_update_utc > first.last_update_utc       # the newest CRL wins
    assert second.next_update_utc >= x509.load_pem_x509_certificate(
        pki.ca.cert.read_bytes()).not_valid_after_utc


# --- disabled VENs, with a stock openleadr client ---------------------------------------------

@pytest.fixture
async def vtn(tmp_path, store):
    pki = enrolled_stock_vens(store, tmp_path / "pki")
    admin_port = _free_port()
    server, url = await started_vtn(store, pki, run_ticker=False, admin_token=TOKEN,
                                    admin_port=admin_port)
    async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{admin_port}",
                                     timeout=aiohttp.ClientTimeout(total=10)) as admin:
        yield server, pki, url, admin
    await server.stop()


@pytest.fixture
async def stock(vtn):
    server, pki, url, _ = vtn
    ven = Stock("stock-1", pki, url)
    await asyncio.wait_for(ven.client.run(), 20)
    yield ven
    await ven.client.stop()


async def _post(admin, path, json=None):
    async with admin.post(path, json=json, headers=AUTH) as response:
        return response.status, await response.json()


async def _code(stock, service, message_type, **payload) -> int:
    """The answer's response code; 200 for a queued message (those carry none)."""
    message = stock.client._create_message(message_type, ven_id="stock-1", **payload)
    kind, response = await asyncio.wait_for(stock.client._perform_request(service, message), 10)
    assert kind is not None
    return response.get("response", {}).get("response_code", 200)


def _refused(stock) -> bool:
    return any(f"<ei:responseCode>{NOT_AUTHORIZED}</ei:responseCode>" in xml
               for xml in stock.received)


async def test_a_disabled_ven_gets_463_writes_nothing_and_enable_restores_it(vtn, stock):
    server, _, _, admin = vtn
    store = server.store
    first = store.ven("stock-1").registration_id
    status, ven = await _post(admin, "/api/vens/stock-1/disable", {"reason": "meter tampering"})
    assert status == 200 and ven["disabled_at"].endswith("Z")
    assert ven["registration_id"] is None and ven["disabled_reason"] == "meter tampering"
    assert all(r.cancelled_at for r in store.report_requests("stock-1"))
    await eventually(lambda: _refused(stock), what="a 463 at the VEN's own poll")
    before = snapshot(store)
    assert await _code(stock, "OadrPoll", "oadrPoll") == NOT_AUTHORIZED
    assert await _code(stock, "EiEvent", "oadrRequestEvent") == NOT_AUTHORIZED
    assert await _code(stock, "EiRegisterParty", "oadrCreatePartyRegistration",
                       ven_name="stock-1", http_pull_model=True, xml_signature=False,
                       report_only=False, profile_name="2.0b",
                       transport_name="simpleHttp", transport_address=None) == NOT_AUTHORIZED
    assert snapshot(store) == before

    status, ven = await _post(admin, "/api/vens/stock-1/enable")
    assert status == 200 and ven["disabled_at"] is None
    # Its next poll is told to register again; it does, with a new registration.
    again = await eventually(lambda: store.ven("stock-1").registration_id, what="registered")
    assert again != first
    await eventually(lambda: stock.client.registration_id == again, what="the VEN knows it")
    assert await _code(stock, "OadrPoll", "oadrPoll") == 200


async def test_a_revoked_ven_cannot_be_enabled_and_unenrolment_is_honoured(vtn, stock):
    server, _, _, admin = vtn
    store = server.store
    status, _ = await _post(admin, "/api/vens/stock-1/revoke", {"reason": "key leaked"})
    assert status == 200 and store.ven("stock-1").revoked_at is not None
    status, body = await _post(admin, "/api/vens/stock-1/enable")
    assert status == 409 and "revoked" in body["error"]
    assert await _code(stock, "OadrPoll", "oadrPoll") == NOT_AUTHORIZED
    status, body = await _post(admin, "/api/vens/ghost/disable")
    assert status == 404

    # stock-2: enrolment ended today -> refused from today.
    ensure_program(store, "connected_solutions")
    store.add_participant(Participant(participant_id="p2", name="P2", household_id="h2",
                                      channel="none"))
    store.add_enrolment(Enrolment(participant_id="p2", program_id="connected_solutions",
                                  ven_id="stock-2", device_kind="battery",
                                  enrolled_on=date(2026, 1, 1), unenrolled_on=date.today()))
    _, pki, url, _ = vtn
    other = Stock("stock-2", pki, url)
    try:
        await asyncio.wait_for(other.client.create_party_registration(), 10)
        assert other.client.registration_id is None
        assert store.ven("stock-2").registration_id is None
        assert any(f">{NOT_AUTHORIZED}<" in xml for xml in other.received)
    finally:
        await other.client.stop()


async def test_the_vtn_cancels_a_registration_and_asks_for_a_reregistration(vtn, stock,
                                                                           database_url,
                                                                           tmp_path, capsys):
    server, pki, _, admin = vtn
    store = server.store
    # CLI: queued in the database, delivered by the running VTN at the next poll.
    toml = tmp_path / "vtn.toml"
    toml.write_text(f'cert = "{pki.vtn.cert}"\nkey = "{pki.vtn.key}"\n'
                    f'ca_file = "{pki.ca.cert}"\ndatabase = "{database_url}"\n')
    registration = store.ven("stock-1").registration_id
    assert main(["vens", "reregister", "--config", str(toml), "stock-1"]) == 0
    await eventually(lambda: "oadrRequestReregistration" in stock.types(), what="re-registration")
    await eventually(lambda: [r for r in store.report_requests("stock-1", active_only=True)
                              if r.created_at > store.ven("stock-1").registered_at],
                     what="reports registered again")
    assert store.ven("stock-1").registration_id == registration == stock.client.registration_id

    # Admin API: oadrCancelPartyRegistration; the VEN confirms and the registration ends.
    status, _ = await _post(admin, "/api/vens/stock-1/cancel-registration")
    assert status == 200
    await eventually(lambda: store.ven("stock-1").registration_id is None,
                     what="registration cancelled")
    assert "oadrCancelPartyRegistration" in stock.types()
    # openleadr forgets its registration once our answer to its confirmation arrives,
    # after the VTN has ended it in the store.
    await eventually(lambda: stock.client.registration_id is None, what="the VEN forgot it")
    assert all(r.cancelled_at for r in store.report_requests("stock-1"))
    status, body = await _post(admin, "/api/vens/stock-1/cancel-registration")
    assert status == 409 and "not registered" in body["error"]
    assert main(["vens", "cancel-registration", "--config", str(toml), "stock-1"]) == 1
    assert "not registered" in capsys.readouterr().err


def test_config_names_the_crl_and_the_admin_listener(tmp_path):
    from vtn import config
    pki = ensure_dev_pki(tmp_path / "pki", [])
    base = (f'cert = "{pki.vtn.cert}"\nkey = "{pki.vtn.key}"\nca_file = "{pki.ca.cert}"\n'
            f'admin_port = 9999\nadmin_host = "10.0.0.5"\n')
    path = tmp_path / "vtn.toml"
    path.write_text(base + f'crl_file = "{crl_path(pki.ca)}"\n')
    with pytest.raises(config.ConfigError, match="crl_file: no such file: .*ca.crl"):
        config.load(path)
    write_crl(pki.ca)
    server = config.load(path).server
    assert (server.crl_file, server.admin_host) == (crl_path(pki.ca), "10.0.0.5")
    assert server.webhook_allow_private is False


def test_revoked_serials_follow_the_crl_file_and_parse_it_only_when_it_changes(
        tmp_path, monkeypatch):
    from certs import pki as pki_module
    pki = ensure_dev_pki(tmp_path / "pki", [])
    current = RevokedSerials(crl_path(pki.ca))
    assert current() == set()                                   # no CRL yet
    write_crl(pki.ca, serials=[7])
    parsed = []
    monkeypatch.setattr(pki_module, "revoked_serials",
                        lambda path: parsed.append(path) or revoked_serials(path))
    assert current() == {7} and current() == {7}
    assert len(parsed) == 1
    write_crl(pki.ca, serials=[9])                              # revoked while running
    assert current() == {7, 9} and len(parsed) == 2
