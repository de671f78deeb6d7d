"""The notification outbox in the database: store changes fanned out to deliveries, claimed
and finished so that several VTN processes on one database send each notification once.

`fan_out` turns ObjectChange rows (written by the store in the transaction of the change,
whichever edge, command or planner made it) into Oadr3Delivery rows: one per matching
webhook subscription and one per MQTT topic, each with the Notification body as that
subscriber may see it (a VEN: only events it is a target of, targets down to its own name).
`claim` leases due rows to one sender; `finish` records each outcome.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable, Sequence

from sqlalchemy import delete, or_, update
from sqlmodel import Session, select

from vtn.openadr31 import mapping
from vtn.openadr31.auth import VEN
from vtn.openadr31.notify.topics import Topics
from vtn.openadr31.settings import NotifySettings
from vtn.store import (Event, EventTarget, EventTransition, Oadr3Client, Oadr3Delivery,
                       Oadr3Subscription, ObjectChange, Store, Ven)

WEBHOOK, MQTT = "webhook", "mqtt"
FAN_OUT_BATCH = 50          # changes per transaction
CLAIM_BATCH = 500           # deliveries per claim


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    error: str | None = None        # None: delivered
    permanent: bool = False         # no retry (e.g. the address is refused)


def fan_out(store: Store, topics: Topics | None, now: datetime) -> int:
    """Expand undelivered changes into deliveries, in one transaction; returns how many
    changes. The claiming UPDATE comes first, so on SQLite the transaction holds the write
    lock from its start and on PostgreSQL another process skips the locked rows."""
    token = uuid.uuid4().hex
    with store.transaction(), store.session() as s:
        pending = (select(ObjectChange.id).where(ObjectChange.fanned_out.is_(False))
                   .order_by(ObjectChange.id).limit(FAN_OUT_BATCH)
                   .with_for_update(skip_locked=True))
        s.exec(update(ObjectChange).where(ObjectChange.id.in_(pending.scalar_subquery()),
                                          ObjectChange.fanned_out.is_(False))
               .values(fanned_out=True, claimed_by=token))
        changes = s.exec(select(ObjectChange).where(ObjectChange.claimed_by == token)
                         .order_by(ObjectChange.id)).all()
        if changes:
            subscribers = _subscribers(s)
            for change in changes:
                s.add_all(_deliveries(s, change, subscribers, topics, now))
        s.commit()
    return len(changes)


@dataclass(frozen=True)
class _Subscriber:
    subscription: Oadr3Subscription
    operations: list[dict]          # the subscription's objectOperations
    ven: Ven | None                 # a VEN client's VEN; None for business logic
    is_ven: bool


def _subscribers(s: Session) -> list[_Subscriber]:
    clients = {c.client_id: c for c in s.exec(select(Oadr3Client)).all()}
    vens = {v.client_id: v for v in s.exec(select(Ven).where(Ven.client_id.is_not(None))).all()}
    found = []
    for row in s.exec(select(Oadr3Subscription).order_by(Oadr3Subscription.created_at)).all():
        client = clients.get(row.client_id)
        if client is None:          # a deleted client's subscriptions are dead
            continue
        found.append(_Subscriber(row, json.loads(row.body).get("objectOperations", []),
                                 vens.get(row.client_id), client.role == VEN))
    return found


def _deliveries(s: Session, change: ObjectChange, subscribers: Sequence[_Subscriber],
                topics: Topics | None, now: datetime) -> Iterable[Oadr3Delivery]:
    event = s.get(Event, change.object_id) if change.object_type == "EVENT" else None
    if event is None:
        return
    targets = s.exec(select(Ven).join(EventTarget, EventTarget.ven_id == Ven.ven_id)
                     .where(EventTarget.event_id == event.event_id)
                     .order_by(Ven.ven_name)).all()
    names = [ven.ven_name for ven in targets]
    # VENs never see a planned event: not its creation, changes or withdrawal.
    seen_by_vens = s.exec(select(EventTransition.id).where(
        EventTransition.event_id == event.event_id, EventTransition.note == "published",
        EventTransition.at <= change.at)).first() is not None
    ven_operation = "CREATE" if change.note == "published" else change.operation

    def row(channel, target, operation, own_name=None, subscription=None, token=None):
        shown = mapping.event_json(event, [own_name] if own_name else names)
        body = {"objectType": "EVENT", "operation": operation, "object": shown}
        return Oadr3Delivery(change_id=change.id, channel=channel, target=target,
                             subscription_id=subscription, bearer_token=token,
                             body=json.dumps(body), next_attempt_at=now)

    for sub in subscribers:
        subscription = sub.subscription
        if subscription.created_at > change.at or subscription.program_id not in (
                None, event.program_id):
            continue
        if sub.is_ven:
            if sub.ven is None or not seen_by_vens or sub.ven.ven_name not in names:
                continue
            operation, own = ven_operation, sub.ven.ven_name
        else:
            operation, own = change.operation, None
        for wanted in sub.operations:
            if "EVENT" in wanted.get("objects", ()) and operation in wanted.get("operations", ()):
                yield row(WEBHOOK, wanted["callbackUrl"], operation, own,
                          subscription.subscription_id, wanted.get("bearerToken"))
    if topics is None:
        return
    for topic in (topics.events(change.operation),
                  topics.program_events(event.program_id, change.operation)):
        yield row(MQTT, topic, change.operation)
    if seen_by_vens:
        for ven in targets:
            yield row(MQTT, topics.ven_events(ven.ven_id, ven_operation), ven_operation,
                      ven.ven_name)


def claim(store: Store, channel: str, now: datetime, lease: timedelta,
          limit: int = CLAIM_BATCH) -> list[Oadr3Delivery]:
    """Due deliveries of `channel`, leased to this caller until now + lease."""
    token = uuid.uuid4().hex
    claimable = (Oadr3Delivery.channel == channel, Oadr3Delivery.delivered_at.is_(None),
                 Oadr3Delivery.failed_at.is_(None), Oadr3Delivery.next_attempt_at <= now,
                 or_(Oadr3Delivery.claimed_until.is_(None), Oadr3Delivery.claimed_until < now))
    with store.transaction(), store.session() as s:
        due = (select(Oadr3Delivery.id).where(*claimable).order_by(Oadr3Delivery.id)
               .limit(limit).with_for_update(skip_locked=True))
        s.exec(update(Oadr3Delivery).where(Oadr3Delivery.id.in_(due.scalar_subquery()),
                                           *claimable)
               .values(claimed_by=token, claimed_until=now + lease,
                       attempts=Oadr3Delivery.attempts + 1))
        rows = s.exec(select(Oadr3Delivery).where(Oadr3Delivery.claimed_by == token)
                      .order_by(Oadr3Delivery.id)).all()
        s.commit()
    return list(rows)


def retry_after(attempts: int, settings: NotifySettings) -> timedelta:
    """Exponential backoff: first_retry, doubled per failed attempt, at most max_retry."""
    return min(settings.first_retry * (2 ** max(attempts - 1, 0)), settings.max_retry)


def finish(store: Store, claimed: Sequence[Oadr3Delivery], outcomes: Sequence[Outcome],
           now: datetime, settings: NotifySettings) -> None:
    """Record each outcome, if this caller still holds the row's lease."""
    rows = {row.id: row for row in claimed}
    with store.transaction(), store.session() as s:
        for outcome in outcomes:
            row = rows[outcome.delivery_id]
            mine = (Oadr3Delivery.id == row.id, Oadr3Delivery.claimed_by == row.claimed_by)
            if outcome.error is None:
                values = {"delivered_at": now, "claimed_until": None, "last_error": None}
            elif outcome.permanent or row.attempts >= settings.max_attempts:
                values = {"failed_at": now, "claimed_until": None, "last_error": outcome.error}
            else:
                values = {"next_attempt_at": now + retry_after(row.attempts, settings),
                          "claimed_until": None, "last_error": outcome.error}
            s.exec(update(Oadr3Delivery).where(*mine).values(**values))
        s.commit()


def purge(store: Store, now: datetime, keep: timedelta) -> None:
    """Delivered and given-up rows older than `keep` go, and changes left with none."""
    before = now - keep
    with store.transaction(), store.session() as s:
        s.exec(delete(Oadr3Delivery).where(or_(Oadr3Delivery.delivered_at < before,
                                               Oadr3Delivery.failed_at < before)))
        s.exec(delete(ObjectChange).where(
            ObjectChange.fanned_out.is_(True), ObjectChange.at < before,
            ObjectChange.id.not_in(select(Oadr3Delivery.change_id).scalar_subquery())))
        s.commit()
