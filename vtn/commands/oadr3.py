"""`vtn oadr3-client create`: an OAuth client of the OpenADR 3.1 edge (vtn/openadr31/cli.py)."""
from __future__ import annotations

import sys
from pathlib import Path

from flexadr.clock import SystemClock
from vtn import config
from vtn.openadr31.cli import add_arguments, create_client_command
from vtn.store import Store


def register(subparsers) -> None:
    clients = subparsers.add_parser("oadr3-client", help="OpenADR 3.1 OAuth clients",
                                    description="OAuth clients of the OpenADR 3.1 edge "
                                                "(docs/openadr3.md).")
    actions = clients.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="make a client; its secret is printed once",
                                description="Make an OpenADR 3.1 OAuth client; its secret is "
                                            "printed once and only a hash is stored.")
    create.add_argument("--config", type=Path, required=True, help="VTN config file (TOML)")
    add_arguments(create)
    create.set_defaults(func=_create)


def _create(args) -> int:
    settings = config.load(args.config)
    # the streams of now (the defaults were bound when the module was imported)
    return create_client_command(Store(settings.database_url), args, SystemClock(),
                                 out=sys.stdout, err=sys.stderr)
