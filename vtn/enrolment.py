"""Enrolling a device (VEN) in a program: one path for the admin API (POST /api/enrolments)
and `vtn enrol`. The program's rules (vtn.enrolment_rules) decide; a new VEN is stored with
its certificate's fingerprint and device resource, and every enrolment is a row."""
from __future__ import annotations

from certs.pki import fingerprint as cert_fingerprint
from flexadr.clock import Clock
from schedules import model
from vtn import audit
from vtn.audit import Actor
from vtn.enrolment_rules import EnrolmentRequest as RuleRequest
from vtn.enrolment_rules import Refusal, check
from vtn.operator_input import EnrolmentRequest, InputError
from vtn.programs import ensure_program
from vtn.store import Enrolment, Resource, Store, Ven


class NotFound(LookupError):
    """No such participant or program (the API's 404)."""


class Conflict(ValueError):
    """The certificate or the program's rules refuse it (the API's 409)."""

    def __init__(self, message: str, refusals: list[Refusal] = ()):
        super().__init__(message)
        self.refusals = list(refusals)


def enrol(store: Store, clock: Clock, body: EnrolmentRequest, actor: Actor) -> Enrolment:
    """Store the enrolment (and a new VEN) with its audit row, in one transaction;
    NotFound, Conflict or InputError when it is refused (nothing stored)."""
    participant = store.participant(body.participant_id)
    if participant is None:
        raise NotFound(f"no participant {body.participant_id}")
    try:
        program = ensure_program(store, body.program_id)
    except (FileNotFoundError, model.ProgramError) as err:
        raise NotFound(f"no program {body.program_id}") from err
    ven = store.ven_by_name(body.ven_name)
    fingerprint = _fingerprint(body)
    if ven is None and not fingerprint:
        raise InputError.one("certificate_pem", "a new VEN needs certificate_pem or fingerprint")
    if ven is not None and fingerprint and fingerprint != ven.fingerprint:
        raise Conflict(f"VEN {body.ven_name} is enrolled with another certificate")
    if ven is None and store.ven_by_fingerprint(fingerprint) is not None:
        raise Conflict("this certificate is already enrolled for another VEN")
    ven_id = ven.ven_id if ven else body.ven_name
    device_enrolments = store.enrolments(ven_id=ven_id) if ven else []
    refusals = check(program, RuleRequest(
        participant_id=body.participant_id, household_id=participant.household_id,
        program_id=body.program_id, ven_id=ven_id, device_kind=body.device_kind,
        charger_kw=body.charger_kw, inverter_kw=body.inverter_kw),
        [e for e, _ in store.household_enrolments(participant.household_id)],
        device_enrolments,
        {e.program_id: store.program(e.program_id) for e in device_enrolments
         if store.program(e.program_id) is not None})
    if refusals:
        raise Conflict("enrolment refused: " + "; ".join(r.reason for r in refusals), refusals)
    with store.transaction(), store.session() as session:
        if ven is None:
            new = store.enrol(Ven(ven_id=ven_id, ven_name=body.ven_name, fingerprint=fingerprint,
                                  program_id=body.program_id, device_kind=body.device_kind,
                                  participant_id=body.participant_id),
                              [Resource(ven_id=ven_id, resource_id="device",
                                        device_kind=body.device_kind, charger_kw=body.charger_kw,
                                        inverter_kw=body.inverter_kw)])
            audit.record(session, actor=actor.name, action="ven.enrol", subject_type="ven",
                         subject_id=ven_id, before=None, after=audit.snapshot(new), clock=clock)
        enrolment = store.add_enrolment(Enrolment(
            participant_id=body.participant_id, program_id=body.program_id, ven_id=ven_id,
            device_kind=body.device_kind, enrolled_on=clock.now().date()))
        audit.record(session, actor=actor.name, action="enrolment.create",
                     subject_type="enrolment", subject_id=str(enrolment.id), before=None,
                     after={**audit.snapshot(enrolment), "new_ven": ven is None}, clock=clock)
    return enrolment


def _fingerprint(body: EnrolmentRequest) -> str | None:
    if not body.certificate_pem:
        return body.fingerprint
    try:
        return cert_fingerprint(body.certificate_pem)
    except Exception as err:  # noqa: BLE001 - any parse failure is the caller's input
        raise InputError.one("certificate_pem", f"not a PEM certificate: {err}") from err
