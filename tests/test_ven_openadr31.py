"""Our VEN agent in 3.1 mode against our VTN's 3.1 edge over real HTTP on 127.0.0.1: it
gets a token, finds its VEN, registers its resource, subscribes its own webhook, reads
its events (re-reading them, so no notification is needed), executes every interval
through the same policy and sim device as a 2.0b agent, and posts its outbox as 3.1
reports that land in the VTN's telemetry rows; through a VTN outage nothing is lost.

Time is compressed: the program's 15 minutes are one wall-clock second.
"""
import asyncio
import json
from datetime import datetime, timedelta

import aiohttp
import pytest
from sqlmodel import select

from flexadr.clock import SystemClock, ceil_to
from schedules import model
from tests.harness import BATTERY, eventually
from tests.test_openadr31_api import SECRET, enrol, start_api
from tests.test_openadr31_notify import clients, start_edge
from tests.test_ven_resilience import _assert_contiguous
from ven import config as ven_config
from ven.agent import AgentConfig, VenAgent
from ven.cli import main as ven_main
from ven.openadr31.settings import NOTIFY_PATH, Oadr31Settings
from ven.policy import OwnerPrefs
from ven.store import LocalDatabase
from vtn import event_control
from vtn.audit import Actor
from vtn.openadr31 import Server, Settings, mapping
from vtn.openadr31.schemas import EventRequest
from vtn.store import Oadr3Subscription, Resource

SCALE = 900.0
REPORT = timedelta(minutes=15) / SCALE       # one wall-clock second
HALF_HOUR = 2 * REPORT


async def sleep_until(when) -> None:
    await asyncio.sleep(max(0.0, (when - SystemClock().now()).total_seconds()))


def agent_config(tmp_path, url: str, secret: str, name: str = "ven-31",
                 reread: timedelta = timedelta(seconds=1), webhook: bool = True) -> AgentConfig:
    return AgentConfig(
        ven_name=name, vtn_url=url, protocol="3.1",
        oadr31=Oadr31Settings(client_id=f"{name}-client", client_secret=secret, reread=reread,
                              webhook_host="127.0.0.1" if webhook else None),
        adapter="sim", adapter_config=dict(BATTERY, time_scale=SCALE),
        capacity_kwh=BATTERY["capacity_kwh"], max_discharge_kw=BATTERY["max_discharge_kw"],
        prefs=OwnerPrefs(min_soc_pct=20), time_scale=SCALE,
        state_url=f"sqlite:///{tmp_path / 'ven.sqlite'}")


def profile_event(values, lead=4 * REPORT, step=HALF_HOUR, targets=("ven-31",)):
    """A DISPATCH_SETPOINT event, one interval per value, back to back."""
    start = ceil_to(SystemClock().now() + lead, REPORT)
    return start, {"programID": "connected_solutions", "targets": list(targets),
                   "intervalPeriod": {"start": start.isoformat(),
                                      "duration": f"PT{step.total_seconds():g}S"},
                   "intervals": [{"id": n, "payloads": [{"type": "DISPATCH_SETPOINT",
                                                         "values": [v]}]}
                                 for n, v in enumerate(values)]}


# The dispatch rules refuse a minutes-long event at any hour from a 3.1 BL client, which
# may not override them. These compressed-time events are made by an operator who does,
# from the same 3.1 body through the 3.1 edge's own interval mapping; the VENs then read
# them over 3.1 like any event (docs/dispatch.md).
OPERATOR = Actor("operator-test", "operator")
COMPRESSED = "a compressed-time test event (seconds long, at any hour)"


def _schedule(body: dict) -> tuple[model.Program, datetime, datetime, list]:
    program = model.load(body["programID"])
    start, end, steps = mapping.event_schedule(EventRequest.model_validate(body), program,
                                               SystemClock().now())
    return program, start, end, steps


async def post_event(api, store, body: dict) -> dict:
    """The event as the 3.1 API shows it to business logic."""
    program, start, end, steps = _schedule(body)
    ven_ids = [store.ven_by_name(name).ven_id for name in body.get("targets", ())]
    event = event_control.create_event(
        store, SystemClock(), program, start, end, ven_ids, OPERATOR,
        setpoint_kw=steps[0].value, steps=steps if len(steps) > 1 else None,
        override_reason=COMPRESSED)
    _, shown = await api.call("GET", f"/events/{event.event_id}", "/events/{eventID}",
                              client="bl", expect=200)
    return shown


def change_event(store, event_id: str, body: dict) -> None:
    _, start, end, steps = _schedule(body)
    event_control.change_event(store, SystemClock(), event_id, OPERATOR, start=start, end=end,
                               steps=steps, override_reason=COMPRESSED)


