"""OpenADR 3.1 event fan-out to N VENs: webhooks, MQTT (Mosquitto), and the 2.0b poll path.

    .venv/bin/python -m bench.fanout31 --vens 1000 [--poll-s 60]

The VTN's 3.1 edge and its notifier run in a process of their own on a SQLite store with
N enrolled VENs, each with its own 3.1 client. Business logic POSTs one event for all of
them; the clock starts at its 201. Every VEN here (all in this process):

- **webhook**: has a subscription whose callbackUrl is a real aiohttp server on loopback;
  on its notification it GETs /events/{id} with its own token;
- **mqtt**: is logged in to Mosquitto with its client id and secret (files written by
  `vtn mqtt acl`), subscribed to vens/{venID}/events/+; on its notification it GETs the
  event.

Each path is its own phase (its own VTN process: the webhook phase has no broker, the
MQTT phase no subscriptions). Reported per phase: time until every VEN was notified and
until every VEN had read the event (p50 and max), and the VTN process's CPU time over the
phase. The 2.0b path is modelled, not measured: a VEN polls every `--poll-s` at a phase
of its own, so the last of N VENs gets the event after poll_s * N/(N+1) on average
(half the VENs after poll_s / 2); bench/poll.py measures a signed poll's CPU.

Tokens are minted by the edge's own TokenIssuer.issue (the token endpoint's scrypt check,
~50 ms per client, would dominate the set-up of 1,000 clients). One JSON line.
"""
from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import multiprocessing as mp
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import aiomqtt
from aiohttp import web

SECRET = "bench-token-secret-of-at-least-32-bytes"
PROGRAM = "connected_solutions"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _settings(port: int, mqtt):
    from vtn.openadr31 import Settings
    from vtn.openadr31.settings import NotifySettings
    return Settings(token_secret=SECRET, port=port, mqtt=mqtt, notify=NotifySettings(
        interval=timedelta(seconds=0.1), allow_private_callbacks=True))


def _serve(url: str, port: int, mqtt, ready) -> None:
    import logging
    logging.disable(logging.WARNING)
    from flexadr.clock import SystemClock
    from vtn import openadr31
    from vtn.store import Store

    async def main():
        await openadr31.start(Store(url), SystemClock(), _settings(port, mqtt))
        ready.set()
        await asyncio.Event().wait()
    asyncio.run(main())


def populate(url: str, vens: int) -> tuple[dict[str, str], str]:
    """N enrolled VENs with 3.1 clients (one secret hashed once, shared) and a BL client;
    returns each client's token, and the VENs' secret."""
    from sqlmodel import select

    from vtn.openadr31.auth import TokenIssuer, broker_password_hash, create_client, hash_secret
    from vtn.store import Oadr3Client, Store, Ven
    store = Store(url)
    now = datetime.now(timezone.utc)
    shared = "bench-ven-secret"
    secret_hash, broker_hash = hash_secret(shared), broker_password_hash(shared)
    with store.session() as s:
        for i in range(vens):
            name = f"ven-{i:04d}"
            s.add(Ven(ven_id=name, ven_name=name, fingerprint=f"bench:{name}", program_id=PROGRAM,
                      device_kind="battery", client_id=f"{name}-client"))
            s.add(Oadr3Client(client_id=f"{name}-client", role="ven", created_at=now,
                              scopes="read_targets read_ven_objects write_reports "
                                     "write_subscriptions write_vens",
                              secret_hash=secret_hash, mqtt_password_hash=broker_hash))
        s.commit()
    create_client(store, "bl", "bl", now)
    issuer = TokenIssuer(store, SECRET, timedelta(hours=2), "flexadr-vtn")
    with store.session() as s:
        clients = s.exec(select(Oadr3Client)).all()
    tokens = {c.client_id: issuer.issue(c, c.scopes.split(), now) for c in clients}
    store.close()
    return tokens, shared


