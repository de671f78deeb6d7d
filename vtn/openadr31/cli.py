"""`vtn oadr3-client create` and `vtn mqtt acl` (vtn/commands/oadr3.py).

    vtn oadr3-client create CLIENT_ID --role bl|ven [--ven VEN_ID] [--scope SCOPE ...]
                                      [--external]

prints the client id and its secret once (only a hash is stored); --external makes a
client that gets its tokens from the trusted external authorization server (no secret
here). Exit 2 with one line on stderr when the client cannot be made.

    vtn mqtt acl --password-file FILE --acl-file FILE

writes the MQTT broker's password and ACL files (mosquitto's formats) from the store's
clients; then reload the broker (SIGHUP, `systemctl reload mosquitto`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from flexadr.clock import Clock
from vtn.openadr31.auth import BL, SCOPES, VEN, ClientError, create_client
from vtn.openadr31.notify.mqtt import write_broker_files
from vtn.openadr31.settings import MqttSettings
from vtn.store import Store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("client_id", help="the client's id (clientID in 3.1 objects)")
    parser.add_argument("--role", required=True, choices=(BL, VEN),
                        help="bl: business logic (reads all, writes programs/events); ven: a VEN")
    parser.add_argument("--ven", dest="ven_id", help="the enrolled VEN this ven client speaks for")
    parser.add_argument("--scope", dest="scopes", action="append", choices=SCOPES,
                        help="limit the client to these scopes (default: all of its role's)")
    parser.add_argument("--external", action="store_true",
                        help="its tokens come from the external authorization server (jwks_url)")


def create_client_command(store: Store, args: argparse.Namespace, clock: Clock,
                          out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    try:
        client, secret = create_client(store, args.client_id, args.role, clock.now(),
                                       ven_id=args.ven_id,
                                       scopes=tuple(args.scopes) if args.scopes else None,
                                       external=args.external)
    except ClientError as problem:
        print(f"vtn oadr3-client create: {problem}", file=err)
        return 2
    shown = secret if secret is not None else "(none: tokens from the external server)"
    print(f"client_id = {client.client_id}\nclient_secret = {shown}\nscopes = {client.scopes}",
          file=out)
    return 0


def broker_files_command(store: Store, mqtt: MqttSettings | None, password_file: Path,
                         acl_file: Path, out: TextIO = sys.stdout,
                         err: TextIO = sys.stderr) -> int:
    if mqtt is None:
        print("vtn mqtt acl: the config has no [openadr31.mqtt] table", file=err)
        return 2
    try:
        left_out = write_broker_files(store, mqtt, password_file, acl_file)
    except OSError as problem:
        print(f"vtn mqtt acl: {problem.filename or ''}: {problem.strerror or problem}", file=err)
        return 2
    print(f"wrote {password_file} and {acl_file}; reload the broker (SIGHUP)", file=out)
    if left_out:
        print(f"no broker login (external, made before MQTT, or a ven client without a VEN): "
              f"{', '.join(left_out)}", file=out)
    return 0
