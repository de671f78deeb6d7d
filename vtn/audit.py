"""The audit trail: who changed what, when, with the values before and after.

Every state change an operator makes (events, enrolments, VEN access, operator inputs,
rule overrides) writes one AuditEntry through `record`, in the session of the change
itself: inside `Store.transaction()` the row and the change commit or roll back together,
so a refused or failed change leaves no row, and no change is stored without its row.
"""
from __future__ import annotations

import getpass
import json
import os
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from sqlmodel import Session, SQLModel, select

from flexadr.clock import Clock, SystemClock
from vtn.store import AuditEntry

DEFAULT_LIMIT = 10_000


@dataclass(frozen=True)
class Actor:
    """Who acts, and the role that decides what they may do (see dispatch_rules.can_override)."""
    name: str
    role: str


# Today's identities: the one shared admin token and the CLI's OS user (both admins).
ADMIN_TOKEN = Actor("admin-token", "admin")
SYSTEM = Actor("vtn", "system")          # the VTN's own calls (no person behind them)


def cli_actor() -> Actor:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):      # a container's uid without a passwd entry or $USER
        user = f"uid{os.getuid()}"
    return Actor(f"cli:{user}", "admin")


def record(session: Session, *, actor: str, action: str, subject_type: str, subject_id: str,
           before: dict | None, after: dict | None, reason: str | None = None,
           clock: Clock | None = None) -> None:
    """Add one audit row to the caller's session (flushed, not committed: the caller's
    transaction commits it with the change). The time is UTC from the clock."""
    session.add(AuditEntry(at=(clock or SystemClock()).now(), actor=actor, action=action,
                           subject_type=subject_type, subject_id=subject_id,
                           before=_dumps(before), after=_dumps(after), reason=reason))
    session.flush()


def query(session: Session, *, actor: str | None = None, action: str | None = None,
          subject_type: str | None = None, subject_id: str | None = None,
          since: datetime | None = None, until: datetime | None = None,
          limit: int = DEFAULT_LIMIT) -> list[AuditEntry]:
    """Audit rows, oldest first; since inclusive, until exclusive."""
    statement = select(AuditEntry)
    for column, value in ((AuditEntry.actor, actor), (AuditEntry.action, action),
                          (AuditEntry.subject_type, subject_type),
                          (AuditEntry.subject_id, subject_id)):
        if value is not None:
            statement = statement.where(column == value)
    if since is not None:
        statement = statement.where(AuditEntry.at >= since)
    if until is not None:
        statement = statement.where(AuditEntry.at < until)
    return list(session.exec(statement.order_by(AuditEntry.at, AuditEntry.id).limit(limit)))


def snapshot(row: SQLModel | None) -> dict | None:
    """A stored row as the JSON-ready dict an audit row keeps as before/after."""
    return None if row is None else row.model_dump(mode="json")


def as_dict(entry: AuditEntry) -> dict[str, Any]:
    """An audit row for export: before/after decoded, time in ISO 8601 UTC."""
    return {"id": entry.id, "at": _z(entry.at), "actor": entry.actor,
            "action": entry.action, "subject_type": entry.subject_type,
            "subject_id": entry.subject_id, "before": _loads(entry.before),
            "after": _loads(entry.after), "reason": entry.reason}


def _z(when: datetime) -> str:
    return when.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _dumps(values: dict | None) -> str | None:
    return None if values is None else json.dumps(values, sort_keys=True, default=_json_default)


def _loads(text: str | None) -> dict | None:
    return None if text is None else json.loads(text)


def _json_default(value):
    if isinstance(value, datetime):
        return _z(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON: give the audit a plain value")
