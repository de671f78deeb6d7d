"""3.1 webhook notifications: real aiohttp receivers on 127.0.0.1, the outbox in the store.

Events made by any path (the 3.1 API, the operator's event_control as the admin API and
CLI use it, lifecycle as the planner uses it) are notified; a VEN is told only of events
it is a target of; failures are retried with backoff up to a bounded number of attempts;
a callback the VTN must not call is refused and never called; rows survive a VTN killed
before delivery; two VTN processes on one database deliver each notification once.
"""
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import aiohttp
import jsonschema
import pytest
from aiohttp import web
from sqlmodel import select

from certs.pki import ensure_dev_pki
from flexadr.clock import SystemClock
from flexadr.demo import _free_port
from schedules import model
from tests.test_openadr31_api import SECRET, Api31, enrol, event_body, report_body, spec
from tests.test_openadr_20b import eventually
from vtn import audit, event_control, lifecycle
from vtn.openadr31 import Server, Settings
from vtn.openadr31.auth import create_client
from vtn.openadr31.notify.outbox import purge, retry_after
from vtn.openadr31.notify.webhook import PinnedResolver, RefusedAddress
from vtn.openadr31.settings import NotifySettings
from vtn.operator_input import EventRequest
from vtn.store import Oadr3Delivery

FAST = NotifySettings(interval=timedelta(seconds=0.05), first_retry=timedelta(seconds=0.3),
                      max_retry=timedelta(seconds=5), max_attempts=4,
                      allow_private_callbacks=True)