@pytest.fixture
async def vtn31(store):
    enrol(store, "ven-31")
    server, api = await start_edge(store, clients(store, ("ven-31",)))
    yield server, api
    await api.session.close()
    await server.stop()


@pytest.fixture
async def agent(vtn31, tmp_path):
    _, api = vtn31
    agent = VenAgent(agent_config(tmp_path, api.url, api.secrets["ven-31-client"]),
                     SystemClock(), database=LocalDatabase(f"sqlite:///{tmp_path / 'ven.sqlite'}"))
    await agent.start()
    yield agent
    await agent.stop()


async def test_a_31_agent_registers_and_executes_every_interval_and_reports(vtn31, agent, store):
    _, api = vtn31
    await eventually(lambda: agent.registered, 10, "registered over 3.1")
    assert agent.ven_id == "ven-31"
    with store.session() as s:
        assert [r.resource_id for r in s.exec(select(Resource)).all()] == ["device"]
        (subscription,) = s.exec(select(Oadr3Subscription)).all()
    operation = json.loads(subscription.body)["objectOperations"][0]
    assert operation["callbackUrl"] == agent.link.webhook_url and operation["bearerToken"]

    start, body = profile_event([5.0, 2.0, 4.0])
    event = await post_event(api, store, body)
    await eventually(lambda: event["id"] in agent.decisions, 10, "the event read (re-read)")
    assert agent.decisions[event["id"]].opt.value == "optIn"
    end = start + 3 * HALF_HOUR
    await sleep_until(end + 2 * REPORT)
    await eventually(lambda: agent.store.backlog() == 0, 10, "the outbox sent")

    # Device truth: each interval's own setpoint (discharge, so negative power into it).
    device = agent.adapter.device
    for n, kw in enumerate([5.0, 2.0, 4.0]):
        begin = start + n * HALF_HOUR
        assert -device.mean_kw(begin, begin + HALF_HOUR) == pytest.approx(kw, rel=0.02)
    # ... and the VTN's telemetry rows say the same, every interval once.
    points = store.telemetry("ven-31")
    _assert_contiguous(points, REPORT)
    during = [p.kw for p in points if start <= p.interval_start < end]
    assert during == pytest.approx([-5.0, -5.0, -2.0, -2.0, -4.0, -4.0], rel=0.03)
    assert all(p.kwh is not None and p.soc_pct is not None for p in points)


async def test_a_deleted_event_is_cancelled_at_the_next_read(vtn31, agent, store):
    _, api = vtn31
    start, body = profile_event([4.0, 4.0], lead=2 * REPORT)
    event = await post_event(api, store, body)
    await eventually(lambda: event["id"] in agent.decisions, 10, "the event read")
    await sleep_until(start + REPORT)
    device = agent.adapter.device
    assert device.power_kw() < 0
    await api.call("DELETE", f"/events/{event['id']}", "/events/{eventID}", client="bl",
                   expect=200)
    await eventually(lambda: agent.decisions[event["id"]].reason == "cancelled", 10, "cancelled")
    assert device.power_kw() == 0
    assert agent.store.event(event["id"]).cancelled


async def test_a_webhook_notification_makes_the_agent_act_without_a_re_read(store, tmp_path):
    """The VTN's notifier (database outbox, webhook POST with the subscription's bearer
    token) brings the event; the agent re-reads only hourly, so only the webhook can."""
    enrol(store, "ven-31")
    server, api = await start_edge(store, clients(store, ("ven-31",)))
    config = agent_config(tmp_path, api.url, api.secrets["ven-31-client"],
                          reread=timedelta(hours=1))
    agent = VenAgent(config, SystemClock(),
                     database=LocalDatabase(f"sqlite:///{tmp_path / 'ven.sqlite'}"))
    await agent.start()
    try:
        await eventually(lambda: agent.link.reads == 1, 10, "the first read")
        assert agent.link.webhook_url.endswith(NOTIFY_PATH)
        _, body = profile_event([3.0])
        event = await post_event(api, store, body)
        await eventually(lambda: event["id"] in agent.decisions, 10, "the event by webhook")
        assert agent.decisions[event["id"]].opt.value == "optIn" and agent.link.reads == 1
        await api.call("DELETE", f"/events/{event['id']}", "/events/{eventID}", client="bl",
                       expect=200)
        await eventually(lambda: agent.decisions[event["id"]].reason == "cancelled", 10,
                    "the cancellation by webhook")

        # The webhook answers only the VTN: no or a wrong bearer token is a 401, and a
        # body that is no notification a 400; the agent does nothing with either.
        notification = {"objectType": "EVENT", "operation": "CREATE", "object": event}
        async with aiohttp.ClientSession() as session:
            for headers, data, status in [
                    ({}, json.dumps(notification), 401),
                    ({"Authorization": "Bearer wrong"}, json.dumps(notification), 401),
                    ({"Authorization": f"Bearer {agent.link.webhook_token}"}, "{not json", 400)]:
                async with session.post(agent.link.webhook_url, data=data,
                                        headers=headers) as response:
                    assert response.status == status
        assert agent.decisions[event["id"]].reason == "cancelled"
    finally:
        await agent.stop()
        await api.session.close()
        await server.stop()


