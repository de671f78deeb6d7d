"""TLS as the 2.0b profile certifies it: the two Alliance suites, ECC and RSA
certificates served by one VTN, nothing older than TLS 1.2, no anonymous clients.

The clients are Python `ssl` sockets offering exactly one suite each, like
`openssl s_client -tls1_2 -cipher ...`.
"""
import asyncio
import socket
import ssl
from datetime import timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certs.pki import ensure_dev_pki, issue
from flexadr.clock import SystemClock
from flexadr.demo import _free_port
from vtn.service import Vtn, VtnConfig


@pytest.fixture
async def dual_vtn(tmp_path, store):
    pki = ensure_dev_pki(tmp_path / "pki", ["ven-1"])
    rsa_cert = issue(pki.ca, tmp_path / "pki" / "rsa", "vtn", server=True, key_type="rsa")
    port = _free_port()
    config = VtnConfig("TEST_VTN", "127.0.0.1", port, pki.vtn.cert, pki.vtn.key, pki.ca.cert,
                       poll_interval=timedelta(seconds=1), tls_profile="openadr",
                       alt_cert=rsa_cert.cert, alt_key=rsa_cert.key)
    server = Vtn(config, store, SystemClock())
    await server.start(run_ticker=False)
    yield pki, port
    await server.stop()


def _handshake(port, pki, *, cipher=None, version=ssl.TLSVersion.TLSv1_2, client_cert=True):
    """Connect in a thread-free blocking way; return (cipher name, server key object)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(str(pki.ca.cert))
    context.minimum_version = context.maximum_version = version
    # Level 0: the client offers what it is told to (even TLS 1.1); only the VTN refuses.
    context.set_ciphers(f"{cipher or 'ALL'}:@SECLEVEL=0")
    if client_cert:
        paths = pki.vens["ven-1"]
        context.load_cert_chain(str(paths.cert), str(paths.key))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls_socket:
            # TLS 1.3 and a refused client certificate only show at the first read.
            tls_socket.sendall(b"GET / HTTP/1.0\r\n\r\n")
            tls_socket.recv(1)
            der = tls_socket.getpeercert(binary_form=True)
            return tls_socket.cipher()[0], x509.load_der_x509_certificate(der).public_key()


@pytest.mark.parametrize("cipher, key_class", [("ECDHE-ECDSA-AES128-SHA256", ec.EllipticCurvePublicKey),
                                                ("AES128-SHA256", rsa.RSAPublicKey)])
async def test_both_alliance_suites_negotiate_each_with_its_certificate(dual_vtn, cipher, key_class):
    pki, port = dual_vtn
    negotiated, key = await asyncio.to_thread(_handshake, port, pki, cipher=cipher)
    assert negotiated == cipher
    assert isinstance(key, key_class)


@pytest.mark.parametrize("cipher", ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384",
                                    "AES256-SHA256"])
async def test_the_openadr_profile_refuses_other_suites(dual_vtn, cipher):
    pki, port = dual_vtn
    with pytest.raises(ssl.SSLError):
        await asyncio.to_thread(_handshake, port, pki, cipher=cipher)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_3])
async def test_the_openadr_profile_speaks_only_tls_1_2(dual_vtn, version):
    pki, port = dual_vtn
    with pytest.raises(ssl.SSLError):
        await asyncio.to_thread(_handshake, port, pki, version=version)


async def test_a_client_without_a_certificate_is_refused(dual_vtn):
    pki, port = dual_vtn
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        await asyncio.to_thread(_handshake, port, pki, client_cert=False)


async def test_the_default_profile_adds_tls_1_3_and_keeps_the_alliance_suites(tmp_path, store):
    pki = ensure_dev_pki(tmp_path / "pki", ["ven-1"])
    port = _free_port()
    server = Vtn(VtnConfig("TEST_VTN", "127.0.0.1", port, pki.vtn.cert, pki.vtn.key, pki.ca.cert),
                 store, SystemClock())
    await server.start(run_ticker=False)
    try:
        modern, _ = await asyncio.to_thread(_handshake, port, pki, version=ssl.TLSVersion.TLSv1_3)
        alliance, _ = await asyncio.to_thread(_handshake, port, pki,
                                              cipher="ECDHE-ECDSA-AES128-SHA256")
    finally:
        await server.stop()
    assert modern.startswith("TLS_")
    assert alliance == "ECDHE-ECDSA-AES128-SHA256"
