"""The MQTT notifier: the VTN publishes each notification (QoS 1) to a broker (Mosquitto),
and writes the broker's password and ACL files from the store.

Broker accounts: a 3.1 client logs in to the broker with its OAuth client id and secret.
`vtn oadr3-client create` stores the secret's hash twice, scrypt for the token endpoint
and mosquitto's own `$7$` PBKDF2-SHA512 for the broker; `vtn mqtt acl` writes every
client's line into the password file and its topics into the ACL file (business logic
reads everything; a VEN client only `vens/{its venID}/#`; the VTN's own account writes),
then the broker is told to reload (SIGHUP). The secret itself is never stored.
"""
from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from urllib.parse import urlsplit

import aiomqtt
from sqlmodel import select

from vtn.openadr31.auth import BL, VEN, broker_password_hash
from vtn.openadr31.notify.outbox import Outcome
from vtn.openadr31.notify.topics import Topics
from vtn.openadr31.settings import MqttSettings
from vtn.store import Oadr3Client, Store, Ven

INFLIGHT = 200                   # QoS 1 publishes awaiting PUBACK


def broker_files(store: Store, mqtt: MqttSettings) -> tuple[str, str, list[str]]:
    """(password file, ACL file, client ids left out: no broker password stored)."""
    topics = Topics(mqtt.topic_prefix)
    passwd = [f"{mqtt.username}:{broker_password_hash(mqtt.password)}"]
    acl = [f"user {mqtt.username}", f"topic write {topics.everything()}", ""]
    left_out = []
    with store.session() as s:
        vens = {v.client_id: v for v in s.exec(select(Ven).where(Ven.client_id.is_not(None)))}
        clients = s.exec(select(Oadr3Client).order_by(Oadr3Client.client_id)).all()
    for client in clients:
        ven = vens.get(client.client_id)
        if client.mqtt_password_hash is None or client.client_id == mqtt.username or (
                client.role == VEN and ven is None):
            left_out.append(client.client_id)
            continue
        passwd.append(f"{client.client_id}:{client.mqtt_password_hash}")
        readable = topics.everything() if client.role == BL else topics.ven_root(ven.ven_id)
        acl += [f"user {client.client_id}", f"topic read {readable}", ""]
    return "\n".join(passwd) + "\n", "\n".join(acl), left_out


def write_broker_files(store: Store, mqtt: MqttSettings, passwd_file: Path,
                       acl_file: Path) -> list[str]:
    passwd, acl, left_out = broker_files(store, mqtt)
    for path, text in ((passwd_file, passwd), (acl_file, acl)):
        partial = path.with_name(path.name + ".new")
        partial.write_text(text)
        partial.chmod(0o640)
        partial.replace(path)       # the broker never reads half a file
    return left_out


class MqttPublisher:
    """One connection to the broker, made again after it drops."""

    def __init__(self, mqtt: MqttSettings, timeout_s: float):
        url = urlsplit(mqtt.url)
        self.mqtt, self.timeout_s = mqtt, timeout_s
        self.host, self.port = url.hostname, url.port or 1883
        self.client: aiomqtt.Client | None = None

    async def _connected(self) -> aiomqtt.Client:
        if self.client is None:
            client = aiomqtt.Client(self.host, self.port, username=self.mqtt.username,
                                    password=self.mqtt.password, timeout=self.timeout_s,
                                    max_inflight_messages=INFLIGHT,
                                    identifier=f"flexadr-vtn-{secrets.token_hex(4)}")
            await client.__aenter__()
            self.client = client
        return self.client

    async def close(self) -> None:
        if self.client is not None:
            client, self.client = self.client, None
            try:
                await client.__aexit__(None, None, None)
            except aiomqtt.MqttError:
                pass        # already gone

    async def send_all(self, rows) -> list[Outcome]:
        try:
            client = await self._connected()
        except (aiomqtt.MqttError, OSError) as err:
            return [Outcome(row.id, f"broker: {err}") for row in rows]
        results = await asyncio.gather(*(client.publish(row.target, row.body, qos=1)
                                          for row in rows), return_exceptions=True)
        outcomes = [Outcome(row.id, None if result is None else f"broker: {result}")
                    for row, result in zip(rows, results)]
        if any(o.error for o in outcomes):
            await self.close()      # the next round connects again
        return outcomes


def advertised(mqtt: MqttSettings) -> dict:
    """The MQTT member of GET /notifiers.

    3.1.0's binding offers ANONYMOUS, OAUTH2_BEARER_TOKEN and CERTIFICATE only; ours is
    the OAuth client's id and secret as the broker's user name and password, the nearest
    being OAUTH2_BEARER_TOKEN with username "{clientID}" (see docs/openadr3.md)."""
    return {"URIS": list(mqtt.public_uris or (mqtt.url,)), "serialization": "JSON",
            "authentication": {"method": "OAUTH2_BEARER_TOKEN", "username": "{clientID}"}}