async def test_a_refused_callback_leaves_the_re_read(store, tmp_path):
    """A VTN that will not call a loopback address refuses the subscription: the agent
    registers anyway and reads its events every `reread`."""
    enrol(store, "ven-31")
    server, api = await start_api(store, ("ven-31",))      # private callbacks refused
    agent = VenAgent(agent_config(tmp_path, api.url, api.secrets["ven-31-client"]),
                     SystemClock(), database=LocalDatabase(f"sqlite:///{tmp_path / 'v.sqlite'}"))
    await agent.start()
    try:
        await eventually(lambda: agent.registered and agent.link.reads >= 1, 10, "registered")
        with store.session() as s:
            assert s.exec(select(Oadr3Subscription)).all() == []
        _, body = profile_event([3.0])
        event = await post_event(api, store, body)
        await eventually(lambda: event["id"] in agent.decisions, 10, "the event by re-read")
    finally:
        await agent.stop()
        await api.session.close()
        await server.stop()


async def test_reports_survive_a_vtn_outage_and_arrive_once(store, tmp_path):
    enrol(store, "ven-31")
    server, api = await start_api(store, ("ven-31",))
    port = int(api.url.rsplit(":", 1)[1])
    agent = VenAgent(agent_config(tmp_path, api.url, api.secrets["ven-31-client"],
                                  webhook=False), SystemClock(),
                     database=LocalDatabase(f"sqlite:///{tmp_path / 'ven.sqlite'}"))
    await agent.start()
    try:
        start, body = profile_event([2.0, 2.0], lead=2 * REPORT)
        event = await post_event(api, store, body)
        await eventually(lambda: event["id"] in agent.decisions, 10, "the event read")
        await eventually(lambda: store.telemetry("ven-31"), 10, "a first report")
        await server.stop()                               # the VTN goes away ...
        stopped_at = SystemClock().now()
        await asyncio.sleep(6 * REPORT.total_seconds())   # ... the agent keeps sampling
        assert agent.store.backlog() >= 4
        server = Server(store, SystemClock(), Settings(token_secret=SECRET, port=port))
        await server.start()                              # ... and is back
        restarted_at = SystemClock().now()
        # Drained backlog alone can race the first sample taken after the restart.
        await eventually(lambda: agent.store.backlog() == 0
                    and store.telemetry("ven-31")[-1].interval_end > restarted_at,
                    20, "the backlog and a report from after the restart sent")
        points = store.telemetry("ven-31")
        _assert_contiguous(points, REPORT)
        assert points[0].interval_start < stopped_at and points[-1].interval_end > restarted_at
        during = [p.kw for p in points if start <= p.interval_start < start + 2 * HALF_HOUR]
        assert during == pytest.approx([-2.0] * 4, rel=0.03)
    finally:
        await agent.stop()
        await api.session.close()
        await server.stop()


async def test_a_restarted_agent_resumes_and_reads_what_changed_while_it_was_down(
        vtn31, tmp_path, store):
    _, api = vtn31
    config = agent_config(tmp_path, api.url, api.secrets["ven-31-client"], webhook=False)
    database = LocalDatabase(f"sqlite:///{tmp_path / 'ven.sqlite'}")
    first = VenAgent(config, SystemClock(), database=database)
    await first.start()
    start, body = profile_event([4.0, 4.0], lead=2 * REPORT)
    event = await post_event(api, store, body)
    await eventually(lambda: event["id"] in first.decisions, 10, "the event read")
    await first.stop()                          # the agent goes down before the event ...
    adapter = first.adapter
    body["intervals"][1]["payloads"][0]["values"] = [1.0]      # ... and BL changes it
    change_event(store, event["id"], body)
    second = VenAgent(config, SystemClock(), adapter=adapter, database=database)
    await second.start()
    try:
        assert second.decisions[event["id"]].opt.value == "optIn"     # from its local store
        await eventually(lambda: second.link.reads >= 1, 10, "the first read after the restart")
        await sleep_until(start + 2 * HALF_HOUR)
        device = adapter.device
        assert -device.mean_kw(start, start + HALF_HOUR) == pytest.approx(4.0, rel=0.02)
        assert -device.mean_kw(start + HALF_HOUR, start + 2 * HALF_HOUR) == pytest.approx(
            1.0, rel=0.02)
    finally:
        await second.stop()


