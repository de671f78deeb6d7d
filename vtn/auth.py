"""Who is calling the admin plane: users, roles, per-user API tokens and console sessions.

One model for both doors. A user (table console_user) has a role, viewer < operator <
admin, and reaches the admin plane either with a bearer API token (admin API) or with a
console session cookie (/ui). Either way the request gets a Principal, and
`required_role` says what each admin route needs: reads are for every role, changes
(events, opts, VENs, participants, enrolments) for operators, programs and users for admins.

Secrets: passwords are hashed with argon2id (argon2-cffi; slow on purpose, checked once
per login). API tokens and session ids are 256-bit random values checked on every request,
so the database keeps their SHA-256 (a guess is as hard as the value itself; no slow hash
needed, as for GitHub's tokens). The OpenADR 3.1 edge's client secrets (vtn/openadr31/auth.py)
are checked once per token grant and keep their scrypt hash.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlmodel import delete, select

from flexadr.clock import Clock
from vtn import audit
from vtn.store import ADMIN, OPERATOR, ROLES, VIEWER, ApiToken, Store, User, UserSession

TOKEN_PREFIX = "fxa_"          # tells a per-user token from the legacy shared one in logs
SESSION_TTL = timedelta(hours=12)
_HASHER = PasswordHasher()
# Verified when the username is unknown, so a login takes as long either way.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))


class UserError(ValueError):
    """A user change that cannot be made (one line for the CLI, a 400/409 for the API)."""


@dataclass(frozen=True)
class Principal:
    username: str
    role: str
    via: str            # token | session | legacy-token

    def allows(self, needed: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(needed)


def required_role(method: str, path: str) -> str:
    """The least role an admin-plane route needs (path: the route's template)."""
    if method in ("GET", "HEAD"):
        return VIEWER
    if path.startswith(("/api/programs", "/api/users")):
        return ADMIN
    return OPERATOR


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify_password(password: str, stored: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}, not {role!r}")


def _check_password(password: str) -> None:
    if len(password) < 10:
        raise UserError("a password needs at least 10 characters")


def _snapshot(row: User) -> dict:
    """A user as the audit keeps it: never the password hash."""
    return {key: value for key, value in audit.snapshot(row).items() if key != "password_hash"}


def add_user(store: Store, username: str, password: str, role: str, *, actor: str,
             clock: Clock) -> User:
    _check_role(role)
    _check_password(password)
    if not username or len(username) > 64 or not username.replace("-", "").replace(
            "_", "").replace(".", "").replace("@", "").isalnum():
        raise UserError("a username is 1-64 letters, digits and . _ - @")
    with store.session() as s:
        if s.get(User, username) is not None:
            raise UserError(f"user {username} exists already")
        row = User(username=username, password_hash=hash_password(password), role=role,
                   created_at=clock.now())
        s.add(row)
        audit.record(s, actor=actor, action="user.add", subject_type="user",
                     subject_id=username, before=None, after=_snapshot(row), clock=clock)
        s.commit()
    return row


def users(store: Store) -> list[User]:
    with store.session() as s:
        return list(s.exec(select(User).order_by(User.username)).all())


def _change(store: Store, username: str, action: str, *, actor: str, clock: Clock,
            **values) -> User:
    with store.session() as s:
        row = s.get(User, username)
        if row is None:
            raise UserError(f"no user {username}")
        before = _snapshot(row)
        for name, value in values.items():
            setattr(row, name, value)
        s.add(row)
        if row.disabled_at is not None:
            s.exec(delete(UserSession).where(UserSession.username == username))
        audit.record(s, actor=actor, action=action, subject_type="user", subject_id=username,
                     before=before, after=_snapshot(row), clock=clock)
        s.commit()
        return row


def set_role(store: Store, username: str, role: str, *, actor: str, clock: Clock) -> User:
    _check_role(role)
    return _change(store, username, "user.set-role", actor=actor, clock=clock, role=role)


def set_disabled(store: Store, username: str, disabled: bool, *, actor: str,
                 clock: Clock) -> User:
    """Disable or enable a user; disabling ends the user's sessions at once."""
    return _change(store, username, "user.disable" if disabled else "user.enable",
                   actor=actor, clock=clock, disabled_at=clock.now() if disabled else None)


def issue_token(store: Store, username: str, name: str, *, actor: str, clock: Clock) -> str:
    """A new API token for the user: returned once, only its digest is stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with store.session() as s:
        owner = s.get(User, username)
        if owner is None:
            raise UserError(f"no user {username}")
        if owner.disabled_at is not None:
            raise UserError(f"user {username} is disabled")
        row = ApiToken(token_digest=digest(token), username=username, name=name,
                       created_at=clock.now())
        s.add(row)
        audit.record(s, actor=actor, action="user.token", subject_type="user",
                     subject_id=username, before=None,
                     after={"token_name": name, "token_digest_prefix": row.token_digest[:12]},
                     clock=clock)
        s.commit()
    return token


def _active_user(store: Store, username: str) -> User | None:
    with store.session() as s:
        row = s.get(User, username)
    return row if row is not None and row.disabled_at is None else None


def token_principal(store: Store, token: str) -> Principal | None:
    with store.session() as s:
        row = s.get(ApiToken, digest(token))
    if row is None or row.revoked_at is not None:
        return None
    owner = _active_user(store, row.username)
    return Principal(owner.username, owner.role, "token") if owner else None


def login(store: Store, username: str, password: str, at: datetime) -> str | None:
    """A new session id for the cookie, or None (unknown user, wrong password, disabled)."""
    with store.session() as s:
        row = s.get(User, username)
    if row is None:
        verify_password(password, _DUMMY_HASH)
        return None
    if not verify_password(password, row.password_hash) or row.disabled_at is not None:
        return None
    session_id = secrets.token_urlsafe(32)
    with store.session() as s:
        s.exec(delete(UserSession).where(UserSession.expires_at <= at))
        s.add(UserSession(session_digest=digest(session_id), username=username,
                          csrf_token=secrets.token_urlsafe(32), created_at=at,
                          expires_at=at + SESSION_TTL))
        s.commit()
    return session_id


def session_principal(store: Store, session_id: str, at: datetime
                      ) -> tuple[Principal, str] | None:
    """(who, CSRF token) of a live session, or None."""
    with store.session() as s:
        row = s.get(UserSession, digest(session_id))
    if row is None or row.expires_at <= at:
        return None
    owner = _active_user(store, row.username)
    if owner is None:
        return None
    return Principal(owner.username, owner.role, "session"), row.csrf_token


def logout(store: Store, session_id: str) -> None:
    with store.session() as s:
        s.exec(delete(UserSession).where(UserSession.session_digest == digest(session_id)))
        s.commit()


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
