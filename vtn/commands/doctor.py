"""`vtn doctor URL`: connect to a VTN as a VEN would and say what happens.

Reports the TLS version and cipher, the VTN's certificate (subject, validity, the
fingerprint a VEN pins as vtn_fingerprint) and its chain up to a root of --ca-file, the
clock skew against the answer's HTTP Date header (1 s resolution; the VTN refuses signed
messages outside its replay window), and the VTN's answer to a signed
oadrQueryRegistration. Exit 0 when the VTN answers 200, 1 when it answers with an OpenADR
error code, 2 (one line on stderr) when there is no OpenADR answer at all: no connection,
a failed handshake, a certificate that does not verify, not OpenADR XML."""
from __future__ import annotations

import http.client
import ssl
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from certs.pki import fingerprint
from flexadr import oadr_xml
from flexadr.signing import MessageSigner
from flexadr.tls import PROFILES, CertKey, client_context

SERVICE = "EiRegisterParty"


class Failed(Exception):
    """No OpenADR answer: the one line to print."""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "doctor", help="connect to a VTN as a VEN and report TLS, certificates, clock and "
                       "its answer to a query registration",
        description=__doc__.split("\n\n")[1])
    parser.add_argument("url", help="the VTN's URL, e.g. https://vtn.example.org:8443/"
                                    "OpenADR2/Simple/2.0b (a VEN's vtn_url)")
    parser.add_argument("--cert", type=Path, required=True, help="the VEN's certificate (PEM)")
    parser.add_argument("--key", type=Path, required=True, help="the VEN's private key (PEM)")
    parser.add_argument("--ca-file", type=Path, required=True,
                        help="the roots (and intermediates) the VTN's certificate chains to")
    parser.add_argument("--tls-profile", choices=PROFILES, default="default",
                        help="openadr: TLS 1.2 and the two Alliance suites only")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds (default 10)")
    parser.set_defaults(func=run)


