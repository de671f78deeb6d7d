"""TLS contexts for both ends of an OpenADR 2.0b link.

The 2.0b profile (and the Alliance's test harness) requires TLS 1.2 with exactly
two cipher suites: TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256 for ECC certificates
and TLS_RSA_WITH_AES_128_CBC_SHA256 for RSA ones, and a VTN that holds both an ECC
and an RSA certificate. OpenSSL picks the certificate that fits the suite the
client offered, so one context carries both.

Profiles:
- "openadr": what certification expects, nothing else (TLS 1.2 only, the two suites);
- "default": TLS 1.2 and 1.3 with OpenSSL's modern suites, plus the two Alliance
  suites so a certified peer that offers only those still connects.
"""
from __future__ import annotations

import ssl
from asyncio import sslproto
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

TlsProfile = Literal["default", "openadr"]
PROFILES: tuple[str, ...] = ("default", "openadr")
ALLIANCE_CIPHERS = "ECDHE-ECDSA-AES128-SHA256:AES128-SHA256"
# OpenSSL's TLS 1.2 default list would not include the CBC-SHA256 suites at security level 2.
MODERN_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:" + ALLIANCE_CIPHERS
# asyncio gives every TLS connection a zero-filled 256 KiB read buffer (SSLProtocol.max_size),
# ~300 KiB of resident memory per connection with the rest. A VTN keeps one connection per
# VEN between polls, so that is the node's memory at scale; two TLS records fit in 32 KiB
# and OpenADR messages are small (bench/tls_memory.py measures both sizes).
TLS_READ_BUFFER = 32 * 1024


@dataclass(frozen=True)
class CertKey:
    cert: Path
    key: Path


class ResumingContext(ssl.SSLContext):
    """A client context that resumes its last TLS session with each server.

    asyncio (and so aiohttp) never passes a session to `wrap_bio`, so every reconnect
    of a stock client is a full handshake: the server signs its key exchange and
    verifies the client's certificate chain and CertificateVerify again. This context
    offers the session (TLS 1.3 ticket or 1.2 session) of the newest connection to the
    same host that finished its handshake; the server resumes it if it can (a VTN worker
    that did not issue it starts a full handshake instead), and certificates are checked
    as before when it does not.
    """

    def wrap_bio(self, incoming, outgoing, server_side=False, server_hostname=None,
                 session=None):
        if server_side:
            return super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        if session is None:
            session = self._resumable(server_hostname)
        connection = super().wrap_bio(incoming, outgoing, server_side, server_hostname,
                                      session)
        self.__dict__.setdefault("_newest", {})[server_hostname] = connection
        return connection

    def _resumable(self, server_hostname: str | None):
        """The session of the newest connection to the host that finished its handshake.

        Only a finished handshake's: the session of one that timed out before the
        server's first answer cannot even be offered (CPython copies it, and the copy
        fails), and keeping it would fail every reconnect of this VEN from then on."""
        sessions = self.__dict__.setdefault("_sessions", {})
        newest = self.__dict__.get("_newest", {}).get(server_hostname)
        if newest is not None and newest.version() is not None and newest.session is not None:
            sessions[server_hostname] = newest.session
        return sessions.get(server_hostname)


def server_context(profile: TlsProfile, identities: list[CertKey], ca_file: Path) -> ssl.SSLContext:
    """Mutual-TLS server context: every identity loaded (ECC and RSA side by side)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _apply_profile(context, profile)
    # The client certificate is read once per connection (vtn.security): it must not
    # change under a TLS 1.2 renegotiation.
    context.options |= ssl.OP_NO_RENEGOTIATION
    for identity in identities:
        context.load_cert_chain(str(identity.cert), str(identity.key))
    context.load_verify_locations(str(ca_file))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(profile: TlsProfile, identity: CertKey, ca_file: Path,
                   check_hostname: bool = True) -> ssl.SSLContext:
    context = ResumingContext(ssl.PROTOCOL_TLS_CLIENT)
    _apply_profile(context, profile)
    context.load_cert_chain(str(identity.cert), str(identity.key))
    context.load_verify_locations(str(ca_file))
    context.check_hostname = check_hostname
    return context


def _apply_profile(context: ssl.SSLContext, profile: TlsProfile) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown TLS profile {profile!r} (use one of {', '.join(PROFILES)})")
    sslproto.SSLProtocol.max_size = TLS_READ_BUFFER     # for every asyncio TLS connection
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if profile == "openadr":
        context.maximum_version = ssl.TLSVersion.TLSv1_2
        # RSA key exchange (the second Alliance suite) is below OpenSSL 3's level 2.
        context.set_ciphers(f"{ALLIANCE_CIPHERS}:@SECLEVEL=1")
    else:
        context.set_ciphers(f"{MODERN_CIPHERS}:@SECLEVEL=1")
