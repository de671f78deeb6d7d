"""Participant notices through real channels: a local SMTP server (aiosmtpd) and an HTTP webhook."""
import email
import email.policy
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone

import aiohttp
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from flexadr.clock import ManualClock
from flexadr.demo import _free_port
from schedules import model
from vtn import audit, lifecycle
from vtn.notify import (ChannelNotifier, EmailNotifier, NoticeService, WebhookNotifier,
                        record_opt_out)
from vtn.programs import ensure_program
from vtn.store import Participant, Ven

T0 = datetime(2026, 7, 2, 17, 0, tzinfo=timezone.utc)     # 13:00 in Maine
TIMEOUT = aiohttp.ClientTimeout(total=10)


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, email.message_from_bytes(envelope.content, policy=email.policy.default)))
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    yield inbox, controller.port
    controller.stop()


@asynccontextmanager
async def http_server(**posts):
    """A local HTTP server answering POST /NAME with posts[NAME]; yields its base URL."""
    app = web.Application()
    for name, handler in posts.items():
        app.router.add_post(f"/{name}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def webhook():
    received = []

    async def hook(request):
        received.append(await request.json())
        return web.json_response({"ok": True})
    async with http_server(hook=hook) as url:
        yield received, f"{url}/hook"


def _setup(store, webhook_url):
    ensure_program(store, "managed_charging")
    store.add_participant(Participant(participant_id="alice", name="Alice", household_id="h1",
                                      email="alice@example.org", channel="email"))
    store.add_participant(Participant(participant_id="bob", name="Bob", household_id="h2",
                                      webhook_url=webhook_url, channel="webhook"))
    for ven_id, participant in [("ev-alice", "alice"), ("ev-bob", "bob"), ("ev-nobody", None)]:
        store.enrol(Ven(ven_id=ven_id, ven_name=ven_id, fingerprint=f"fp-{ven_id}",
                        program_id="managed_charging", device_kind="ev_managed",
                        participant_id=participant))


async def test_publication_and_follow_up_notices_reach_email_and_webhook(store, smtp, webhook):
    inbox, smtp_port = smtp
    hooks, hook_url = webhook
    _setup(store, hook_url)
    clock = ManualClock(T0 - timedelta(hours=24))
    notifier = ChannelNotifier(email=EmailNotifier("127.0.0.1", smtp_port, "vtn@utility.example"),
                               webhook=WebhookNotifier(allow_private=True))
    notices = NoticeService(store, notifier, clock, public_url="https://vtn.example/")
    event = lifecycle.publish(store, model.load("managed_charging"), T0, T0 + timedelta(hours=8),
                              ["ev-alice", "ev-bob", "ev-nobody"], clock)
    assert event.follow_up_at == T0 - timedelta(hours=4)

    sent = await notices.dispatch_due()
    assert sorted((n.ven_id, n.kind, n.delivered) for n in sent) == [
        ("ev-alice", "published", True), ("ev-bob", "published", True)]
    assert await notices.dispatch_due() == []          # nothing twice

    [(recipients, message)] = inbox.messages
    assert recipients == ["alice@example.org"]
    assert message["Subject"].startswith("Efficiency Maine EV Managed Charging event Thursday 02 July")
    body = message.get_content()
    assert "13:00 to 21:00 (EDT)" in body
    alice_link = next(line for line in body.splitlines() if line.startswith("https://vtn.example/optout/"))
    [hook] = hooks
    assert (hook["participant_id"], hook["event_id"], hook["kind"]) == ("bob", event.event_id,
                                                                         "published")
    assert hook["opt_out_url"].startswith("https://vtn.example/optout/")

    clock.set(T0 - timedelta(hours=5))
    assert await notices.dispatch_due() == []          # follow-up not due yet
    clock.set(T0 - timedelta(hours=4))
    sent = await notices.dispatch_due()
    assert sorted((n.ven_id, n.kind) for n in sent) == [("ev-alice", "follow_up"),
                                                        ("ev-bob", "follow_up")]
    assert inbox.messages[-1][1]["Subject"].startswith("Reminder: ")
    assert len(inbox.messages) == 2 and len(hooks) == 2

    # Alice follows her link: her opt-out is recorded for that event only.
    token = alice_link.rsplit("/", 1)[1]
    assert record_opt_out(store, token, clock)[0] is True
    target = store.target(event.event_id, "ev-alice")
    assert (target.opt_type, target.opt_source) == ("optOut", "notice")
    assert store.target(event.event_id, "ev-bob").opt_type is None
    # The VEN's later automatic optIn does not undo the participant's choice.
    store.record_opt("ev-alice", event.event_id, "optIn", clock.now())
    assert store.target(event.event_id, "ev-alice").opt_type == "optOut"
    assert record_opt_out(store, "forged-token", clock) == (False, "This opt-out link is not valid.")
    with store.session() as session:          # the participant's choice, in the audit trail
        (row,) = audit.query(session, action="event.opt_out")
    assert row.subject_id == f"{event.event_id}/ev-alice" and row.actor.startswith("participant:")
    assert audit.as_dict(row)["after"]["opt_type"] == "optOut"


async def test_a_failing_channel_is_recorded_and_does_not_stop_the_others(store, smtp):
    inbox, smtp_port = smtp
    _setup(store, "http://127.0.0.1:9/nowhere")       # nothing listens on port 9
    clock = ManualClock(T0 - timedelta(hours=24))
    notifier = ChannelNotifier(email=EmailNotifier("127.0.0.1", smtp_port, "vtn@utility.example"),
                               webhook=WebhookNotifier(timeout_s=5, allow_private=True))
    notices = NoticeService(store, notifier, clock)
    lifecycle.publish(store, model.load("managed_charging"), T0, T0 + timedelta(hours=8),
                      ["ev-alice", "ev-bob"], clock)
    sent = {n.ven_id: n for n in await notices.dispatch_due()}
    assert sent["ev-alice"].delivered is True and len(inbox.messages) == 1
    stored = store.notices(ven_id="ev-bob")[0]
    assert stored.delivered is False and stored.error


async def test_opt_out_link_opens_a_confirmation_page_and_the_post_records_it(tmp_path, store,
                                                                              smtp):
    from certs.pki import ensure_dev_pki
    from vtn.service import Vtn, VtnConfig
    inbox, smtp_port = smtp
    _setup(store, "http://127.0.0.1:9/unused")
    clock = ManualClock(T0 - timedelta(hours=24))
    pki = ensure_dev_pki(tmp_path / "pki", [])
    admin_port = _free_port()
    vtn = Vtn(VtnConfig("TEST_VTN", "127.0.0.1", _free_port(), pki.vtn.cert, pki.vtn.key,
                        pki.ca.cert, admin_port=admin_port,
                        public_url=f"http://127.0.0.1:{admin_port}"),
              store, clock, notifier=EmailNotifier("127.0.0.1", smtp_port, "vtn@utility.example"))
    await vtn.start(run_ticker=False)
    try:
        event = lifecycle.publish(store, model.load("managed_charging"), T0,
                                  T0 + timedelta(hours=8), ["ev-alice"], clock)
        await vtn.tick()
        link = next(line for line in inbox.messages[0][1].get_content().splitlines()
                    if "/optout/" in line)
        async with aiohttp.ClientSession(timeout=TIMEOUT) as session:
            for method in ("GET", "POST"):
                async with session.request(method, link + "x") as response:
                    assert response.status == 404
            # A mail scanner following the link records nothing: GET only asks.
            for _ in range(2):
                async with session.get(link) as response:
                    page = await response.text()
                    assert response.status == 200 and '<form method="post"' in page
                    assert event.event_id in page
            assert store.target(event.event_id, "ev-alice").opt_type is None
            async with session.post(link) as response:
                assert response.status == 200 and "opted out" in await response.text()
        assert store.target(event.event_id, "ev-alice").opt_type == "optOut"
    finally:
        await vtn.stop()


async def test_offline_for_more_than_three_events_notifies_once_and_flags_unenrolment(store, smtp):
    inbox, smtp_port = smtp
    _setup(store, "http://127.0.0.1:9/unused")
    clock = ManualClock(T0 - timedelta(days=30))
    notices = NoticeService(store, EmailNotifier("127.0.0.1", smtp_port, "vtn@utility.example"),
                            clock)
    program = model.load("managed_charging")
    events = []
    for day in range(5):
        start = T0 - timedelta(days=20 - day)
        clock.set(start - timedelta(hours=24))
        events.append(lifecycle.publish(store, program, start, start + timedelta(hours=8),
                                        ["ev-alice"], clock))
        if day == 0:   # online during the first event only
            store.record_points("ev-alice", [(start, start + timedelta(minutes=15),
                                              {"online": True, "kw": 0.0})])
        clock.set(start + timedelta(hours=9))
        lifecycle.advance(store, clock)
        await notices.dispatch_due()
        connectivity = store.notices(kind="connectivity")
        # Offline for events 2, 3, 4: no notice yet; the 4th offline event (day 4) crosses.
        assert len(connectivity) == (1 if day == 4 else 0), day
    assert [e.event_id for e in notices.offline_streak("ev-alice")] == [
        e.event_id for e in events[1:]]
    connectivity_mails = [m for _, m in inbox.messages if "offline" in m["Subject"]]
    assert len(connectivity_mails) == 1
    await notices.dispatch_due()
    assert len(store.notices(kind="connectivity")) == 1
    notified_at = store.notices(kind="connectivity")[0].sent_at

    clock.set(notified_at + timedelta(days=6))
    assert notices.to_unenrol() == []
    clock.set(notified_at + timedelta(days=7))
    assert [row["ven_id"] for row in notices.to_unenrol()] == ["ev-alice"]
    # Reconnecting clears it.
    store.record_points("ev-alice", [(clock.now(), clock.now() + timedelta(minutes=15),
                                      {"online": True})])
    assert notices.to_unenrol() == []


@pytest.fixture
async def redirecting_webhook():
    """A webhook that answers 307 to another path, counting what reaches each."""
    hits = {"hook": 0, "inside": 0}

    async def hook(request):
        hits["hook"] += 1
        raise web.HTTPTemporaryRedirect("/inside")

    async def inside(request):
        hits["inside"] += 1
        return web.json_response({"ok": True})
    async with http_server(hook=hook, inside=inside) as url:
        yield hits, f"{url}/hook"


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/",
                                 "http://127.0.0.1:9/hook", "http://10.1.2.3/hook",
                                 "http://[::1]/hook", "http://2130706433/hook",
                                 "http://localhost/hook", "file:///etc/passwd"])
async def test_webhooks_to_internal_addresses_are_not_called(store, url):
    _setup(store, url)
    clock = ManualClock(T0 - timedelta(hours=24))
    notices = NoticeService(store, WebhookNotifier(timeout_s=5), clock)
    lifecycle.publish(store, model.load("managed_charging"), T0, T0 + timedelta(hours=8),
                      ["ev-bob"], clock)
    await notices.dispatch_due()
    [notice] = store.notices(ven_id="ev-bob")
    assert notice.delivered is False
    assert any(word in notice.error for word in ("loopback", "link-local", "private", "scheme"))


async def test_a_webhook_redirect_is_not_followed(store, redirecting_webhook):
    hits, url = redirecting_webhook
    _setup(store, url)
    clock = ManualClock(T0 - timedelta(hours=24))
    notices = NoticeService(store, WebhookNotifier(timeout_s=5, allow_private=True), clock)
    lifecycle.publish(store, model.load("managed_charging"), T0, T0 + timedelta(hours=8),
                      ["ev-bob"], clock)
    await notices.dispatch_due()
    assert hits == {"hook": 1, "inside": 0}
    assert store.notices(ven_id="ev-bob")[0].delivered is False
