"""`vtn certs`: a pilot CA whose certificates carry real mutual TLS, fingerprints as
openleadr computes them, and the import of a production chain with intermediates."""
import asyncio
import ssl
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from openleadr.utils import certificate_fingerprint

from certs.pki import CertPaths, create_ca, issue
from vtn.cli import main


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["certs", *argv])
    out, err = capsys.readouterr()
    return code, out, err


async def handshake(server: CertPaths, server_trust: Path, client: CertPaths,
                    client_trust: Path) -> str:
    """Mutual TLS over loopback as the VTN and a VEN do it; returns the client's view of
    the server certificate's common name."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(server_trust))
    server_ctx.load_cert_chain(str(server.cert), str(server.key))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client_ctx = ssl.create_default_context(cafile=str(client_trust))
    client_ctx.load_cert_chain(str(client.cert), str(client.key))

    async def answer(reader, writer):
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_ctx)
    port = listener.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                                       server_hostname="localhost")
        assert await reader.read() == b"ok"
        peer = writer.get_extra_info("peercert")
        writer.close()
    finally:
        listener.close()
    return dict(item[0] for item in peer["subject"])["commonName"]


@pytest.mark.parametrize("key_type, key_class", [("ecc", ec.EllipticCurvePrivateKey),
                                                 ("rsa", rsa.RSAPrivateKey)])
async def test_a_pilot_pki_keeps_the_ca_key_apart_and_carries_mutual_tls(
        tmp_path, capsys, key_type, key_class):
    ca, pki = tmp_path / "ca", tmp_path / "pki"
    folders = ["--ca", str(ca), "--pki", str(pki), "--key-type", key_type]
    assert run(capsys, "init", *folders)[0] == 0
    code, out, _ = run(capsys, "issue-vtn", *folders)
    assert code == 0
    vtn_fingerprint = certificate_fingerprint((pki / "vtn.crt").read_text())
    assert f"fingerprint {vtn_fingerprint}" in out
    assert run(capsys, "issue-ven", "ven-001", *folders)[0] == 0

    assert sorted(p.name for p in ca.iterdir()) == ["ca.crt", "ca.key"]
    assert not list(pki.rglob("ca.key"))                      # the CA key is not with them
    assert (ca.stat().st_mode & 0o777) == 0o700
    for key in (ca / "ca.key", pki / "vtn.key", pki / "vens" / "ven-001.key"):
        assert (key.stat().st_mode & 0o777) == 0o600
        assert isinstance(serialization.load_pem_private_key(key.read_bytes(), None), key_class)
    ven = CertPaths(pki / "vens" / "ven-001.crt", pki / "vens" / "ven-001.key")
    vtn = CertPaths(pki / "vtn.crt", pki / "vtn.key")
    assert await handshake(vtn, pki / "ca.crt", ven, pki / "ca.crt") == "vtn"

    code, out, _ = run(capsys, "fingerprint", str(vtn.cert), str(ven.cert))
    assert code == 0 and out.splitlines() == [
        f"{vtn_fingerprint}  {vtn.cert}", f"{certificate_fingerprint(ven.cert.read_text())}  "
                                          f"{ven.cert}"]


def test_mistakes_are_one_line_and_overwrite_nothing(tmp_path, capsys):
    ca, pki = tmp_path / "ca", tmp_path / "pki"
    code, _, err = run(capsys, "issue-ven", "ven-1", "--ca", str(ca), "--pki", str(pki))
    assert code == 2 and err == (f"vtn: {ca / 'ca.crt'}: no such file (run `vtn certs init "
                                 f"--ca {ca}` first, or give --ca)\n")
    assert run(capsys, "init", "--ca", str(ca), "--pki", str(pki))[0] == 0
    before = (ca / "ca.key").read_bytes()
    code, _, err = run(capsys, "init", "--ca", str(ca), "--pki", str(pki))
    assert code == 2 and "already exists" in err and (ca / "ca.key").read_bytes() == before
    code, _, err = run(capsys, "fingerprint", str(ca / "ca.key"))
    assert code == 2 and err == f"vtn: {ca / 'ca.key'}: not a PEM certificate\n"


def _ca(folder: Path, name: str, parent: CertPaths | None = None) -> CertPaths:
    """A CA as the OpenADR Alliance PKI has them: a root (path length 1) over issuing
    CAs for VTNs and VENs (path length 0)."""
    now = datetime.now(timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer, signer = subject, key
    if parent is not None:
        issuer = x509.load_pem_x509_certificate(parent.cert.read_bytes()).subject
        signer = serialization.load_pem_private_key(parent.key.read_bytes(), None)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0 if parent else 1),
                           critical=True)
            .sign(signer, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    paths = CertPaths(folder / "ca.crt", folder / "ca.key")
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    return paths


async def test_a_production_chain_is_imported_with_its_intermediates(tmp_path, capsys):
    root = _ca(tmp_path / "alliance" / "root", "test root CA")
    intermediate = _ca(tmp_path / "alliance" / "vtn-ca", "test VTN CA", parent=root)
    issued = issue(intermediate, tmp_path / "issued", "vtn", server=True)
    pki = tmp_path / "pki"
    code, out, _ = run(capsys, "import", "--pki", str(pki), str(root.cert),
                       str(intermediate.cert), "--cert", str(issued.cert), "--key", str(issued.key))
    assert code == 0 and out.count("added ") == 2
    bundle = x509.load_pem_x509_certificates((pki / "ca.crt").read_bytes())
    assert [c.subject.rfc4514_string() for c in bundle] == ["CN=test root CA", "CN=test VTN CA"]
    chain = x509.load_pem_x509_certificates((pki / "vtn.crt").read_bytes())
    assert [c.subject.rfc4514_string() for c in chain] == ["CN=vtn,O=flexadr", "CN=test VTN CA"]
    assert f"fingerprint {certificate_fingerprint(issued.cert.read_text())}" in out
    # a client that trusts only the root accepts the VTN: the intermediate is sent with it
    client = issue(intermediate, tmp_path / "issued", "ven-1")
    assert await handshake(CertPaths(pki / "vtn.crt", pki / "vtn.key"), pki / "ca.crt", client,
                           root.cert) == "vtn"
    code, out, _ = run(capsys, "import", "--pki", str(pki), str(root.cert))
    assert code == 0 and "already holds every CA certificate" in out


def test_an_import_that_cannot_chain_or_match_is_refused(tmp_path, capsys):
    root = create_ca(tmp_path / "root", "test root CA")
    stranger = create_ca(tmp_path / "stranger", "another CA")
    issued = issue(stranger, tmp_path / "issued", "vtn", server=True)
    pki = tmp_path / "pki"
    code, _, err = run(capsys, "import", "--pki", str(pki), str(root.cert), "--cert",
                       str(issued.cert), "--key", str(issued.key))
    assert code == 2 and err == (f"vtn: {issued.cert}: issuer CN=another CA,O=flexadr is not "
                                 f"in {pki / 'ca.crt'} (import its chain first)\n")
    code, _, err = run(capsys, "import", "--pki", str(pki), str(stranger.cert), "--cert",
                       str(issued.cert), "--key", str(root.key))
    assert code == 2 and err == f"vtn: {root.key}: not the key of {issued.cert}\n"
    assert not (pki / "vtn.crt").exists()
