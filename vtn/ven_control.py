"""An operator's control of a VEN: disable, enable, revoke; cancel its registration or ask
it to register again (both queued for its next poll). Shared by the admin API and the CLI,
which act on the store, so they work whether or not a VTN process is running. Each action
and its audit row are one transaction."""
from __future__ import annotations

from datetime import date
from typing import Callable, Sequence

from flexadr.clock import Clock
from vtn import audit
from vtn.audit import Actor
from vtn.store import Enrolment, Store, Ven

CANCEL_REGISTRATION = "oadrCancelPartyRegistration"
REQUEST_REREGISTRATION = "oadrRequestReregistration"


class UnknownVen(LookupError):
    pass


class NotAllowed(ValueError):
    """The VEN is not in a state where the action applies (e.g. enabling a revoked VEN)."""


def refusal(ven: Ven, enrolments: Sequence[Enrolment], today: date) -> str | None:
    """Why the VTN refuses this VEN's requests (pure), or None if it serves them."""
    if ven.revoked_at is not None:
        return "revoked"
    if ven.disabled_at is not None:
        return "disabled" + (f" ({ven.disabled_reason})" if ven.disabled_reason else "")
    ended = [e.unenrolled_on for e in enrolments]
    if ended and all(day is not None and day <= today for day in ended):
        return f"unenrolled since {max(ended)}"
    return None


def refusal_of(store: Store, ven: Ven, clock: Clock) -> str | None:
    return refusal(ven, store.enrolments(ven_id=ven.ven_id, active_only=False),
                   clock.now().date())


def _ven(store: Store, ven_id: str) -> Ven:
    ven = store.ven(ven_id)
    if ven is None:
        raise UnknownVen(f"no VEN {ven_id}")
    return ven


def disable(store: Store, ven_id: str, clock: Clock, actor: Actor,
            reason: str | None = None) -> Ven:
    def act(ven: Ven) -> Ven:
        if ven.revoked_at is not None:
            raise NotAllowed(f"VEN {ven_id} is revoked")
        return store.set_access(ven_id, clock.now(), reason)
    return _audited(store, ven_id, clock, actor, "ven.disable", act, reason)


def enable(store: Store, ven_id: str, clock: Clock, actor: Actor) -> Ven:
    def act(ven: Ven) -> Ven:
        if ven.revoked_at is not None:
            raise NotAllowed(f"VEN {ven_id} is revoked for good: enrol a new certificate")
        return store.set_access(ven_id, None, None)
    return _audited(store, ven_id, clock, actor, "ven.enable", act)


def revoke(store: Store, ven_id: str, clock: Clock, actor: Actor,
           reason: str | None = None) -> Ven:
    """Disable for good (`vtn certs revoke` puts its certificate on the CA's CRL)."""
    def act(ven: Ven) -> Ven:
        now = clock.now()
        return store.set_access(ven_id, ven.disabled_at or now, reason or ven.disabled_reason,
                                revoked_at=now)
    return _audited(store, ven_id, clock, actor, "ven.revoke", act, reason)


def cancel_registration(store: Store, ven_id: str, clock: Clock, actor: Actor) -> Ven:
    """Queue oadrCancelPartyRegistration; the registration ends when the VEN confirms it."""
    def act(ven: Ven) -> Ven:
        if ven.registration_id is None:
            raise NotAllowed(f"VEN {ven_id} is not registered")
        store.enqueue(ven_id, CANCEL_REGISTRATION, {"registration_id": ven.registration_id},
                      clock.now())
        return ven
    return _audited(store, ven_id, clock, actor, "ven.cancel_registration", act)


def request_reregistration(store: Store, ven_id: str, clock: Clock, actor: Actor) -> Ven:
    """Queue oadrRequestReregistration: the VEN registers again at its next poll."""
    def act(ven: Ven) -> Ven:
        why = refusal_of(store, ven, clock)
        if why is not None:
            raise NotAllowed(f"VEN {ven_id} is {why}")
        store.enqueue(ven_id, REQUEST_REREGISTRATION, {}, clock.now())
        return ven
    return _audited(store, ven_id, clock, actor, "ven.reregister", act)


def _audited(store: Store, ven_id: str, clock: Clock, actor: Actor, action: str,
             act: Callable[[Ven], Ven], reason: str | None = None) -> Ven:
    """Run `act` on the VEN and write its audit row, in one transaction (a refusal: neither)."""
    with store.transaction():
        ven = _ven(store, ven_id)
        before = audit.snapshot(ven)
        after = act(ven)
        with store.session() as session:
            audit.record(session, actor=actor.name, action=action, subject_type="ven",
                         subject_id=ven_id, before=before, after=audit.snapshot(after),
                         reason=reason, clock=clock)
    return after