def subscribe_all(url: str, vens: int, callback_base: str) -> None:
    from vtn.store import Oadr3Subscription, Store
    store = Store(url)
    now = datetime.now(timezone.utc)
    with store.session() as s:
        for i in range(vens):
            body = {"clientName": f"ven-{i:04d}", "objectOperations": [{
                "objects": ["EVENT"], "operations": ["CREATE"],
                "callbackUrl": f"{callback_base}/ven-{i:04d}", "bearerToken": f"cb-{i}"}]}
            s.add(Oadr3Subscription(subscription_id=f"sub-{i:04d}", client_id=f"ven-{i:04d}-client",
                                    client_name=f"ven-{i:04d}", body=json.dumps(body),
                                    created_at=now, modified_at=now))
        s.commit()
    store.close()


class Fleet:
    """Times of notification and of the read, per VEN."""

    def __init__(self, api: str, tokens: dict[str, str], vens: int):
        self.api, self.tokens, self.vens = api, tokens, vens
        self.notified: dict[str, float] = {}
        self.read: dict[str, float] = {}
        self.done = asyncio.Event()
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100))

    async def on_notification(self, ven: str, event_id: str) -> None:
        self.notified.setdefault(ven, time.monotonic())
        headers = {"Authorization": f"Bearer {self.tokens[ven + '-client']}"}
        async with self.session.get(f"{self.api}/events/{event_id}", headers=headers) as r:
            assert r.status == 200, (ven, r.status, await r.text())
            assert (await r.json())["targets"] == [ven]
        self.read.setdefault(ven, time.monotonic())
        if len(self.read) == self.vens:
            self.done.set()

    def figures(self, t0: float) -> dict:
        notified = sorted(t - t0 for t in self.notified.values())
        read = sorted(t - t0 for t in self.read.values())
        return {"notified_first_s": round(notified[0], 3),
                "notified_p50_s": round(statistics.median(notified), 3),
                "notified_all_s": round(notified[-1], 3),
                "read_p50_s": round(statistics.median(read), 3),
                "read_all_s": round(read[-1], 3), "vens": len(read)}


async def create_event(api: str, token: str) -> tuple[str, float]:
    start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=1)
    body = {"programID": PROGRAM, "eventName": "bench",
            "intervalPeriod": {"start": start.isoformat(), "duration": "PT1H"},
            "intervals": [{"id": 0, "payloads": [{"type": "DISPATCH_SETPOINT", "values": [2.0]}]}]}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{api}/events", json=body,
                                headers={"Authorization": f"Bearer {token}"}) as response:
            assert response.status == 201, await response.text()
            return (await response.json())["id"], time.monotonic()


class Vtn:
    def __init__(self, url: str, mqtt=None):
        self.port = _free_port()
        context = mp.get_context("spawn")
        ready = context.Event()
        self.proc = context.Process(target=_serve, args=(url, self.port, mqtt, ready), daemon=True)
        self.proc.start()
        if not ready.wait(60):
            raise RuntimeError("the VTN did not start")
        self.api = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.join(10)


