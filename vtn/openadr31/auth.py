"""OAuth 2.0 client credentials for the 3.1 edge: clients, hashed secrets, JWT access tokens.

A client is either business logic (BL: the utility's systems, carte blanche on reads,
the only writer of programs and events and the only one who grants targets) or a VEN
(tied to one enrolled Ven row through Ven.client_id). Tokens are HS256 JWTs signed
with the edge's token secret; the clientID is the token's `sub`, and each request looks
the client up again, so deleting a client revokes its tokens at once.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from sqlmodel import select

from vtn.openadr31.problems import Problem
from vtn.store import Oadr3Client, Store, Ven

BL, VEN = "bl", "ven"
READ_ALL, READ_TARGETS, READ_VEN_OBJECTS = "read_all", "read_targets", "read_ven_objects"
WRITE_PROGRAMS, WRITE_EVENTS, WRITE_REPORTS = "write_programs", "write_events", "write_reports"
WRITE_SUBSCRIPTIONS, WRITE_VENS = "write_subscriptions", "write_vens"
SCOPES = (READ_ALL, READ_TARGETS, READ_VEN_OBJECTS, WRITE_PROGRAMS, WRITE_EVENTS, WRITE_REPORTS,
          WRITE_SUBSCRIPTIONS, WRITE_VENS)
# What each role may hold (securitySchemes in openadr3.yaml: "only BL ...", "only VENs ...").
ROLE_SCOPES = {
    BL: (READ_ALL, READ_TARGETS, READ_VEN_OBJECTS, WRITE_PROGRAMS, WRITE_EVENTS,
         WRITE_SUBSCRIPTIONS, WRITE_VENS),
    VEN: (READ_TARGETS, READ_VEN_OBJECTS, WRITE_REPORTS, WRITE_SUBSCRIPTIONS, WRITE_VENS),
}
_SCRYPT = {"n": 2 ** 14, "r": 8, "p": 1}
MQTT_PBKDF2_ITERATIONS = 101     # what mosquitto_passwd 2.0 writes
_ALGORITHM = "HS256"
_EXTERNAL_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
EXTERNAL = "external"     # secret_hash of a client whose tokens come from an external server


class ClientError(ValueError):
    """A client cannot be created as asked (one line for the CLI)."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: from a verified token and the client row behind it."""
    client_id: str
    role: str
    scopes: frozenset[str]
    ven_id: str | None          # the VEN client's enrolled VEN, if it is linked to one

    @property
    def is_bl(self) -> bool:
        return self.role == BL

    def require(self, scope: str) -> None:
        # read_all is BL's read-everything scope: it covers both narrower read scopes.
        if scope in self.scopes or (scope in (READ_TARGETS, READ_VEN_OBJECTS)
                                    and READ_ALL in self.scopes):
            return
        raise Problem(403, f"this operation needs the scope {scope}; the token has "
                           f"{' '.join(sorted(self.scopes)) or 'none'}")

    def require_bl(self, what: str) -> None:
        if not self.is_bl:
            raise Problem(403, f"only a business-logic (BL) client {what}")


def broker_password_hash(secret: str) -> str:
    """The MQTT broker's hash of the same secret, as `mosquitto_passwd` writes it ($7$,
    PBKDF2-SHA512), for `vtn mqtt acl` (vtn/openadr31/notify/mqtt.py)."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, MQTT_PBKDF2_ITERATIONS, 64)
    return (f"$7${MQTT_PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}"
            f"${base64.b64encode(digest).decode()}")


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def verify_secret(secret: str, stored: str) -> bool:
    if not stored.startswith("scrypt$"):
        return False          # an external client has no secret here
    _, n, r, p, salt, digest = stored.split("$")
    candidate = hashlib.scrypt(secret.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r),
                               p=int(p))
    return hmac.compare_digest(candidate.hex(), digest)


def create_client(store: Store, client_id: str, role: str, at: datetime,
                  ven_id: str | None = None, scopes: tuple[str, ...] | None = None,
                  external: bool = False) -> tuple[Oadr3Client, str | None]:
    """Store a new client with a fresh secret; returns it and the secret (shown only once).

    ven_id links a VEN client to an enrolled VEN (its 3.1 identity from then on).
    external: the client gets its tokens from the external authorization server, so it
    has no secret here (the row gives its role and the scopes it may use).
    """
    if role not in ROLE_SCOPES:
        raise ClientError(f"role must be {' or '.join(ROLE_SCOPES)}, not {role!r}")
    if not client_id or len(client_id) > 128:
        raise ClientError("a client id needs 1 to 128 characters")
    granted = tuple(scopes) if scopes else ROLE_SCOPES[role]
    not_allowed = [scope for scope in granted if scope not in ROLE_SCOPES[role]]
    if not_allowed:
        raise ClientError(f"a {role} client may not hold {', '.join(not_allowed)}")
    if ven_id is not None and role != VEN:
        raise ClientError("only a ven client is tied to a VEN")
    secret = None if external else secrets.token_urlsafe(32)
    client = Oadr3Client(client_id=client_id, role=role, scopes=" ".join(granted),
                         secret_hash=EXTERNAL if external else hash_secret(secret), created_at=at,
                         mqtt_password_hash=None if external else broker_password_hash(secret))
    with store.session() as s:
        if s.get(Oadr3Client, client_id) is not None:
            raise ClientError(f"client {client_id} exists already")
        if ven_id is not None:
            ven = s.get(Ven, ven_id)
            if ven is None:
                raise ClientError(f"no enrolled VEN {ven_id}")
            if ven.client_id not in (None, client_id):
                raise ClientError(f"VEN {ven_id} already belongs to client {ven.client_id}")
            ven.client_id, ven.modified_at = client_id, at
            s.add(ven)
        s.add(client)
        s.commit()
    return client, secret


class ExternalAuthority:
    """An external OAuth 2.0 server's tokens, checked against its JWKS (keys cached)."""

    def __init__(self, jwks_url: str, audience: str | None, issuer: str | None):
        self.keys = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300)
        self.audience, self.issuer = audience, issuer

    def claims(self, token: str) -> dict:
        """Verified claims; raises jwt.InvalidTokenError (or PyJWKClientError)."""
        key = self.keys.get_signing_key_from_jwt(token)
        claims = jwt.decode(token, key.key, algorithms=_EXTERNAL_ALGORITHMS,
                            audience=self.audience, issuer=self.issuer,
                            options={"require": ["exp"], "verify_exp": False,
                                     "verify_aud": self.audience is not None})
        # Servers name the client and the scopes differently (RFC 9068 / Azure / Okta).
        claims["sub"] = claims.get("client_id") or claims.get("azp") or claims.get("sub")
        scopes = claims.get("scope", claims.get("scp", ""))
        claims["scope"] = " ".join(scopes) if isinstance(scopes, list) else str(scopes)
        if not claims["sub"]:
            raise jwt.InvalidTokenError("the token names no client")
        return claims


