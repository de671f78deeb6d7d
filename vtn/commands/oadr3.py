"""`vtn oadr3-client create`: an OAuth client of the OpenADR 3.1 edge; `vtn mqtt acl`: the MQTT
broker's password and ACL files from those clients (vtn/openadr31/cli.py)."""
from __future__ import annotations

import sys
from pathlib import Path

from flexadr.clock import SystemClock
from vtn import config
from vtn.openadr31.cli import add_arguments, broker_files_command, create_client_command
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
    mqtt = subparsers.add_parser("mqtt", help="the OpenADR 3.1 MQTT notifier's broker",
                                 description="The MQTT broker of the OpenADR 3.1 notifier "
                                             "(docs/openadr3.md).")
    mqtt_actions = mqtt.add_subparsers(dest="action", required=True, metavar="ACTION")
    acl = mqtt_actions.add_parser("acl", help="write the broker's password and ACL files",
                                  description="Write mosquitto's password file and ACL file "
                                              "from the OpenADR 3.1 clients: each logs in with "
                                              "its client id and secret and reads only its "
                                              "own topics. Reload the broker afterwards.")
    acl.add_argument("--config", type=Path, required=True, help="VTN config file (TOML)")
    acl.add_argument("--password-file", type=Path, required=True,
                     help="mosquitto password_file to write")
    acl.add_argument("--acl-file", type=Path, required=True, help="mosquitto acl_file to write")
    acl.set_defaults(func=_acl)


def _create(args) -> int:
    settings = config.load(args.config)
    # the streams of now (the defaults were bound when the module was imported)
    return create_client_command(Store(settings.database_url), args, SystemClock(),
                                 out=sys.stdout, err=sys.stderr)


def _acl(args) -> int:
    settings = config.load(args.config)
    return broker_files_command(Store(settings.database_url),
                                settings.openadr31.mqtt if settings.openadr31 else None,
                                args.password_file, args.acl_file, sys.stdout, sys.stderr)