# --- a webhook receiver -------------------------------------------------------------------
class Receiver:
    """Records every POST; answers `statuses` in turn, then 200."""

    def __init__(self, port: int | None = None, statuses=()):
        self.port = port or _free_port()
        self.statuses = list(statuses)
        self.received: list[dict] = []
        self.runner = None

    def url(self, path: str = "/cb") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append({"at": time.monotonic(), "path": request.path,
                              "auth": request.headers.get("Authorization"),
                              "body": await request.json()})
        return web.Response(status=self.statuses.pop(0) if self.statuses else 200)

    async def start(self) -> "Receiver":
        app = web.Application()
        app.router.add_post("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        await self.runner.cleanup()

    def on(self, path: str) -> list[dict]:
        return [r for r in self.received if r["path"] == path]


def check_notification(body: dict) -> None:
    """Against the YAML's `notification` schema (3.1.0)."""
    doc = spec()
    schema = {**doc, "$ref": "#/components/schemas/notification"}
    errors = [e for e in jsonschema.Draft4Validator(schema).iter_errors(body)
              if e.validator != "oneOf"]      # `object` is oneOf six shapes without a discriminator
    assert not errors, [e.message for e in errors[:3]]
    event_schema = {**doc, "$ref": "#/components/schemas/event"}
    assert not list(jsonschema.Draft4Validator(event_schema).iter_errors(body["object"]))


# --- a VTN's 3.1 edge, in this process ----------------------------------------------------
def clients(store, vens=("ven-a", "ven-b")) -> dict:
    now = datetime.now(timezone.utc)
    secrets = {"bl": create_client(store, "bl", "bl", now)[1]}
    for name in vens:
        secrets[f"{name}-client"] = create_client(store, f"{name}-client", "ven", now,
                                                  ven_id=name)[1]
    return secrets


async def start_edge(store, secrets, notify=FAST, port=None) -> tuple[Server, Api31]:
    port = port or _free_port()
    server = Server(store, SystemClock(), Settings(token_secret=SECRET, port=port, notify=notify))
    await server.start()
    return server, Api31(f"http://127.0.0.1:{port}", aiohttp.ClientSession(), secrets)


@pytest.fixture
def enrolled(store):
    enrol(store, "ven-a")
    enrol(store, "ven-b")
    return clients(store)


@pytest.fixture
async def edge(store, enrolled):
    server, api = await start_edge(store, enrolled)
    yield api
    await api.session.close()
    await server.stop()


@pytest.fixture
async def receiver():
    receiver = await Receiver().start()
    yield receiver
    await receiver.stop()


def subscription(url: str, objects=("EVENT",), operations=("CREATE", "UPDATE", "DELETE"),
                 token="their-token", program=None) -> dict:
    body = {"clientName": "subscriber", "objectOperations": [
        {"objects": list(objects), "operations": list(operations), "callbackUrl": url,
         "bearerToken": token}]}
    if program:
        body["programID"] = program
    return body


async def subscribe(api, client, body, expect=201):
    return (await api.call("POST", "/subscriptions", client=client, json=body, expect=expect))[1]


def deliveries(store) -> list[Oadr3Delivery]:
    with store.session() as s:
        return list(s.exec(select(Oadr3Delivery).order_by(Oadr3Delivery.id)).all())


def start_in(minutes=30):
    return datetime.now(timezone.utc).replace(microsecond=0) + timedelta(minutes=minutes)


# --- who is told what ---------------------------------------------------------------------
async def test_every_event_path_notifies_its_subscribers_and_a_ven_only_of_its_own(
        edge, receiver, store):
    await subscribe(edge, "bl", subscription(receiver.url("/bl"), token="bl-token"))
    await subscribe(edge, "ven-a-client", subscription(receiver.url("/a"), token="a-token"))
    await subscribe(edge, "ven-b-client", subscription(receiver.url("/b"), token="b-token"))
    # Over 3.1 (for ven-a only), by the operator (admin API / CLI), by the planner's path.
    _, over_31 = await edge.call("POST", "/events", client="bl", json=event_body(["ven-a"]),
                                 expect=201)
    program = model.load("connected_solutions")
    by_operator = event_control.create(store, SystemClock(), EventRequest(
        program_id="connected_solutions", start=start_in(90), minutes=60, setpoint_kw=3.0,
        ven_ids=["ven-a", "ven-b"], override_reason="a test out of season"), program,
        audit.ADMIN_TOKEN)
    planned = lifecycle.publish(store, program, start_in(120), start_in(180), ["ven-a"],
                                SystemClock(), setpoint_kw=2.0, planned=True)
    await eventually(lambda: len(receiver.on("/bl")) == 3, what="three CREATEs for BL")

    def seen(path):
        return [(r["body"]["operation"], r["body"]["object"]["id"]) for r in receiver.on(path)]
    assert seen("/a") == [("CREATE", over_31["id"]), ("CREATE", by_operator.event_id)]
    assert seen("/b") == [("CREATE", by_operator.event_id)]      # not ven-a's event
    a_view = receiver.on("/a")[1]["body"]
    assert a_view["object"]["targets"] == ["ven-a"]              # not ven-b's name
    assert receiver.on("/bl")[1]["body"]["object"]["targets"] == ["ven-a", "ven-b"]
    assert {r["auth"] for r in receiver.on("/a")} == {"Bearer a-token"}
    assert {r["auth"] for r in receiver.on("/bl")} == {"Bearer bl-token"}
    for record in receiver.received:
        check_notification(record["body"])

    # A planned event reaches VENs as a CREATE when it is published; modify and cancel.
    lifecycle.publish_planned(store, planned.event_id, SystemClock())
    lifecycle.modify(store, over_31["id"], SystemClock(), signal_value=4.0)
    await edge.call("DELETE", f"/events/{by_operator.event_id}", "/events/{eventID}",
                    client="bl", expect=200)
    await eventually(lambda: len(receiver.on("/bl")) == 6 and len(receiver.on("/b")) == 2,
                     what="the changes")
    assert seen("/a")[2:] == [("CREATE", planned.event_id), ("UPDATE", over_31["id"]),
                              ("DELETE", by_operator.event_id)]
    assert seen("/b")[1:] == [("DELETE", by_operator.event_id)]
    assert [op for op, _ in seen("/bl")[3:]] == ["UPDATE", "UPDATE", "DELETE"]
    assert receiver.on("/a")[3]["body"]["object"]["intervals"][0]["payloads"][0]["values"] == [4.0]
    await asyncio.sleep(0.3)        # a few more notifier rounds: nothing is sent twice
    assert len(receiver.received) == 6 + 5 + 2
    assert all(row.delivered_at and row.attempts == 1 for row in deliveries(store))


async def test_operations_and_program_of_a_subscription_filter_what_it_gets(
        edge, receiver, store):
    await subscribe(edge, "bl", subscription(receiver.url("/deletes"), operations=["DELETE"]))
    await subscribe(edge, "bl", subscription(receiver.url("/other"), program="managed_charging"))
    await subscribe(edge, "bl", subscription(receiver.url("/programs"), objects=["PROGRAM"]))
    _, event = await edge.call("POST", "/events", client="bl", json=event_body(), expect=201)
    await edge.call("DELETE", f"/events/{event['id']}", "/events/{eventID}", client="bl",
                    expect=200)
    await eventually(lambda: receiver.on("/deletes"), what="the DELETE")
    await asyncio.sleep(0.3)
    assert [r["body"]["operation"] for r in receiver.received] == ["DELETE"]


async def test_reports_resources_vens_and_subscriptions_reach_business_logic_and_their_ven(
        edge, receiver, store):
    objects = ["REPORT", "RESOURCE", "VEN", "SUBSCRIPTION"]
    await subscribe(edge, "bl", subscription(receiver.url("/bl"), objects=objects))
    await subscribe(edge, "ven-a-client", subscription(receiver.url("/a"), objects=objects))
    await subscribe(edge, "ven-b-client", subscription(receiver.url("/b"), objects=objects))
    _, event = await edge.call("POST", "/events", client="bl", json=event_body(["ven-a"]),
                               expect=201)
    _, report = await edge.call("POST", "/reports", client="ven-a-client",
                                json=report_body(event["id"]), expect=201)
    _, resource = await edge.call("POST", "/resources", client="ven-a-client", expect=201,
                                  json={"objectType": "VEN_RESOURCE_REQUEST",
                                        "resourceName": "battery-1", "venID": "ven-a"})
    template = "/resources/{resourceID}"
    renamed = {"objectType": "VEN_RESOURCE_REQUEST", "resourceName": "battery-2", "venID": "ven-a"}
    await edge.call("PUT", f"/resources/{resource['id']}", template, client="ven-a-client",
                    json=renamed, expect=200)
    _, other = await edge.call("POST", "/resources", client="ven-a-client", expect=201,
                               json={**renamed, "resourceName": "meter"})
    await edge.call("PUT", f"/resources/{other['id']}", template, client="ven-a-client",
                    json=renamed, expect=409)
    await edge.call("DELETE", f"/resources/{resource['id']}", template,
                    client="ven-a-client", expect=200)
    # A refused write is no change: ven-b's VEN given ven-a's client (a 409), and ven-a
    # deleted while it has a report (400).
    await edge.call("PUT", "/vens/ven-b", "/vens/{venID}", client="bl", expect=409, json={
        "objectType": "BL_VEN_REQUEST", "venName": "ven-b", "clientID": "ven-a-client"})
    await edge.call("DELETE", "/vens/ven-a", "/vens/{venID}", client="bl", expect=400)
    # BL: ven-a's and ven-b's subscriptions, the report, the resources' four changes.
    await eventually(lambda: len(receiver.on("/bl")) == 7, what="BL's seven")

    def seen(path):
        return [(r["body"]["objectType"], r["body"]["operation"], r["body"]["object"]["id"])
                for r in receiver.on(path)]
    assert seen("/a") == [("REPORT", "CREATE", report["id"]),
                          ("RESOURCE", "CREATE", resource["id"]),
                          ("RESOURCE", "UPDATE", resource["id"]),
                          ("RESOURCE", "CREATE", other["id"]),       # (the 409 changed nothing)
                          ("RESOURCE", "DELETE", resource["id"])]
    assert seen("/b") == []                                 # none of it is ven-b's
    assert [kind for kind, _, _ in seen("/bl")] == ["SUBSCRIPTION", "SUBSCRIPTION", "REPORT"] + [
        "RESOURCE"] * 4
    assert receiver.on("/a")[0]["body"]["object"]["resources"][0]["resourceName"] == "device"
    assert receiver.on("/a")[2]["body"]["object"]["resourceName"] == "battery-2"
    await asyncio.sleep(0.3)
    assert len(receiver.received) == 12


# --- retries ------------------------------------------------------------------------------
def test_backoff_doubles_up_to_its_cap():
    settings = NotifySettings(first_retry=timedelta(seconds=2), max_retry=timedelta(seconds=10))
    assert [retry_after(n, settings).total_seconds() for n in (1, 2, 3, 4, 5)] == [2, 4, 8, 10, 10]


async def test_a_500_is_retried_with_backoff_until_delivered_and_gives_up_after_the_attempts(
        store, enrolled):
    flaky, broken = await Receiver(statuses=[500, 500]).start(), await Receiver(
        statuses=[500] * 10).start()
    server, api = await start_edge(store, enrolled)
    try:
        await subscribe(api, "bl", subscription(flaky.url()))
        await subscribe(api, "bl", subscription(broken.url()))
        await api.call("POST", "/events", client="bl", json=event_body(), expect=201)
        await eventually(lambda: len(flaky.received) == 3, what="the third attempt")
        await eventually(lambda: all(r.delivered_at or r.failed_at for r in deliveries(store)),
                         what="both rows finished")
        gaps = [b["at"] - a["at"] for a, b in zip(flaky.received, flaky.received[1:])]
        assert gaps[0] >= 0.3 and gaps[1] >= 0.6         # first_retry, then doubled
        assert len({json.dumps(r["body"]) for r in flaky.received}) == 1   # the same notification
        good, bad = deliveries(store)
        assert good.delivered_at and good.attempts == 3 and good.last_error is None
        assert bad.failed_at and bad.attempts == FAST.max_attempts
        assert bad.last_error == "HTTP 500"
        await asyncio.sleep(0.5)
        assert len(broken.received) == FAST.max_attempts                    # bounded
    finally:
        await api.session.close()
        await server.stop()
        await flaky.stop()
        await broken.stop()


async def test_a_deleted_subscription_gets_nothing_more(edge, store):
    receiver = Receiver()                   # down at first
    sub = await subscribe(edge, "bl", subscription(receiver.url()))
    await edge.call("POST", "/events", client="bl", json=event_body(), expect=201)
    await eventually(lambda: deliveries(store) and deliveries(store)[0].attempts >= 1,
                     what="a failed attempt")
    await edge.call("DELETE", f"/subscriptions/{sub['id']}", "/subscriptions/{subscriptionID}",
                    client="bl", expect=200)
    await receiver.start()
    try:
        await asyncio.sleep(1.0)            # past the first retry (0.3 s) and the next
        assert receiver.received == []
        purge(store, datetime.now(timezone.utc), timedelta(days=1))
        assert deliveries(store) == []
    finally:
        await receiver.stop()


# --- callbacks the VTN must not call ------------------------------------------------------
async def test_a_callback_into_the_vtns_own_network_is_refused_and_never_called(
        store, enrolled, receiver):
    strict = NotifySettings(interval=FAST.interval)     # allow_private_callbacks off
    server, api = await start_edge(store, enrolled, notify=strict)
    try:
        for url in (receiver.url(), f"http://localhost:{receiver.port}/cb",
                    "http://169.254.169.254/latest/meta-data", "http://10.0.0.7/cb",
                    "http://[::1]:8080/cb", "http://2130706433/cb", "ftp://example.org/cb",
                    "http://user:pw@example.org/cb"):
            body = await subscribe(api, "bl", subscription(url), expect=400)
            assert body["errors"][0]["field"] == "objectOperations.0.callbackUrl", (url, body)
        await api.call("POST", "/events", client="bl", json=event_body(), expect=201)
        await asyncio.sleep(0.3)
        _, listed = await api.call("GET", "/subscriptions", client="bl", expect=200)
        assert listed == [] and deliveries(store) == [] and receiver.received == []
    finally:
        await api.session.close()
        await server.stop()


async def test_a_stored_callback_that_now_fails_the_check_is_given_up_unsent(
        store, enrolled, receiver):
    lax, api = await start_edge(store, enrolled)
    await subscribe(api, "bl", subscription(receiver.url()))
    await api.session.close()
    await lax.stop()
    # The same store served by a VTN that allows no private callbacks (e.g. reconfigured).
    strict, api = await start_edge(store, enrolled, notify=NotifySettings(interval=FAST.interval))
    try:
        lifecycle.publish(store, model.load("connected_solutions"), start_in(), start_in(90),
                          ["ven-a"], SystemClock(), setpoint_kw=1.0)
        await eventually(lambda: deliveries(store) and deliveries(store)[0].failed_at,
                         what="the row given up")
        [row] = deliveries(store)
        assert row.attempts == 1 and row.last_error.startswith("refused")
        assert receiver.received == []
    finally:
        await api.session.close()
        await strict.stop()


async def test_the_resolver_hands_out_only_checked_addresses():
    with pytest.raises(RefusedAddress, match="loopback"):
        await PinnedResolver(allow_private=False).resolve("localhost", 80)
    [result, *_] = await PinnedResolver(allow_private=True).resolve("localhost", 80)
    assert result["host"] in ("127.0.0.1", "::1") and result["hostname"] == "localhost"


# --- VTN processes (`vtn serve`): restart, and two on one database ------------------------
def vtn_process(tmp_path, database_url: str, api_port: int) -> subprocess.Popen:
    """`vtn serve` with a 3.1 edge on api_port (the 2.0b edge beside it on a port of its own),
    its notifier quick and allowed to call loopback."""
    pki = ensure_dev_pki(tmp_path / "pki", [])
    secret = tmp_path / "token.secret"
    secret.write_text(SECRET)
    config = tmp_path / f"vtn-{api_port}.toml"
    config.write_text(
        f'vtn_id = "NOTIFY_VTN"\nport = {_free_port()}\ncert = "{pki.vtn.cert}"\n'
        f'key = "{pki.vtn.key}"\nca_file = "{pki.ca.cert}"\ndatabase = "{database_url}"\n\n'
        f'[openadr31]\nport = {api_port}\ntoken_secret_file = "{secret}"\n\n'
        '[openadr31.notify]\ninterval_s = 0.05\nfirst_retry_s = 0.2\nmax_attempts = 50\n'
        'allow_private_callbacks = true\n')
    log = tmp_path / f"vtn-{api_port}.log"
    proc = subprocess.Popen([sys.executable, "-m", "vtn.cli", "serve", "--config", str(config)],
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, cwd=os.getcwd())
    proc.log = log
    return proc


def listening(proc: subprocess.Popen, api_port: int) -> subprocess.Popen:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, \
            f"vtn serve ({api_port}) exited:\n{proc.log.read_text()[-3000:]}"
        try:
            socket.create_connection(("127.0.0.1", api_port), 0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"vtn serve did not listen on {api_port}")


def kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


@pytest.fixture
def vtn_serve(tmp_path, database_url):
    """Starts `vtn serve` processes on the test's database; kills what is left at the end."""
    started = []

    def start(api_port: int) -> subprocess.Popen:
        started.append(vtn_process(tmp_path, database_url, api_port))
        return started[-1]
    yield start
    for proc in started:
        if proc.poll() is None:
            kill(proc)


async def test_a_webhook_is_delivered_once_after_the_vtn_is_killed_before_delivery(
        store, enrolled, vtn_serve):
    port = _free_port()
    first = listening(vtn_serve(port), port)
    api = Api31(f"http://127.0.0.1:{port}", aiohttp.ClientSession(), enrolled)
    receiver = Receiver()                   # its port is chosen; nothing listens there yet
    try:
        await subscribe(api, "ven-a-client", subscription(receiver.url()))
        _, event = await api.call("POST", "/events", client="bl", json=event_body(["ven-a"]),
                                  expect=201)
        await eventually(lambda: deliveries(store) and deliveries(store)[0].attempts >= 1,
                         what="a failed first attempt")
        kill(first)                         # mid-retry: the row is all that is left
        [row] = deliveries(store)
        assert row.delivered_at is None and row.last_error.startswith("cannot connect")
        await receiver.start()
        listening(vtn_serve(port), port)
        await eventually(lambda: receiver.received, what="the delivery after the restart")
        await eventually(lambda: deliveries(store)[0].delivered_at, what="the row delivered")
        await asyncio.sleep(0.3)
        assert [(r["body"]["operation"], r["body"]["object"]["id"]) for r in receiver.received] \
            == [("CREATE", event["id"])]
    finally:
        await api.session.close()
        if receiver.runner is not None:
            await receiver.stop()


async def test_two_vtn_processes_on_one_database_deliver_each_notification_once(
        store, enrolled, receiver, vtn_serve):
    ports = [_free_port(), _free_port()]
    procs = [vtn_serve(port) for port in ports]     # both start at once
    for proc, port in zip(procs, ports):
        listening(proc, port)
    api = Api31(f"http://127.0.0.1:{ports[0]}", aiohttp.ClientSession(), enrolled)
    try:
        for i in range(10):
            await subscribe(api, "bl", subscription(receiver.url(f"/s{i}")))
        program, events = model.load("connected_solutions"), []
        for i in range(10):     # written by this process; both VTNs race to send
            events.append(lifecycle.publish(store, program, start_in(30 + i), start_in(90 + i),
                                            ["ven-a"], SystemClock(), setpoint_kw=1.0).event_id)
        await eventually(lambda: len(receiver.received) >= 100, what="100 notifications")
        await asyncio.sleep(0.5)
        got = sorted((r["path"], r["body"]["object"]["id"]) for r in receiver.received)
        assert got == sorted((f"/s{i}", e) for i in range(10) for e in events)   # once each
        assert all(row.attempts == 1 for row in deliveries(store))
    finally:
        await api.session.close()
