"""Operator verbs on the store: `vtn vens list|disable|enable|revoke|cancel-registration|
reregister`, `vtn events list|create|modify|cancel`, `vtn telemetry export` (a season as the
files `vtn settle` reads), `vtn audit export`, `vtn db upgrade`.
They act on the database directly, so they work whether or not a VTN is running (a running
VTN picks changes up at the VENs' next poll). Input goes through the admin API's models
(vtn.operator_input): a bad value is one line on stderr and exit 2, nothing stored. An
event the dispatch rules refuse is one line per violation on stderr and exit 2. The actor
of every change (its audit row) is `cli:` and the OS user.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from flexadr.clock import SystemClock
from schedules import model
from vtn import audit, config, event_control, lifecycle, ven_control
from vtn.export import SETTLEMENT_FILES, settlement_csvs
from vtn.operator_input import (AuditWindow, EventChange, EventRequest, InputError, VenAction,
                                parse)
from vtn.settlement.params import PARAMS, params_for
from vtn.settlement.store_adapter import StoreDataError, query_season
from vtn.store import EVENT_STATUSES, Store
from vtn.store import migrate

ONLINE_WINDOW = 3   # poll intervals
# Model field -> the flag that carries it, for error messages.
FLAGS = {"program_id": "--program", "ven_name": "name", "device_kind": "--kind", "start": "--start", "end": "--end", "minutes": "--minutes",
         "setpoint_kw": "--setpoint-kw", "intervals": "--intervals", "ven_ids": "--ven",
         "override_reason": "--override", "reason": "--reason", "test_event": "--test",
         "since": "--since", "until": "--until", "charger_kw": "--charger-kw",
         "inverter_kw": "--inverter-kw"}
VEN_ACTIONS = {
    "disable": (ven_control.disable, "refuse every request of the VEN (463), end its "
                                     "registration", True),
    "enable": (ven_control.enable, "serve a disabled VEN again (it registers afresh)", False),
    "revoke": (ven_control.revoke, "disable the VEN for good", True),
    "cancel-registration": (ven_control.cancel_registration,
                            "queue oadrCancelPartyRegistration for its next poll", False),
    "reregister": (ven_control.request_reregistration,
                   "queue oadrRequestReregistration for its next poll", False),
}


def _config_arg(parser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="VTN config file (TOML)")


def register(subparsers) -> None:
    vens = subparsers.add_parser("vens", help="VENs: registration, online, last seen")
    vens_sub = vens.add_subparsers(dest="action", required=True, metavar="ACTION")
    vens_list = vens_sub.add_parser("list", help="list enrolled VENs")
    _config_arg(vens_list)
    vens_list.set_defaults(func=_vens_list)
    for action, (_, summary, takes_reason) in VEN_ACTIONS.items():
        verb = vens_sub.add_parser(action, help=summary)
        _config_arg(verb)
        verb.add_argument("ven_id")
        if takes_reason:
            verb.add_argument("--reason", help="why (stored with the VEN)")
        verb.set_defaults(func=_ven_action, ven_action=action)

    events = subparsers.add_parser("events", help="list, create, modify or cancel events")
    events_sub = events.add_subparsers(dest="action", required=True, metavar="ACTION")
    events_list = events_sub.add_parser("list", help="list events")
    _config_arg(events_list)
    events_list.add_argument("--status", choices=EVENT_STATUSES)
    events_list.set_defaults(func=_events_list)
    create = events_sub.add_parser("create", help="publish an event to a program's VENs")
    _config_arg(create)
    create.add_argument("--program", required=True, help="program id or program file")
    create.add_argument("--start", required=True,
                        help="start, ISO 8601 with offset, e.g. 2026-07-01T16:00:00-04:00")
    add_event_arguments(create)
    create.set_defaults(func=events_create)
    modify = events_sub.add_parser("modify", help="change an event's times or setpoint")
    _config_arg(modify)
    modify.add_argument("event_id")
    modify.add_argument("--start", help="new start, ISO 8601 with offset")
    modify.add_argument("--end", help="new end, ISO 8601 with offset")
    modify.add_argument("--setpoint-kw", type=float, help="new kW for discharge programs")
    _override_argument(modify)
    modify.set_defaults(func=_events_modify)
    cancel = events_sub.add_parser("cancel", help="cancel an event")
    _config_arg(cancel)
    cancel.add_argument("event_id")
    cancel.set_defaults(func=_events_cancel)

    telemetry = subparsers.add_parser("telemetry", help="export a season for vtn settle")
    telemetry_sub = telemetry.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = telemetry_sub.add_parser(
        "export", help="a program's season as the CSV files `vtn settle --events` reads",
        description="Write events.csv, telemetry.csv, participants.csv and opt_outs.csv of "
                    "one program's season (what `vtn settle --season` reads from the store) "
                    "into a folder; `vtn settle --events ... --telemetry ...` on them gives "
                    "the same figures.")
    _config_arg(export)
    export.add_argument("--program", required=True, choices=sorted(PARAMS))
    export.add_argument("--season", required=True, type=int, metavar="YEAR")
    export.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="folder to write the four files into (made if missing)")
    export.set_defaults(func=_telemetry_export)

    audit_parser = subparsers.add_parser("audit", help="the audit trail: who changed what")
    audit_sub = audit_parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    audit_export = audit_sub.add_parser("export", help="audit rows, oldest first, on stdout")
    _config_arg(audit_export)
    audit_export.add_argument("--since", help="from this time (ISO 8601 with offset), inclusive")
    audit_export.add_argument("--until", help="before this time (ISO 8601 with offset)")
    audit_export.add_argument("--actor", help="only this actor, e.g. admin-token, cli:alice")
    audit_export.add_argument("--action", dest="audit_action",
                              help="only this action, e.g. event.override")
    audit_export.add_argument("--format", choices=("csv", "json"), default="csv")
    audit_export.set_defaults(func=_audit_export)

    db = subparsers.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    upgrade = db_sub.add_parser("upgrade", help="apply the schema migrations (Alembic)")
    _config_arg(upgrade)
    upgrade.set_defaults(func=_db_upgrade)


def store_of(args, migrate_schema=True) -> tuple[config.VtnSettings, Store]:
    settings = config.load(args.config)
    return settings, Store(settings.database_url, migrate_schema=migrate_schema)


def _vens_list(args) -> int:
    settings, store = store_of(args)
    now = SystemClock().now()
    window = ONLINE_WINDOW * settings.server.poll_interval
    print(f"{'VEN':<28} {'program':<22} {'kind':<11} {'registered':<10} {'online':<6} "
          f"{'last seen':<25} {'fingerprint':<29} access")
    for ven in store.vens():
        online = bool(ven.last_seen_at and now - ven.last_seen_at <= window)
        seen = ven.last_seen_at.isoformat(timespec="seconds") if ven.last_seen_at else "never"
        access = ven_control.refusal_of(store, ven, SystemClock()) or "enabled"
        print(f"{ven.ven_id:<28} {ven.program_id:<22} {ven.device_kind:<11} "
              f"{'yes' if ven.registration_id else 'no':<10} {'yes' if online else 'no':<6} "
              f"{seen:<25} {ven.fingerprint:<29} {access}")
    return 0


def _events_list(args) -> int:
    _, store = store_of(args)
    print(f"{'event':<36} {'program':<22} {'status':<10} {'mod':>3} start (UTC)               end (UTC)")
    for event in store.events(status=args.status):
        print(f"{event.event_id:<36} {event.program_id:<22} {event.status:<10} "
              f"{event.modification_number:>3} {event.start_utc.isoformat():<25} "
              f"{event.end_utc.isoformat()}")
    return 0


def add_event_arguments(parser) -> None:
    """--start, --minutes | --end, --setpoint-kw, --ven, --test, --override REASON."""
    length = parser.add_mutually_exclusive_group(required=True)
    length.add_argument("--minutes", type=int, help="duration in minutes")
    length.add_argument("--end", help="end, ISO 8601 with offset")
    parser.add_argument("--setpoint-kw", type=float, help="kW for discharge programs")
    parser.add_argument("--intervals", type=_profile, metavar="MIN:VALUE,...",
                        help="a profile instead of one setpoint, e.g. 60:5,60:2,60:4 "
                             "(minutes:value, adding up to the event)")
    parser.add_argument("--ven", action="append", dest="ven_ids", metavar="VEN",
                        help="target this VEN (repeat; default: every enabled VEN of the program)")
    parser.add_argument("--test", action="store_true", help="a test event")
    _override_argument(parser)


def _profile(text: str) -> list[dict]:
    """`60:5,60:2` -> interval dicts for EventRequest (which checks them)."""
    intervals = []
    for part in text.split(","):
        minutes, sep, value = part.partition(":")
        try:
            if not sep:
                raise ValueError
            intervals.append({"minutes": int(minutes), "value": float(value)})
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r} is not MINUTES:VALUE") from None
    return intervals


def _override_argument(parser) -> None:
    parser.add_argument("--override", metavar="REASON", dest="override_reason",
                        help="override the program rules the event breaks (season, days, "
                             "holidays, window, durations, notice, budgets, conflicts), for "
                             "this written reason: stored, audited, flagged in settlement")


def refused(err: InputError, flags: dict[str, str] | None = None) -> int:
    """One line: each problem under the flag that set it (`flags` before FLAGS)."""
    names = {**FLAGS, **(flags or {})}
    print("; ".join(_flagged(names, field, problem) for field, problem in err.problems),
          file=sys.stderr)
    return 2


def rules_refused(err: event_control.RulesRefused) -> int:
    """One line per violation, by its rule; exit 2."""
    for v in err.violations:
        print(f"{v.rule}: {v.message}" + ("" if v.overridable else " (not overridable)"),
              file=sys.stderr)
    if err.may_override:
        print("refused: give --override REASON to override these program rules",
              file=sys.stderr)
    return 2


def _flagged(names: dict[str, str], field: str, problem: str) -> str:
    """A model field as the flag that set it; a nested one keeps its path (intervals.1.value)."""
    head = field.split(".")[0]
    if field != head and head in names:
        return f"{names[head]}: {field}: {problem}"
    return f"{names.get(field, field)}: {problem}"


def given(**values) -> dict:
    return {name: value for name, value in values.items()
            if value is not None and value is not False}


def events_create(args) -> int:
    """`vtn events create` and `vtn event`: one path from the flags to the store."""
    try:
        program = model.load(args.program)
    except (FileNotFoundError, model.ProgramError) as err:
        print(f"--program: no program {args.program}: {err}", file=sys.stderr)
        return 2
    try:
        request = parse(EventRequest, given(
            program_id=program.id, start=args.start, minutes=args.minutes,
            end=getattr(args, "end", None), setpoint_kw=args.setpoint_kw,
            intervals=getattr(args, "intervals", None), ven_ids=getattr(args, "ven_ids", None), test_event=getattr(args, "test", False),
            override_reason=getattr(args, "override_reason", None)))
        _, store = store_of(args)
        event = event_control.create(store, SystemClock(), request, program, audit.cli_actor())
    except InputError as err:
        return refused(err)
    except event_control.RulesRefused as err:
        return rules_refused(err)
    targets = store.targets(event.event_id)
    print(f"published {event.event_id} to {len(targets)} VENs"
          + (f" (overridden: {event.forced_reason})" if event.forced_reason else ""))
    return 0


def _events_modify(args) -> int:
    try:
        request = parse(EventChange, given(start=args.start, end=args.end,
                                           setpoint_kw=args.setpoint_kw,
                                           override_reason=args.override_reason))
        _, store = store_of(args)
        event = event_control.change(store, SystemClock(), args.event_id, request,
                                     audit.cli_actor())
    except InputError as err:
        return refused(err)
    except event_control.RulesRefused as err:
        return rules_refused(err)
    except lifecycle.EventNotChangeable as err:
        print(f"cannot modify: {err}", file=sys.stderr)
        return 1
    print(f"modified {event.event_id} (modification {event.modification_number})")
    return 0


def _ven_action(args) -> int:
    action = VEN_ACTIONS[args.ven_action][0]
    extra = []
    if VEN_ACTIONS[args.ven_action][2]:
        try:
            extra = [parse(VenAction, given(reason=args.reason)).reason]
        except InputError as err:
            return refused(err)
    _, store = store_of(args)
    try:
        ven = action(store, args.ven_id, SystemClock(), audit.cli_actor(), *extra)
    except (ven_control.UnknownVen, ven_control.NotAllowed) as err:
        print(f"{args.ven_action}: {err.args[0]}", file=sys.stderr)
        return 1
    print(f"{args.ven_action}: done for VEN {ven.ven_id}")
    return 0


def _events_cancel(args) -> int:
    _, store = store_of(args)
    try:
        event = event_control.cancel(store, SystemClock(), args.event_id, audit.cli_actor())
    except lifecycle.EventNotChangeable as err:
        print(f"cannot cancel: {err}", file=sys.stderr)
        return 1
    print(f"cancelled {event.event_id} (modification {event.modification_number})")
    return 0


def _telemetry_export(args) -> int:
    _, store = store_of(args)
    try:
        season = query_season(store, params_for(args.program), args.season)
    except StoreDataError as err:
        print(f"telemetry export: {err}", file=sys.stderr)
        return 1
    files = settlement_csvs(season)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (args.out / name).write_text(text)
    except OSError as err:
        print(f"telemetry export: cannot write {args.out}: {err.strerror or err}", file=sys.stderr)
        return 1
    print(f"wrote {len(season.events)} events and {len(season.telemetry)} telemetry intervals "
          f"to {args.out}; settle them with:")
    print(f"  vtn settle --program {args.program} "
          + " ".join(f"{flag} {args.out / name}" for flag, name in SETTLEMENT_FILES.items()))
    return 0


AUDIT_COLUMNS = ("id", "at", "actor", "action", "subject_type", "subject_id", "reason",
                 "before", "after")


def _audit_export(args) -> int:
    try:
        window = parse(AuditWindow, given(since=args.since, until=args.until))
    except InputError as err:
        return refused(err)
    _, store = store_of(args)
    with store.session() as session:
        rows = [audit.as_dict(row) for row in audit.query(
            session, actor=args.actor, action=args.audit_action, since=window.since,
            until=window.until)]
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=1)
        sys.stdout.write("\n")
        return 0
    writer = csv.DictWriter(sys.stdout, AUDIT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "before": _json_cell(row["before"]),
                         "after": _json_cell(row["after"])})
    return 0


def _json_cell(values: dict | None) -> str:
    return "" if values is None else json.dumps(values, sort_keys=True)


def _db_upgrade(args) -> int:
    settings, store = store_of(args, migrate_schema=False)
    before = migrate.current(store.engine)
    migrate.upgrade(store.engine)
    after = migrate.current(store.engine)
    print(f"database at revision {after}" + ("" if before == after else f" (was {before})"))
    return 0