class TokenIssuer:
    """Issues and verifies the edge's access tokens (and an external server's, if trusted)."""

    def __init__(self, store: Store, secret: str, ttl: timedelta, issuer: str,
                 external: ExternalAuthority | None = None):
        if len(secret.encode()) < 32:
            raise ValueError("the OpenADR 3.1 token secret needs at least 32 bytes")
        self.store, self.secret, self.ttl, self.issuer = store, secret, ttl, issuer
        self.external = external

    def grant(self, client_id: str, client_secret: str, scope: str | None,
              now: datetime) -> dict:
        """The client-credentials grant: a token response, or a Problem with the OAuth error."""
        client = self.store_client(client_id)
        if client is None or not verify_secret(client_secret, client.secret_hash):
            raise Problem(401, "unknown client or wrong secret", error="invalid_client",
                          headers={"WWW-Authenticate": 'Basic realm="openadr3"'})
        allowed = client.scopes.split()
        asked = scope.split() if scope else allowed
        refused = [s for s in asked if s not in allowed]
        if refused:
            raise Problem(400, f"scope: this client may not hold {' '.join(refused)}",
                          [{"field": "scope", "message": "not granted to this client"}],
                          error="invalid_scope")
        return {"access_token": self.issue(client, asked, now),
                "token_type": "Bearer", "expires_in": int(self.ttl.total_seconds()),
                "scope": " ".join(asked)}

    def issue(self, client: Oadr3Client, scopes: list[str], now: datetime) -> str:
        """An access token for a client already authenticated."""
        claims = {"iss": self.issuer, "sub": client.client_id, "role": client.role,
                  "scope": " ".join(scopes), "iat": now, "exp": now + self.ttl}
        return jwt.encode(claims, self.secret, algorithm=_ALGORITHM)

    def principal(self, authorization: str | None, now: datetime) -> Principal:
        """The caller behind an Authorization header, or a 401 Problem."""
        challenge = {"WWW-Authenticate": 'Bearer realm="openadr3"'}
        if not authorization or not authorization.startswith("Bearer "):
            raise Problem(401, "this operation needs a bearer token (POST /auth/token)",
                          headers=challenge)
        try:
            claims = self._claims(authorization[len("Bearer "):].strip())
        except (jwt.InvalidTokenError, jwt.PyJWKClientError) as err:
            raise Problem(401, f"invalid token: {err}", headers=challenge) from None
        if claims["exp"] <= now.timestamp():   # the edge's clock, not the host's, decides
            raise Problem(401, "the token has expired", headers=challenge)
        client = self.store_client(str(claims["sub"]))
        if client is None:
            raise Problem(401, "the token's client no longer exists", headers=challenge)
        with self.store.session() as s:
            ven = s.exec(select(Ven).where(Ven.client_id == client.client_id)).first()
        scopes = frozenset(claims["scope"].split()) & frozenset(client.scopes.split())
        return Principal(client.client_id, client.role, scopes, ven.ven_id if ven else None)

    def _claims(self, token: str) -> dict:
        if self.external is not None and jwt.get_unverified_header(token).get("alg") != _ALGORITHM:
            return self.external.claims(token)
        return jwt.decode(token, self.secret, algorithms=[_ALGORITHM], issuer=self.issuer,
                          options={"require": ["exp", "sub", "scope"], "verify_exp": False,
                                   "verify_iat": False})

    def store_client(self, client_id: str) -> Oadr3Client | None:
        with self.store.session() as s:
            return s.get(Oadr3Client, client_id)
