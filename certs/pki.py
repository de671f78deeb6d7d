"""PKI for pilots and development: a CA, one VTN server certificate and one certificate
per VEN (`vtn certs`, `make demo`, the tests); and the import of a production chain.

On disk (`Layout`): the CA's certificate and private key in their own folder (`ca/`,
to keep offline), and what the VTN and VENs use in another (`pki/`):

    ca/ca.crt ca/ca.key                 the CA (key 0600, folder 0700)
    pki/ca.crt                          trust bundle: the CA, or a production root + intermediates
    pki/vtn.crt pki/vtn.key             the VTN's server certificate (+ intermediates) and key
    pki/vens/NAME.crt pki/vens/NAME.key one per VEN

ECDSA P-256 by default: openleadr reloads the signing key for every message,
which costs ~1.5 ms with P-256 and ~90 ms with RSA-2048.
"""
from __future__ import annotations

import ipaddress
import os
import shutil
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
    """The OpenADR fingerprint: last 10 bytes of the SHA-256 of the DER certificate
    (openleadr's); of the first certificate when the file holds a chain."""
    text = cert_pem.decode() if isinstance(cert_pem, bytes) else cert_pem
    end = text.find(PEM_END)
    return certificate_fingerprint(text[:end + len(PEM_END)] if end >= 0 else text)


PEM_END = "-----END CERTIFICATE-----"


def _new_key(key_type: KeyType):
    if key_type == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown key type {key_type!r} (use 'ecdsa' or 'rsa')")


def _write(paths: CertPaths, cert: x509.Certificate, key) -> CertPaths:
    paths.cert.parent.mkdir(parents=True, exist_ok=True)
    write_private(paths.key, key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return paths


def write_private(path: Path, data: bytes) -> None:
    """A private key, readable by its owner only from the first byte."""
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        out.write(data)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "flexadr"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def create_ca(directory: Path, common_name: str = "flexadr dev CA",
              key_type: KeyType = "ecdsa", now: datetime | None = None) -> CertPaths:
    now = now or datetime.now(timezone.utc)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
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
    # Both usages: in the 2.0b push exchange model the VTN connects to the VEN, so each
    # side is a TLS server and a TLS client (OpenSSL checks the purpose against the EKU).
    usage = ([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if server
             else [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH])
    builder = (x509.CertificateBuilder()
               .subject_name(_name(common_name)).issuer_name(ca_cert.subject)
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - timedelta(minutes=5))
               .not_valid_after(now + VALIDITY)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage(usage), critical=False))
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
class Layout:
    """Where `vtn certs` and the dev PKI keep each file (see the module docstring)."""
    ca_dir: Path
    pki_dir: Path

    @property
    def ca(self) -> CertPaths:
        return CertPaths(self.ca_dir / "ca.crt", self.ca_dir / "ca.key")

    @property
    def bundle(self) -> Path:
        return self.pki_dir / "ca.crt"

    @property
    def vtn(self) -> CertPaths:
        return CertPaths(self.pki_dir / "vtn.crt", self.pki_dir / "vtn.key")

    def ven(self, name: str) -> CertPaths:
        return CertPaths(self.pki_dir / "vens" / f"{name}.crt", self.pki_dir / "vens" / f"{name}.key")

    def init(self, common_name: str = "flexadr pilot CA", key_type: KeyType = "ecdsa") -> CertPaths:
        ca = create_ca(self.ca_dir, common_name, key_type)
        self.pki_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(ca.cert, self.bundle)
        return ca

    def issue_vtn(self, hosts: Iterable[str] = ("localhost", "127.0.0.1"),
                  key_type: KeyType = "ecdsa") -> CertPaths:
        return issue(self.ca, self.pki_dir, "vtn", server=True, hosts=hosts, key_type=key_type)

    def issue_ven(self, name: str, key_type: KeyType = "ecdsa") -> CertPaths:
        return issue(self.ca, self.pki_dir / "vens", name, key_type=key_type)


@dataclass(frozen=True)
class DevPki:
    root: Path
    ca: CertPaths
    vtn: CertPaths
    vens: dict[str, CertPaths]


def ensure_dev_pki(root: Path, ven_names: Iterable[str], key_type: KeyType = "ecdsa") -> DevPki:
    """Create (or reuse) a CA (in root/ca), a VTN certificate and one certificate per VEN
    under `root`: what `vtn certs init`, `issue-vtn` and `issue-ven` make."""
    layout = Layout(Path(root) / "ca", Path(root))
    if not (layout.ca.cert.exists() and layout.ca.key.exists()):
        layout.init("flexadr dev CA", key_type)
    vtn = layout.vtn if layout.vtn.cert.exists() else layout.issue_vtn(key_type=key_type)
    vens = {}
    for name in ven_names:
        paths = layout.ven(name)
        vens[name] = paths if paths.cert.exists() else layout.issue_ven(name, key_type)
    return DevPki(layout.pki_dir, layout.ca, vtn, vens)


