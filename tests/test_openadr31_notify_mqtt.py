"""The 3.1 MQTT notifier through a real Mosquitto broker on 127.0.0.1 with password and
ACL files written by `vtn mqtt acl`: topics advertised, notifications published (QoS 1),
and a VEN's broker login cannot read another VEN's topics.
"""
import asyncio
import getpass
import io
import json
import secrets
import socket
import subprocess
import time
from datetime import timedelta

import aiohttp
import aiomqtt
import pytest
from pydantic import ValidationError

from flexadr.clock import SystemClock
from flexadr.demo import _free_port
from tests.conftest import daemon, needs_daemon
from tests.test_openadr31_api import SECRET, Api31, enrol, event_body
from tests.test_openadr31_notify import FAST, clients, deliveries
from tests.test_openadr_20b import eventually
from vtn.openadr31 import Server, Settings
from vtn.config import Openadr31File
from vtn.openadr31.cli import broker_files_command
from vtn.openadr31.notify.mqtt import advertised
from vtn.openadr31.settings import MqttSettings


def wait_for_port(port: int, proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, "mosquitto exited"
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"mosquitto is not listening on {port}")


@pytest.fixture
def broker(tmp_path, store):
    """Mosquitto with the files `vtn mqtt acl` writes from the store's clients."""
    mosquitto = daemon("mosquitto")
    enrol(store, "ven-a")
    enrol(store, "ven-b")
    secrets_of = clients(store)
    port = _free_port()
    mqtt = MqttSettings(url=f"mqtt://127.0.0.1:{port}", username="flexadr-vtn",
                        password=secrets.token_urlsafe(16))
    out = io.StringIO()
    assert broker_files_command(store, mqtt, tmp_path / "passwd", tmp_path / "acl", out) == 0
    config = tmp_path / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\n"
                      f"password_file {tmp_path / 'passwd'}\nacl_file {tmp_path / 'acl'}\n"
                      "persistence false\nlog_dest stderr\n"
                      # as root it would become user mosquitto, who cannot read tmp_path
                      f"user {getpass.getuser()}\n")
    log = open(tmp_path / "mosquitto.log", "w")
    proc = subprocess.Popen([mosquitto, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc)
        yield mqtt, port, secrets_of, tmp_path
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
async def mqtt_edge(store, broker):
    mqtt, port, secrets_of, _ = broker
    api_port = _free_port()
    server = Server(store, SystemClock(), Settings(token_secret=SECRET, port=api_port, notify=FAST,
                                              mqtt=mqtt))
    await server.start()
    api = Api31(f"http://127.0.0.1:{api_port}", aiohttp.ClientSession(), secrets_of)
    yield api, port
    await api.session.close()
    await server.stop()


class Listener:
    """A broker client that collects what it receives on its subscriptions."""

    def __init__(self, port: int, username: str, password: str):
        self.client = aiomqtt.Client("127.0.0.1", port, username=username, password=password,
                                     identifier=f"{username}-{secrets.token_hex(3)}")
        self.received: list[tuple[str, dict]] = []
        self.task = None

    async def start(self, *topics: str) -> "Listener":
        await self.client.__aenter__()
        for topic in topics:
            await self.client.subscribe(topic, qos=1)
        self.task = asyncio.create_task(self._collect())
        return self

    async def _collect(self) -> None:
        async for message in self.client.messages:
            self.received.append((str(message.topic), json.loads(message.payload)))

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.client.__aexit__(None, None, None)


@needs_daemon("mosquitto")
async def test_notifiers_advertise_mqtt_and_the_topic_endpoints_name_the_topics(mqtt_edge):
    api, port = mqtt_edge
    _, body = await api.call("GET", "/notifiers", client="ven-a-client", expect=200)
    assert body["WEBHOOK"] is True and body["MQTT"]["URIS"] == [f"mqtt://127.0.0.1:{port}"]
    assert body["MQTT"]["serialization"] == "JSON"
    template = "/notifiers/mqtt/topics/vens/{venID}/events"
    _, mine = await api.call("GET", "/notifiers/mqtt/topics/vens/ven-a/events", template,
                             client="ven-a-client", expect=200)
    assert mine["topics"] == {"CREATE": "vens/ven-a/events/create",
                              "UPDATE": "vens/ven-a/events/update",
                              "DELETE": "vens/ven-a/events/delete", "ALL": "vens/ven-a/events/+"}
    await api.call("GET", "/notifiers/mqtt/topics/vens/ven-b/events", template,
                   client="ven-a-client", expect=404)
    await api.call("GET", "/notifiers/mqtt/topics/events", client="ven-a-client", expect=403)
    _, everything = await api.call("GET", "/notifiers/mqtt/topics/events", client="bl",
                                   expect=200)
    assert everything["topics"]["ALL"] == "events/+"
    _, one = await api.call("GET", "/notifiers/mqtt/topics/vens/ven-a", "/notifiers/mqtt/topics/"
                            "vens/{venID}", client="bl", expect=200)
    assert "CREATE" not in one["topics"]          # no creation of an object that exists
    for path in ("programs", "programs/connected_solutions", "reports", "subscriptions", "vens",
                 "resources", "programs/connected_solutions/events", "vens/ven-a/programs",
                 "vens/ven-a/resources"):
        template = "/notifiers/mqtt/topics/" + path.replace("connected_solutions", "{programID}"
                                                            ).replace("ven-a", "{venID}")
        await api.call("GET", f"/notifiers/mqtt/topics/{path}", template, client="bl",
                       expect=200)


@needs_daemon("mosquitto")
async def test_events_are_published_and_a_ven_cannot_read_another_vens_topics(
        mqtt_edge, broker):
    api, port = mqtt_edge
    secrets_of = broker[2]
    ven_a = await Listener(port, "ven-a-client", secrets_of["ven-a-client"]).start(
        "vens/ven-a/#")
    # ven-b asks for ven-a's topic, for everything, and for its own.
    ven_b = await Listener(port, "ven-b-client", secrets_of["ven-b-client"]).start(
        "vens/ven-a/events/+", "#", "events/+", "vens/ven-b/events/+")
    bl = await Listener(port, "bl", secrets_of["bl"]).start("events/+", "programs/+/events/+",
                                                            "resources/+")
    try:
        _, for_a = await api.call("POST", "/events", client="bl", json=event_body(["ven-a"]),
                                  expect=201)
        await eventually(lambda: ven_a.received and len(bl.received) == 2, what="ven-a's event")
        [(topic, notification)] = ven_a.received
        assert topic == "vens/ven-a/events/create" and notification["operation"] == "CREATE"
        assert notification["object"]["id"] == for_a["id"]
        assert notification["object"]["targets"] == ["ven-a"]
        assert sorted(t for t, _ in bl.received) == [
            "events/create", "programs/connected_solutions/events/create"]
        # ven-b's login is live (it gets its own event) but got nothing of ven-a's.
        _, for_b = await api.call("POST", "/events", client="bl", json=event_body(["ven-b"]),
                                  expect=201)
        await eventually(lambda: ven_b.received, what="ven-b's event")
        await asyncio.sleep(0.3)
        assert [(t, n["object"]["id"]) for t, n in ven_b.received] == [
            ("vens/ven-b/events/create", for_b["id"])]
        assert len(ven_a.received) == 1
        # A resource of ven-a: to its own vens/ven-a/resources topic and BL's resources/.
        _, resource = await api.call("POST", "/resources", client="ven-a-client", expect=201,
                                     json={"objectType": "VEN_RESOURCE_REQUEST",
                                           "resourceName": "battery-1", "venID": "ven-a"})
        await eventually(lambda: len(ven_a.received) == 2 and len(bl.received) == 5,
                         what="the resource's notifications")
        assert ven_a.received[1][0] == "vens/ven-a/resources/create"
        assert ven_a.received[1][1]["object"]["id"] == resource["id"]
        assert bl.received[-1][0] == "resources/create"
        await asyncio.sleep(0.3)
        assert len(ven_b.received) == 1
    finally:
        for listener in (ven_a, ven_b, bl):
            await listener.stop()


@needs_daemon("mosquitto")
async def test_a_wrong_secret_cannot_log_in_to_the_broker(broker):
    _, port, _, _ = broker
    with pytest.raises(aiomqtt.MqttCodeError):
        async with aiomqtt.Client("127.0.0.1", port, username="ven-a-client", password="wrong"):
            pass


@needs_daemon("mosquitto")
def test_the_acl_file_gives_a_ven_only_its_own_topics(broker):
    acl = (broker[3] / "acl").read_text()
    assert "user ven-a-client\ntopic read vens/ven-a/#" in acl
    assert "user ven-b-client\ntopic read vens/ven-b/#" in acl
    assert "user bl\ntopic read #" in acl and "user flexadr-vtn\ntopic write #" in acl


def test_without_an_mqtt_table_the_acl_command_is_one_line_and_exit_2(store, tmp_path):
    err = io.StringIO()
    assert broker_files_command(store, None, tmp_path / "p", tmp_path / "a", io.StringIO(),
                                err) == 2
    assert len(err.getvalue().splitlines()) == 1 and not (tmp_path / "p").exists()


async def test_a_broker_that_is_down_is_retried_from_the_outbox(store, tmp_path):
    """Publishing is retried like a webhook: rows stay until the broker takes them."""
    enrol(store, "ven-a")
    secrets_of = clients(store, ("ven-a",))
    mqtt = MqttSettings(url=f"mqtt://127.0.0.1:{_free_port()}", username="flexadr-vtn",
                        password="x")
    api_port = _free_port()
    server = Server(store, SystemClock(), Settings(token_secret=SECRET, port=api_port, notify=FAST,
                                              mqtt=mqtt))
    await server.start()
    api = Api31(f"http://127.0.0.1:{api_port}", aiohttp.ClientSession(), secrets_of)
    try:
        await api.call("POST", "/events", client="bl", json=event_body(["ven-a"]), expect=201)
        await eventually(lambda: len(deliveries(store)) == 3 and all(
            r.attempts >= 2 for r in deliveries(store)), what="publishes retried")
        assert all(r.delivered_at is None and r.failed_at is None
                   and r.last_error.startswith("broker") for r in deliveries(store))
    finally:
        await api.session.close()
        await server.stop()


def test_the_config_tables_become_the_notifier_settings(tmp_path):
    secret, password = tmp_path / "token.secret", tmp_path / "mqtt.secret"
    secret.write_text("x" * 40)
    password.write_text("broker-pass\n")
    table = {"token_secret_file": str(secret),
             "notify": {"max_attempts": 3, "first_retry_s": 1, "allow_private_callbacks": True},
             "mqtt": {"url": "mqtt://127.0.0.1:1883", "password_file": str(password),
                      "public_uris": ["mqtts://broker.example.org:8883"]}}
    settings = Openadr31File.model_validate(table).settings()
    assert settings.notify.max_attempts == 3 and settings.notify.allow_private_callbacks
    assert settings.notify.first_retry == timedelta(seconds=1)
    assert settings.mqtt.password == "broker-pass" and settings.mqtt.username == "flexadr-vtn"
    assert advertised(settings.mqtt)["URIS"] == ["mqtts://broker.example.org:8883"]
    for bad in ({"mqtt": {**table["mqtt"], "url": "http://127.0.0.1:1883"}},
                {"notify": {"max_attempts": 0}}, {"notify": {"max_attemps": 3}}):
        with pytest.raises(ValidationError):
            Openadr31File.model_validate({**table, **bad})
