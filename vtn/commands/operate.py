"""Operator verbs on the store: `vtn vens list`, `vtn events list|create|cancel`,
`vtn telemetry export`, `vtn db upgrade`. They act on the database directly, so
they work whether or not a VTN is running (a running VTN picks changes up at the
VENs' next poll).
"""
from __future__ import annotations

import sys
from datetime import datetime, timedelta
from pathlib import Path

from flexadr.clock import SystemClock
from schedules import model
from vtn import config, lifecycle
from vtn.export import event_telemetry_csv
from vtn.store import EVENT_STATUSES, Store
from vtn.store import migrate

ONLINE_WINDOW = 3   # poll intervals


def _config_arg(parser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="VTN config file (TOML)")


def register(subparsers) -> None:
    vens = subparsers.add_parser("vens", help="VENs: registration, online, last seen")
    vens_sub = vens.add_subparsers(dest="action", required=True, metavar="ACTION")
    vens_list = vens_sub.add_parser("list", help="list enrolled VENs")
    _config_arg(vens_list)
    vens_list.set_defaults(func=_vens_list)

    events = subparsers.add_parser("events", help="list, create or cancel events")
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
    create.add_argument("--minutes", required=True, type=int, help="duration in minutes")
    create.add_argument("--setpoint-kw", type=float, help="kW for discharge programs")
    create.add_argument("--test", action="store_true", help="a test event")
    create.set_defaults(func=_events_create)
    cancel = events_sub.add_parser("cancel", help="cancel an event")
    _config_arg(cancel)
    cancel.add_argument("event_id")
    cancel.set_defaults(func=_events_cancel)

    telemetry = subparsers.add_parser("telemetry", help="export telemetry")
    telemetry_sub = telemetry.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = telemetry_sub.add_parser("export", help="an event's telemetry as CSV")
    _config_arg(export)
    export.add_argument("--event", required=True, help="event id")
    export.add_argument("--csv", required=True, type=Path, help="output file ('-' for stdout)")
    export.set_defaults(func=_telemetry_export)

    db = subparsers.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    upgrade = db_sub.add_parser("upgrade", help="apply the schema migrations (Alembic)")
    _config_arg(upgrade)
    upgrade.set_defaults(func=_db_upgrade)


def _store(args, migrate_schema=True) -> tuple[config.VtnSettings, Store]:
    settings = config.load(args.config)
    return settings, Store(settings.database_url, migrate_schema=migrate_schema)


def _vens_list(args) -> int:
    settings, store = _store(args)
    now = SystemClock().now()
    window = ONLINE_WINDOW * settings.server.poll_interval
    print(f"{'VEN':<28} {'program':<22} {'kind':<11} {'registered':<10} {'online':<6} "
          f"{'last seen':<25} fingerprint")
    for ven in store.vens():
        online = bool(ven.last_seen_at and now - ven.last_seen_at <= window)
        seen = ven.last_seen_at.isoformat(timespec="seconds") if ven.last_seen_at else "never"
        print(f"{ven.ven_id:<28} {ven.program_id:<22} {ven.device_kind:<11} "
              f"{'yes' if ven.registration_id else 'no':<10} {'yes' if online else 'no':<6} "
              f"{seen:<25} {ven.fingerprint}")
    return 0


def _events_list(args) -> int:
    _, store = _store(args)
    print(f"{'event':<36} {'program':<22} {'status':<10} {'mod':>3} start (UTC)               end (UTC)")
    for event in store.events(status=args.status):
        print(f"{event.event_id:<36} {event.program_id:<22} {event.status:<10} "
              f"{event.modification_number:>3} {event.start_utc.isoformat():<25} "
              f"{event.end_utc.isoformat()}")
    return 0


def _events_create(args) -> int:
    try:
        start = datetime.fromisoformat(args.start)
    except ValueError:
        print(f"--start {args.start!r} is not an ISO 8601 time", file=sys.stderr)
        return 2
    if start.tzinfo is None:
        print("--start needs a UTC offset, e.g. 2026-07-01T16:00:00-04:00", file=sys.stderr)
        return 2
    if args.minutes <= 0:
        print("--minutes must be positive", file=sys.stderr)
        return 2
    try:
        program = model.load(args.program)
    except (FileNotFoundError, model.ProgramError) as err:
        print(f"no program {args.program}: {err}", file=sys.stderr)
        return 2
    _, store = _store(args)
    targets = [ven.ven_id for ven in store.vens(program.id)]
    try:
        event = lifecycle.publish(store, program, start, start + timedelta(minutes=args.minutes),
                                  targets, SystemClock(), setpoint_kw=args.setpoint_kw,
                                  test_event=args.test)
    except lifecycle.EventOutsideRules as err:
        print(f"event refused: {err}", file=sys.stderr)
        return 1
    print(f"published {event.event_id} to {len(targets)} VENs")
    return 0


def _events_cancel(args) -> int:
    _, store = _store(args)
    try:
        event = lifecycle.cancel(store, args.event_id, SystemClock())
    except lifecycle.EventNotChangeable as err:
        print(f"cannot cancel: {err}", file=sys.stderr)
        return 1
    print(f"cancelled {event.event_id} (modification {event.modification_number})")
    return 0


def _telemetry_export(args) -> int:
    _, store = _store(args)
    try:
        text = event_telemetry_csv(store, args.event)
    except KeyError:
        print(f"no event {args.event}", file=sys.stderr)
        return 1
    if str(args.csv) == "-":
        sys.stdout.write(text)
    else:
        args.csv.write_text(text)
        print(f"wrote {len(text.splitlines()) - 1} rows to {args.csv}")
    return 0


def _db_upgrade(args) -> int:
    settings, store = _store(args, migrate_schema=False)
    before = migrate.current(store.engine)
    migrate.upgrade(store.engine)
    after = migrate.current(store.engine)
    print(f"database at revision {after}" + ("" if before == after else f" (was {before})"))
    return 0