def run(args) -> int:
    try:
        lines, code = diagnose(args)
    except Failed as err:
        print(f"vtn doctor: {err}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0 if code == 200 else 1


def diagnose(args) -> tuple[list[str], int]:
    host, port, path = _target(args.url)
    context, signer = _client(args)
    conn = http.client.HTTPSConnection(host, port, context=context, timeout=args.timeout)
    try:
        _connect(conn, host, port)
        lines = [f"connected to {host}:{port}", _tls_line(conn.sock)]
        lines += _certificate_lines(conn.sock.getpeercert(binary_form=True), args.ca_file)
        before = time.time()
        status, date, body = _query(conn, path, signer)
        local = datetime.fromtimestamp((before + time.time()) / 2, timezone.utc)
    finally:
        conn.close()
    lines.append(_skew_line(date, local))
    answer, code = _answer(status, body)
    lines.append(f"oadrQueryRegistration: {answer}")
    return lines, code


def _target(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise Failed(f"{url}: not an https:// URL (OpenADR 2.0b runs over mutual TLS)")
    try:
        port = parts.port or 443
    except ValueError as err:
        raise Failed(f"{url}: {err}") from None
    return parts.hostname, port, parts.path.rstrip("/")


def _client(args) -> tuple[ssl.SSLContext, MessageSigner]:
    for flag, path in (("--cert", args.cert), ("--key", args.key), ("--ca-file", args.ca_file)):
        if not path.is_file():
            raise Failed(f"{flag}: no such file: {path}")
    try:
        context = client_context(args.tls_profile, CertKey(args.cert, args.key), args.ca_file)
        signer = MessageSigner.from_files(args.cert, args.key)
    except (ssl.SSLError, ValueError) as err:
        raise Failed(f"--cert/--key/--ca-file: cannot use them: {err}") from None
    return context, signer


def _connect(conn: http.client.HTTPSConnection, host: str, port: int) -> None:
    try:
        conn.connect()
    except ssl.SSLCertVerificationError as err:
        raise Failed(f"TLS: the VTN's certificate does not verify against --ca-file: "
                     f"{err.verify_message}") from None
    except ssl.SSLError as err:
        raise Failed(f"TLS handshake with {host}:{port} failed: {err.reason or err}") from None
    except TimeoutError:
        raise Failed(f"cannot connect to {host}:{port}: timed out") from None
    except OSError as err:
        raise Failed(f"cannot connect to {host}:{port}: {err.strerror or err}") from None


def _tls_line(sock: ssl.SSLSocket) -> str:
    name, _, bits = sock.cipher()
    return f"TLS: {sock.version()}, cipher {name} ({bits} bits)"


def _certificate_lines(der: bytes, ca_file: Path) -> list[str]:
    leaf = x509.load_der_x509_certificate(der)
    pem = leaf.public_bytes(Encoding.PEM)
    lines = [f"VTN certificate: {leaf.subject.rfc4514_string()}, valid "
             f"{leaf.not_valid_before_utc:%Y-%m-%dT%H:%MZ} to "
             f"{leaf.not_valid_after_utc:%Y-%m-%dT%H:%MZ}",
             f"VTN fingerprint: {fingerprint(pem)} (a VEN's vtn_fingerprint)"]
    chain = [leaf] + _issuers(leaf, x509.load_pem_x509_certificates(ca_file.read_bytes()))
    lines.append("chain: " + " <- ".join(c.subject.rfc4514_string() for c in chain)
                 + " (the last from --ca-file)")
    return lines


def _issuers(cert: x509.Certificate, bundle: list[x509.Certificate]) -> list[x509.Certificate]:
    """The issuers of `cert` in `bundle`, up to a self-signed root."""
    chain: list[x509.Certificate] = []
    while cert.issuer != cert.subject and len(chain) < len(bundle):
        issuer = next((c for c in bundle if c.subject == cert.issuer and _signed(cert, c)), None)
        if issuer is None:
            break
        chain.append(issuer)
        cert = issuer
    return chain


def _signed(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, x509.InvalidSignature):
        return False


def _query(conn, path: str, signer: MessageSigner) -> tuple[int, str | None, bytes]:
    body = signer("oadrQueryRegistration", request_id=f"doctor-{uuid.uuid4()}")
    try:
        conn.request("POST", f"{path}/{SERVICE}", body=body.encode(),
                     headers={"Content-Type": "application/xml"})
        response = conn.getresponse()
        return response.status, response.getheader("Date"), response.read()
    except ssl.SSLError as err:       # e.g. the VTN refused our certificate after the handshake
        raise Failed(f"TLS: the VTN ended the session: {err.reason or err}") from None
    except (OSError, http.client.HTTPException) as err:
        raise Failed(f"no HTTP answer to oadrQueryRegistration: {err}") from None


def _skew_line(date: str | None, local: datetime) -> str:
    if date is None:
        return "clock skew: unknown (the answer has no Date header)"
    try:
        vtn_time = parsedate_to_datetime(date)
    except (TypeError, ValueError):
        return f"clock skew: unknown (Date header {date!r})"
    # The header holds whole seconds, truncated: the VTN's time was half a second later
    # on average.
    skew = (vtn_time - local).total_seconds() + 0.5
    return f"clock skew: {round(skew):+d} s, +-1 s (VTN ahead when positive; Date: {date})"


def _answer(status: int, body: bytes) -> tuple[str, int]:
    if status != 200:
        raise Failed(f"HTTP {status} to oadrQueryRegistration, not an OpenADR answer: "
                     f"{body[:200].decode('utf-8', 'replace')!r}")
    try:
        message_type, content = oadr_xml.payload(oadr_xml.parse(body))
    except oadr_xml.Malformed as err:
        raise Failed(f"the answer is not OpenADR XML: {err}") from None
    response = content.get("response") or {}
    code = int(response.get("response_code", 0) or 0)
    parts = [f"{message_type} {code} {response.get('response_description', '')}".rstrip()]
    for key, label in (("vtn_id", "vtnID"), ("ven_id", "venID"),
                       ("registration_id", "registrationID")):
        if content.get(key) is not None:
            parts.append(f"{label} {content[key]}")
    poll = content.get("requested_oadr_poll_freq")
    if isinstance(poll, timedelta):
        parts.append(f"poll every {poll.total_seconds():g} s")
    profiles = content.get("profiles") or []
    if profiles:
        parts.append("profiles " + ", ".join(
            f"{p.get('profile_name')} ({'/'.join(t.get('transport_name', '?') for t in p.get('transports', []))})"
            for p in profiles))
    return ", ".join(parts), code
