"""Development PKI: a CA, one VTN server certificate and one certificate per VEN.

ECDSA P-256 by default: openleadr reloads the signing key for every message,
which costs ~1.5 ms with P-256 and ~90 ms with RSA-2048.
"""
from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Iterable, Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from openleadr.utils import certificate_fingerprint

KeyType = Literal["ecdsa", "rsa"]
VALIDITY = timedelta(days=825)


@dataclass(frozen=True)
class CertPaths:
    cert: Path
    key: Path

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.cert.read_bytes())


def fingerprint(cert_pem: bytes | str) -> str:
    """The OpenADR fingerprint: last 10 bytes of the SHA-256 of the DER certificate."""
    return certificate_fingerprint(cert_pem)


def _new_key(key_type: KeyType):
    if key_type == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown key type {key_type!r} (use 'ecdsa' or 'rsa')")


def _write(paths: CertPaths, cert: x509.Certificate, key) -> CertPaths:
    paths.cert.parent.mkdir(parents=True, exist_ok=True)
    paths.key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                            serialization.PrivateFormat.PKCS8,
                                            serialization.NoEncryption()))
    paths.key.chmod(0o600)
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return paths


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "flexadr"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def create_ca(directory: Path, common_name: str = "flexadr dev CA",
              key_type: KeyType = "ecdsa", now: datetime | None = None) -> CertPaths:
    now = now or datetime.now(timezone.utc)
    key = _new_key(key_type)
    name = _name(common_name)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return _write(CertPaths(directory / "ca.crt", directory / "ca.key"), cert, key)


def issue(ca: CertPaths, directory: Path, common_name: str, *, server: bool = False,
          hosts: Iterable[str] = ("localhost", "127.0.0.1"), key_type: KeyType = "ecdsa",
          now: datetime | None = None) -> CertPaths:
    """Issue a certificate signed by `ca`. Server certificates carry `hosts` as SANs."""
    now = now or datetime.now(timezone.utc)
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    key = _new_key(key_type)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (x509.CertificateBuilder()
               .subject_name(_name(common_name)).issuer_name(ca_cert.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(minutes=5))
               .not_valid_after(now + VALIDITY)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(_sans(hosts)), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    stem = common_name.replace(" ", "_")
    return _write(CertPaths(directory / f"{stem}.crt", directory / f"{stem}.key"), cert, key)


def _sans(hosts: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


@dataclass(frozen=True)
class DevPki:
    root: Path
    ca: CertPaths
    vtn: CertPaths
    vens: dict[str, CertPaths]


def ensure_dev_pki(root: Path, ven_names: Iterable[str], key_type: KeyType = "ecdsa") -> DevPki:
    """Create (or reuse) a CA, a VTN certificate and one certificate per VEN under `root`."""
    root = Path(root)
    ca = CertPaths(root / "ca.crt", root / "ca.key")
    if not (ca.cert.exists() and ca.key.exists()):
        ca = create_ca(root, key_type=key_type)
    vtn = CertPaths(root / "vtn.crt", root / "vtn.key")
    if not vtn.cert.exists():
        vtn = issue(ca, root, "vtn", server=True, key_type=key_type)
    vens = {}
    for name in ven_names:
        paths = CertPaths(root / "vens" / f"{name}.crt", root / "vens" / f"{name}.key")
        vens[name] = paths if paths.cert.exists() else issue(ca, root / "vens", name, key_type=key_type)
    return DevPki(root, ca, vtn, vens)


# --- revocation ------------------------------------------------------------------------------

def crl_path(ca: CertPaths) -> Path:
    """Where the CA's certificate revocation list lives: next to its certificate."""
    return ca.cert.with_suffix(".crl")


def revoked_serials(crl_file: Path) -> set[int]:
    if not crl_file.exists():
        return set()
    crl = x509.load_pem_x509_crl(crl_file.read_bytes())
    return {entry.serial_number for entry in crl}


def write_crl(ca: CertPaths, crl_file: Path | None = None, serials: Iterable[int] = (),
              now: datetime | None = None) -> Path:
    """(Re)issue the CA's CRL with `serials` added to those already revoked.

    Valid until the CA itself expires, so a forgotten refresh never locks every VEN out.
    A TLS server that loaded the previous list checks against the newest valid one (by
    lastUpdate, whole seconds, not in the future): a second list within the same second
    waits for the next one."""
    crl_file = crl_file or crl_path(ca)
    ca_key = serialization.load_pem_private_key(ca.key.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    entries: dict[int, datetime] = {}
    previous = x509.load_pem_x509_crl(crl_file.read_bytes()) if crl_file.exists() else None
    if previous is not None:
        entries = {e.serial_number: e.revocation_date_utc for e in previous}
    if now is None:
        now = datetime.now(timezone.utc)
        if previous is not None and now < previous.last_update_utc + timedelta(seconds=1):
            time.sleep((previous.last_update_utc + timedelta(seconds=1) - now).total_seconds())
            now = datetime.now(timezone.utc)
    now = now.replace(microsecond=0)
    for serial in serials:
        entries.setdefault(serial, now)
    builder = (x509.CertificateRevocationListBuilder()
               .issuer_name(ca_cert.subject)
               .last_update(now)
               .next_update(max(ca_cert.not_valid_after_utc, now + timedelta(days=1))))
    for serial, when in sorted(entries.items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build())
    crl = builder.sign(ca_key, hashes.SHA256())
    crl_file.parent.mkdir(parents=True, exist_ok=True)
    crl_file.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return crl_file


def revoke(ca: CertPaths, cert_pem: bytes, crl_file: Path | None = None,
           now: datetime | None = None) -> Path:
    """Add a certificate the CA issued to the CA's CRL; ValueError if another CA issued it."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    ca_cert = x509.load_pem_x509_certificate(ca.cert.read_bytes())
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise ValueError(f"the certificate ({cert.subject.rfc4514_string()}) was not issued "
                         f"by this CA") from None
    return write_crl(ca, crl_file, [cert.serial_number], now)