# --- production certificates (OpenADR Alliance PKI) --------------------------

class CertError(ValueError):
    """A certificate or key file that cannot be used; the message names the file."""


def file_fingerprint(path: Path) -> str:
    """`fingerprint` of a certificate file."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise CertError(f"{path}: no such file") from None
    except OSError as err:
        raise CertError(f"{path}: cannot read: {err.strerror}") from None
    try:
        return fingerprint(data)
    except ValueError:
        raise CertError(f"{path}: not a PEM certificate") from None


def read_certificates(path: Path) -> list[x509.Certificate]:
    try:
        found = x509.load_pem_x509_certificates(Path(path).read_bytes())
    except ValueError:
        raise CertError(f"{path}: no PEM certificate in it") from None
    return found


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def import_chain(layout: Layout, chains: Iterable[Path]) -> list[x509.Certificate]:
    """Add the CA certificates (root, intermediates) of `chains` to the trust bundle; leaf
    certificates in them are skipped. Returns the ones added (already there: skipped)."""
    bundle = read_certificates(layout.bundle) if layout.bundle.exists() else []
    known = {c.fingerprint(hashes.SHA256()) for c in bundle}
    added = []
    for path in chains:
        for cert in read_certificates(path):
            if _is_ca(cert) and cert.fingerprint(hashes.SHA256()) not in known:
                known.add(cert.fingerprint(hashes.SHA256()))
                added.append(cert)
    if added:
        layout.pki_dir.mkdir(parents=True, exist_ok=True)
        with layout.bundle.open("ab") as out:
            for cert in added:
                out.write(cert.public_bytes(serialization.Encoding.PEM))
    return added


def install(paths: CertPaths, cert_file: Path, key_file: Path, trust: Path) -> CertPaths:
    """Install a certificate issued elsewhere (the Alliance's CA) at `paths`: its key must
    match and it must chain to the bundle `trust`; written as leaf + intermediates, as a
    TLS server sends them."""
    leaf, *rest = read_certificates(cert_file)
    try:
        key = serialization.load_pem_private_key(Path(key_file).read_bytes(), None)
    except (ValueError, TypeError):
        raise CertError(f"{key_file}: not an unencrypted PEM private key") from None
    der = serialization.PublicFormat.SubjectPublicKeyInfo
    if (key.public_key().public_bytes(serialization.Encoding.DER, der)
            != leaf.public_key().public_bytes(serialization.Encoding.DER, der)):
        raise CertError(f"{key_file}: not the key of {cert_file}")
    pool = rest + read_certificates(trust)
    chain, current = [leaf], leaf
    while not _issued_by(current, current):
        issuer = next((c for c in pool if c not in chain and _issued_by(current, c)), None)
        if issuer is None:
            raise CertError(f"{cert_file}: issuer {current.issuer.rfc4514_string()} is not in "
                             f"{trust} (import its chain first)")
        chain.append(issuer)
        current = issuer
    paths.cert.parent.mkdir(parents=True, exist_ok=True)
    sent = chain[:-1] or chain          # the root stays out, unless the leaf is the root
    paths.cert.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in sent))
    write_private(paths.key, Path(key_file).read_bytes())
    return paths


# --- revocation ------------------------------------------------------------------------------

def crl_path(ca: CertPaths) -> Path:
    """Where the CA's certificate revocation list lives: next to its certificate."""
    return ca.cert.with_suffix(".crl")


def revoked_serials(crl_file: Path) -> set[int]:
    if not crl_file.exists():
        return set()
    crl = x509.load_pem_x509_crl(crl_file.read_bytes())
    return {entry.serial_number for entry in crl}


class RevokedSerials:
    """`revoked_serials` of a CRL file, parsed again only when the file changes: checking
    every message against the current list then costs a stat, not a PEM parse."""

    def __init__(self, crl_file: Path):
        self.crl_file = crl_file
        self._seen: tuple[int, int] | None = None
        self._serials: set[int] = set()

    def __call__(self) -> set[int]:
        try:
            stat = self.crl_file.stat()
        except FileNotFoundError:
            return set()
        if (stat.st_mtime_ns, stat.st_size) != self._seen:
            self._serials = revoked_serials(self.crl_file)
            self._seen = (stat.st_mtime_ns, stat.st_size)
        return self._serials


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
    if not _issued_by(cert, ca_cert):
        raise ValueError(f"the certificate ({cert.subject.rfc4514_string()}) was not issued "
                         f"by this CA")
    return write_crl(ca, crl_file, [cert.serial_number], now)
