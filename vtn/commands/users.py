"""`vtn users add|list|set-role|disable|enable|token`: console and admin-API users (vtn/auth.py).

    vtn users add NAME --role viewer|operator|admin --config vtn.toml   (password: prompt,
                                                     or --password-stdin for scripts)
    vtn users token NAME [--name LABEL] --config vtn.toml   (prints the token once)

Every change writes an audit row (actor cli:<OS user>). A change that cannot be made is
one line on stderr and exit 2; nothing is stored.
"""
from __future__ import annotations

import getpass
import sys
from pathlib import Path

from flexadr.clock import SystemClock
from vtn import audit, auth, config
from vtn.store import ROLES, Store


def register(subparsers) -> None:
    users = subparsers.add_parser("users", help="console and admin-API users, roles, tokens",
                                  description="Users of the console and the admin API.")
    actions = users.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = _action(actions, "add", "add a user (password prompted, or --password-stdin)", _add)
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of standard input")
    _action(actions, "list", "list users, roles and whether they are disabled", _list,
            named=False)
    set_role = _action(actions, "set-role", "change a user's role", _set_role)
    set_role.add_argument("role", choices=ROLES)
    _action(actions, "disable", "refuse the user's logins and tokens, end its sessions",
            _disable)
    _action(actions, "enable", "let a disabled user in again", _enable)
    token = _action(actions, "token", "make an admin-API token for the user (printed once)",
                    _token)
    token.add_argument("--name", default="", help="a label for the token (e.g. grafana)")


def _action(actions, name: str, summary: str, func, named: bool = True):
    parser = actions.add_parser(name, help=summary, description=summary)
    parser.add_argument("--config", type=Path, required=True, help="VTN config file (TOML)")
    if named:
        parser.add_argument("username")
    parser.set_defaults(func=lambda args: _run(func, args))
    return parser


def _run(func, args) -> int:
    store = Store(config.load(args.config).database_url)
    try:
        return func(store, args, {"actor": audit.cli_actor().name, "clock": SystemClock()})
    except auth.UserError as err:
        print(f"vtn users {args.action}: {err}", file=sys.stderr)
        return 2
    finally:
        store.close()


def _add(store, args, who) -> int:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.username}: ")
    user = auth.add_user(store, args.username, password, args.role, **who)
    print(f"added {user.username} ({user.role})")
    return 0


def _list(store, args, who) -> int:
    for user in auth.users(store):
        state = f"disabled {user.disabled_at:%Y-%m-%d}" if user.disabled_at else "active"
        print(f"{user.username}\t{user.role}\t{state}")
    return 0


def _set_role(store, args, who) -> int:
    user = auth.set_role(store, args.username, args.role, **who)
    print(f"{user.username} is now {user.role}")
    return 0


def _disable(store, args, who) -> int:
    auth.set_disabled(store, args.username, True, **who)
    print(f"{args.username} disabled")
    return 0


def _enable(store, args, who) -> int:
    auth.set_disabled(store, args.username, False, **who)
    print(f"{args.username} enabled")
    return 0


def _token(store, args, who) -> int:
    print(auth.issue_token(store, args.username, args.name, **who))
    return 0