# --- ven.toml ------------------------------------------------------------------------------
def test_ven_toml_takes_protocol_31_with_its_own_keys(tmp_path, capsys):
    (tmp_path / "secret").write_text("s3cret\n")
    base = ('ven_name = "m-17"\nvtn_url = "https://vtn.example.org:8081"\n'
            'capacity_kwh = 13.5\n')
    good = base + ('protocol = "3.1"\n[oadr31]\nclient_id = "m-17"\n'
                   'client_secret_file = "secret"\nreread_s = 30\n'
                   '[oadr31.webhook]\nhost = "0.0.0.0"\nport = 8090\n'
                   'url = "https://m-17.example.org/oadr31/notify"\n')
    path = tmp_path / "ven.toml"
    path.write_text(good)
    config = ven_config.load_agent(path)
    assert (config.protocol, config.cert, config.oadr31.client_secret) == ("3.1", None, "s3cret")
    assert config.oadr31.reread == timedelta(seconds=30) and config.oadr31.webhook_port == 8090
    (tmp_path / "empty").write_text("")
    for text, expected in [
        (base + 'protocol = "3.1"\n', "oadr31: missing"),
        (base + 'protocol = "3.0"\n', "protocol"),
        (base, "cert: missing; key: missing; ca_file: missing"),
        (good.replace('protocol = "3.1"', 'protocol = "2.0b"\ncert = "secret"\nkey = "secret"\n'
                      'ca_file = "secret"'), 'is for protocol = "3.1"'),
        (good.replace('client_secret_file = "secret"', 'client_secret_file = "empty"'),
         "is empty"),
        (good.replace("reread_s", "reread"), "did you mean 'reread_s'"),
        (good.replace('url = "https', 'url = "ftp'), "oadr31.webhook.url"),
    ]:
        path.write_text(text)
        assert ven_main(["run", "--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert expected in err and len(err.strip().splitlines()) == 1, err


# --- a 3.1 event object as the policy's Event (pure) ----------------------------------------
def test_a_31_event_becomes_the_policys_event():
    from datetime import datetime, timezone

    from ven.openadr31.events import EventError, from_31
    now = datetime(2026, 7, 1, 16, tzinfo=timezone.utc)
    body = {"id": "e1", "programID": "managed_charging", "priority": 0, "targets": ["ev-1"],
            "payloadDescriptors": [{"objectType": "EVENT_PAYLOAD_DESCRIPTOR",
                                    "payloadType": "IMPORT_CAPACITY_LIMIT", "units": "PERCENT"}],
            "intervalPeriod": {"start": "0001-01-01T00:00:00Z", "duration": "PT1H",
                               "randomizeStart": "PT5M"},
            "intervals": [{"id": 0, "payloads": [{"type": "IMPORT_CAPACITY_LIMIT",
                                                  "values": [50]}]},
                          {"id": 1, "intervalPeriod": {"duration": "PT2H"},
                           "payloads": [{"type": "IMPORT_CAPACITY_LIMIT", "values": [0, 25]}]}]}
    event = from_31(body, now, "ev-1", "ven-7")
    (signal,) = event.signals
    assert (signal.name, signal.type) == ("LOAD_CONTROL", "x-loadControlCapacity")
    hour = timedelta(hours=1)
    # 'now' start; the second interval follows the first; two values are two sub-intervals.
    assert [(i.start - now, i.duration, i.payload) for i in signal.intervals] == [
        (timedelta(0), hour, 0.5), (hour, hour, 0.0), (2 * hour, hour, 0.25)]
    assert (event.start, event.duration) == (now, 3 * hour)
    assert event.priority == 1 and event.start_after == timedelta(minutes=5)
    assert event.targets.ven_ids == ("ven-7",)          # its own name, as its VEN id

    kw = from_31({**body, "payloadDescriptors": [], "priority": None, "intervals": [
        {"id": 0, "payloads": [{"type": "DISPATCH_SETPOINT", "values": [4.5]},
                               {"type": "GHG", "values": [0.3]}]}]}, now, "ev-1", "ven-7")
    assert [(s.name, s.type, s.intervals[0].payload) for s in kw.signals] == [
        ("LOAD_DISPATCH", "setpoint", 4.5), ("GHG", "3.1", 0.3)]
    assert kw.priority == 0                               # none: 2.0b's lowest
    for bad in ({**body, "intervals": []}, {**body, "intervals": [{"id": 0}]},
                {**body, "intervalPeriod": {"start": "2026-07-01T16:00:00Z"}}):
        with pytest.raises(EventError):
            from_31(bad, now, "ev-1", "ven-7")