async def webhook_phase(url: str, tokens: dict, vens: int, timeout_s: float) -> dict:
    port = _free_port()
    subscribe_all(url, vens, f"http://127.0.0.1:{port}/cb")
    vtn = Vtn(url)
    fleet = Fleet(vtn.api, tokens, vens)

    async def receive(request: web.Request) -> web.Response:
        body = await request.json()
        asyncio.get_running_loop().create_task(
            fleet.on_notification(request.match_info["ven"], body["object"]["id"]))
        return web.Response(status=204)
    app = web.Application()
    app.router.add_post("/cb/{ven}", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    try:
        cpu0 = _cpu_s(vtn.proc.pid)
        _, t0 = await create_event(vtn.api, tokens["bl"])
        await asyncio.wait_for(fleet.done.wait(), timeout_s)
        return {**fleet.figures(t0), "vtn_cpu_s": round(_cpu_s(vtn.proc.pid) - cpu0, 2)}
    finally:
        await fleet.session.close()
        await runner.cleanup()
        vtn.stop()
        _unsubscribe(url)


def _unsubscribe(url: str) -> None:
    from sqlalchemy import delete
    from vtn.store import Oadr3Subscription, Store
    store = Store(url)
    with store.session() as s:
        s.exec(delete(Oadr3Subscription))
        s.commit()
    store.close()


def start_broker(workdir: Path, url: str, mosquitto: str):
    from vtn.openadr31.notify.mqtt import write_broker_files
    from vtn.openadr31.settings import MqttSettings
    from vtn.store import Store
    port = _free_port()
    mqtt = MqttSettings(url=f"mqtt://127.0.0.1:{port}", username="flexadr-vtn",
                        password=secrets.token_urlsafe(16))
    store = Store(url)
    write_broker_files(store, mqtt, workdir / "passwd", workdir / "acl")
    store.close()
    config = workdir / "mosquitto.conf"
    config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\n"
                      f"password_file {workdir / 'passwd'}\nacl_file {workdir / 'acl'}\n"
                      f"persistence false\nmax_queued_messages 10000\nuser {getpass.getuser()}\n")
    proc = subprocess.Popen([mosquitto, "-c", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return mqtt, port, proc
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    raise RuntimeError("mosquitto did not start")


async def mqtt_phase(url: str, tokens: dict, vens: int, secret: str, workdir: Path,
                     mosquitto: str, timeout_s: float) -> dict:
    mqtt, port, broker = start_broker(workdir, url, mosquitto)
    vtn = Vtn(url, mqtt)
    fleet = Fleet(vtn.api, tokens, vens)
    clients, tasks = [], []
    gate = asyncio.Semaphore(50)

    async def listen(ven: str) -> None:
        client = aiomqtt.Client("127.0.0.1", port, username=f"{ven}-client", password=secret,
                                identifier=ven)
        async with gate:
            await client.__aenter__()
            await client.subscribe(f"vens/{ven}/events/+", qos=1)
        clients.append(client)
        tasks.append(asyncio.create_task(_messages(client, ven)))

    async def _messages(client, ven):
        async for message in client.messages:
            await fleet.on_notification(ven, json.loads(message.payload)["object"]["id"])
    try:
        await asyncio.gather(*(listen(f"ven-{i:04d}") for i in range(vens)))
        cpu0 = _cpu_s(vtn.proc.pid)
        broker_cpu0 = _cpu_s(broker.pid)
        _, t0 = await create_event(vtn.api, tokens["bl"])
        await asyncio.wait_for(fleet.done.wait(), timeout_s)
        return {**fleet.figures(t0), "vtn_cpu_s": round(_cpu_s(vtn.proc.pid) - cpu0, 2),
                "broker_cpu_s": round(_cpu_s(broker.pid) - broker_cpu0, 2)}
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for client in clients:
            try:
                await client.__aexit__(None, None, None)
            except aiomqtt.MqttError:
                pass
        await fleet.session.close()
        vtn.stop()
        broker.terminate()
        broker.wait(10)


def poll_model(vens: int, poll_s: float) -> dict:
    """A VEN polls every poll_s at its own phase: the k-th of N gets it after k/(N+1) poll_s
    on average."""
    return {"modelled": True, "poll_s": poll_s, "read_p50_s": round(poll_s / 2, 1),
            "read_all_s": round(poll_s * vens / (vens + 1), 1)}


async def main(args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="fanout31-"))
    url = f"sqlite:///{workdir / 'vtn.sqlite'}"
    tokens, secret = populate(url, args.vens)
    result = {"bench": "fanout31", "vens": args.vens, "cpus": os.cpu_count(),
              "webhook": await webhook_phase(url, tokens, args.vens, args.timeout_s)}
    result["mqtt"] = await mqtt_phase(url, tokens, args.vens, secret, workdir, args.mosquitto,
                                      args.timeout_s)
    result["poll_20b"] = poll_model(args.vens, args.poll_s)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vens", type=int, default=1000)
    parser.add_argument("--poll-s", type=float, default=60.0)
    parser.add_argument("--timeout-s", type=float, default=300.0)
    parser.add_argument("--mosquitto", default="/usr/sbin/mosquitto")
    print(json.dumps(asyncio.run(main(parser.parse_args()))))
    sys.stdout.flush()
