"""Connections between polls: our VEN keeps its TLS connection past the poll interval, the
VTN keeps it longer still, and a reconnect resumes the TLS session."""
import asyncio
import ssl
from datetime import timedelta

import pytest

from certs.pki import ensure_dev_pki
from flexadr import tls
from flexadr.clock import SystemClock
from flexadr.demo import _free_port
from tests.test_security import PATH, _agent
from vtn.service import Vtn, VtnConfig
from vtn.store import Ven

POLL = timedelta(seconds=30)


@pytest.fixture
async def vtn(tmp_path, store):
    pki = ensure_dev_pki(tmp_path / "pki", ["ven-1"])
    store.enrol(Ven(ven_id="ven-1", ven_name="ven-1", fingerprint=pki.vens["ven-1"].fingerprint,
                    program_id="connected_solutions", device_kind="battery"))
    port = _free_port()
    server = Vtn(VtnConfig("TEST_VTN", "127.0.0.1", port, pki.vtn.cert, pki.vtn.key, pki.ca.cert,
                           poll_interval=POLL), store, SystemClock())
    await server.start(run_ticker=False)
    yield pki, server, f"https://127.0.0.1:{port}{PATH}"
    await server.stop()


def _open_connections(server: Vtn) -> list:
    return list(server.server.app_runner.server.connections)


async def test_the_ven_keeps_its_connection_between_polls_and_the_vtn_longer(vtn, tmp_path):
    pki, server, url = vtn
    agent = _agent("ven-1", pki.vens["ven-1"].cert, pki.vens["ven-1"].key, pki.ca.cert, url,
                   pki.vtn.fingerprint, tmp_path)
    await agent.start()
    try:
        assert agent.registered
        # Idle for longer than the 1 s after which the VEN used to close its connection.
        await asyncio.sleep(1.5)
        connections = _open_connections(server)
        assert len(connections) == 1
        assert connections[0].keepalive_timeout == 2 * POLL.total_seconds() + 10
        # ... and holds a 32 KiB TLS read buffer while idle, not asyncio's 256 KiB.
        tls_protocol = connections[0].transport._ssl_protocol
        assert len(tls_protocol._ssl_buffer) == tls.TLS_READ_BUFFER == 32 * 1024
        connector = agent.link.client.client_session.connector
        assert connector.limit_per_host == 2
        await agent.link.client._poll()     # the next poll, on the same connection
        assert _open_connections(server) == connections
    finally:
        await agent.stop()


async def test_the_idle_timeout_is_configurable():
    config = VtnConfig("V", "127.0.0.1", 1, *(["x"] * 3), poll_interval=POLL,
                       idle_connection=timedelta(seconds=300))
    assert config.idle_connection_s() == 300


@pytest.mark.parametrize("profile", ["default", "openadr"])
async def test_a_reconnect_resumes_the_tls_session_with_the_client_certificate(tmp_path, profile):
    pki = ensure_dev_pki(tmp_path / "pki", ["ven-1"])
    server_context = tls.server_context(profile, [tls.CertKey(pki.vtn.cert, pki.vtn.key)],
                                        pki.ca.cert)
    seen = []

    async def answer(reader, writer):
        await reader.readexactly(4)
        connection = writer.get_extra_info("ssl_object")
        seen.append((connection.session_reused, connection.getpeercert(binary_form=True)))
        writer.write(b"pong")
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    port = listener.sockets[0].getsockname()[1]
    client = tls.client_context(profile, tls.CertKey(pki.vens["ven-1"].cert, pki.vens["ven-1"].key),
                                pki.ca.cert)
    try:
        for _ in range(3):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"pong"
            writer.close()
    finally:
        listener.close()
    assert [reused for reused, _ in seen] == [False, True, True]
    # A resumed session still carries the VEN's certificate (the message path checks it).
    der = ssl.PEM_cert_to_DER_cert(pki.vens["ven-1"].cert.read_text())
    assert [certificate for _, certificate in seen] == [der] * 3


@pytest.mark.parametrize("profile", ["default", "openadr"])
async def test_a_first_handshake_that_timed_out_does_not_spoil_the_next_ones(tmp_path, profile):
    """A VEN that starts while the VTN's port takes connections but does not answer (the
    VTN busy or still starting): the session of that unfinished handshake must not be
    offered later ("i2d() failed" on every reconnect: the VEN was cut off for good)."""
    pki = ensure_dev_pki(tmp_path / "pki", ["ven-1"])
    server_context = tls.server_context(profile, [tls.CertKey(pki.vtn.cert, pki.vtn.key)],
                                        pki.ca.cert)
    reused = []

    async def silent(reader, _writer):
        await reader.read()

    async def answer(reader, writer):
        await reader.readexactly(4)
        reused.append(writer.get_extra_info("ssl_object").session_reused)
        writer.write(b"pong")
        await writer.drain()
        writer.close()

    mute = await asyncio.start_server(silent, "127.0.0.1", 0)
    listener = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    client = tls.client_context(profile, tls.CertKey(pki.vens["ven-1"].cert, pki.vens["ven-1"].key),
                                pki.ca.cert)
    try:
        with pytest.raises((ConnectionAbortedError, TimeoutError)):
            await asyncio.open_connection("127.0.0.1", mute.sockets[0].getsockname()[1],
                                          ssl=client, ssl_handshake_timeout=0.5)
        for _ in range(2):
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", listener.sockets[0].getsockname()[1], ssl=client)
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"pong"
            writer.close()
    finally:
        mute.close()
        listener.close()
    assert reused == [False, True]
