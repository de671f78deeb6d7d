"""`vtn enrol`: enrol a VEN by its certificate, through the same path as the admin API's
POST /api/enrolments (vtn.enrolment): the program's enrolment rules, a participant and an
enrolment row. A participant not yet known is created from --participant / --household /
--participant-name / --email (default: one household per device, named after it)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from certs.pki import CertError, file_fingerprint
from flexadr.clock import SystemClock
from vtn import audit, config, enrolment, event_control
from vtn.commands import operate
from vtn.operator_input import EnrolmentRequest, InputError, ParticipantRequest, parse
from vtn.store import Participant, Store

PARTICIPANT_FLAGS = {"name": "--participant-name", "household_id": "--household",
                     "participant_id": "--participant", "email": "--email"}


def register(subparsers) -> None:
    enrol = subparsers.add_parser(
        "enrol", help="enrol a VEN by its certificate (the program's enrolment rules apply)",
        description="Enrol a VEN: only enrolled certificates may register. The same rules "
                    "and records as the admin API's POST /api/enrolments.")
    enrol.add_argument("--config", type=Path, required=True, help="VTN config file (TOML)")
    enrol.add_argument("name", help="the VEN's name (venName) and venID")
    enrol.add_argument("cert", type=Path, help="the VEN's certificate (PEM)")
    enrol.add_argument("--program", required=True, help="program id, e.g. connected_solutions")
    enrol.add_argument("--kind", required=True, help="device kind, e.g. battery, ev_v2g, ev_managed")
    enrol.add_argument("--participant", help="the customer account (default: the VEN's name)")
    enrol.add_argument("--household", help="a new participant's household (default: its id)")
    enrol.add_argument("--participant-name", help="a new participant's name (default: its id)")
    enrol.add_argument("--email", help="a new participant's notice address (default: no notices)")
    enrol.add_argument("--charger-kw", type=float, help="charger rating (managed charging)")
    enrol.add_argument("--inverter-kw", type=float, help="inverter rating (batteries)")
    enrol.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    participant_id = args.participant or args.name
    try:
        request = parse(EnrolmentRequest, operate.given(
            ven_name=args.name, program_id=args.program, device_kind=args.kind,
            participant_id=participant_id, charger_kw=args.charger_kw,
            inverter_kw=args.inverter_kw))
        event_control.load_program(request.program_id)
        new_participant = parse(ParticipantRequest, operate.given(
            participant_id=participant_id, name=args.participant_name or participant_id,
            household_id=args.household or participant_id, email=args.email,
            channel="email" if args.email else "none"))
    except InputError as err:
        return operate.refused(err, PARTICIPANT_FLAGS)
    try:
        request = request.model_copy(update={"fingerprint": file_fingerprint(args.cert)})
    except CertError as err:      # no such file, not a PEM certificate
        print(err, file=sys.stderr)
        return 2
    store = Store(config.load(args.config).database_url)
    try:
        with store.transaction():       # a refused enrolment leaves no new participant
            created = store.participant(participant_id) is None
            if created:
                participant = store.add_participant(Participant(**new_participant.model_dump()))
                with store.session() as session:
                    audit.record(session, actor=audit.cli_actor().name,
                                 action="participant.create", subject_type="participant",
                                 subject_id=participant_id, before=None,
                                 after=audit.snapshot(participant))
            done = enrolment.enrol(store, SystemClock(), request, audit.cli_actor())
    except enrolment.NotFound as err:
        print(f"enrol: {err}", file=sys.stderr)
        return 2
    except enrolment.Conflict as err:
        print(f"enrol: {err}", file=sys.stderr)
        return 1
    print(f"enrolled {done.ven_id} ({done.device_kind}, {done.program_id}) for participant "
          f"{done.participant_id}" + (" (new)" if created else ""))
    return 0
