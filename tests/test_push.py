"""The 2.0b push exchange model: our VTN POSTs the poll queue to push VENs over mutual TLS.

Real peers on 127.0.0.1: our VEN agent in push mode (its own aiohttp endpoint), a stock
openleadr 0.5.36 VEN polling beside it, and two VTN processes' worth of push delivery on
one database. Every message the VTN sends (pushed or answered) is checked against the
2.0b XSD and the profile rules by the `vtn_sent_messages` fixture.
"""
import asyncio
import dataclasses
from datetime import timedelta

import pytest
from lxml import etree

from flexadr import xsd
from flexadr.clock import SystemClock
from flexadr.demo import _free_port
from test_openadr_20b import Stock, eventually
from tests.harness import Site, running_site
from ven.agent import VenAgent
from ven.openadr20b.push_server import PushListen
from vtn import config as vtn_config
from vtn import lifecycle
from vtn.push import SERVICE, PushSettings
from vtn.service import Vtn
from vtn.store import PushEndpoint, Store, Ven
from vtn.store.models import OutboundMessage
from test_ven_resilience import HOUR, SCALE, _publish

FAST_RETRY = PushSettings(first_retry=timedelta(milliseconds=200), max_retry=timedelta(seconds=1))
EI = "{http://docs.oasis-open.org/ns/energyinterop/201110}"
DS = "{http://www.w3.org/2000/09/xmldsig#}"
PATH = "/OpenADR2/Simple/2.0b"
PYLD = "{http://docs.oasis-open.org/ns/energyinterop/201110/payloads}"


class Received:
    """What a VEN's push endpoint accepted, in order, each checked valid and signed."""

    def __init__(self, agent):
        self.trees: list[etree._Element] = []
        agent.link.client.add_hook("after_receive_xml", self._keep)
        self.sent: list[str] = []
        agent.link.client.add_hook("before_send_xml", self.sent.append)

    def _keep(self, xml: str) -> None:
        tree = xsd.validate(xml)
        # The hook also sees the answers to the VEN's own requests; of those, only the
        # oadrRequestEvent answer at start-up is of a pushed type.
        if xsd.message_type(tree) in SERVICE:
            self.trees.append(tree)

    def types(self) -> list[str]:
        return [xsd.message_type(tree) for tree in self.trees]

    def request_ids(self) -> list[str]:
        return [tree.findtext(f"./*/*/{PYLD}requestID") for tree in self.trees]

    def cancelled_reports(self) -> list[str]:
        return [tree.findtext(f".//{EI}reportRequestID") for tree in self.trees
                if xsd.message_type(tree) == "oadrCancelReport"]


async def _push_agent(site: Site, name: str) -> tuple[VenAgent, Received]:
    """An agent in push mode, recording what it receives from before it registers."""
    agent = VenAgent(_push_config(site, name), SystemClock(), database=site.database)
    received = Received(agent)
    await agent.start()
    site.agents.append(agent)
    return agent, received


def _push_config(site: Site, name: str):
    port = _free_port()
    return dataclasses.replace(site.agent_config(name), push=PushListen(
        "127.0.0.1", port, f"https://127.0.0.1:{port}{PATH}"))


async def _restart_vtn(site: Site, settings: PushSettings = FAST_RETRY) -> None:
    """A new VTN on the same database and port (the old one stopped first)."""
    config = dataclasses.replace(site.vtn.config, push_settings=settings)
    await site.vtn.stop()
    site.vtn = Vtn(config, site.store, SystemClock())
    await site.vtn.start()


def _on_database(site: Site, database_url: str) -> None:
    """The site's VTN store moved to `database_url` (PostgreSQL with -m db), VENs enrolled."""
    site.store.close()
    site.store = Store(database_url)
    for name, paths in site.pki.vens.items():
        site.store.enrol(Ven(ven_id=name, ven_name=name, fingerprint=paths.fingerprint,
                             program_id="connected_solutions", device_kind="battery"))


@pytest.fixture
async def site(tmp_path, database_url):
    async with running_site(tmp_path, SCALE, ("ven-a", "stock-1")) as site:
        _on_database(site, database_url)
        await _restart_vtn(site)
        yield site
    site.store.close()


def _signed(tree: etree._Element) -> bool:
    return tree.find(f"./{DS}Signature") is not None


async def test_push_ven_gets_the_event_opts_reports_and_is_cancelled_without_polling(
        site, vtn_sent_messages):
    agent, received = await _push_agent(site, "ven-a")
    assert agent.registered
    endpoint = _endpoint(site.store, "ven-a")
    assert endpoint.address == agent.config.push.public_url
    # The queued oadrCreateReport (TELEMETRY_STATUS) arrives pushed, and is acknowledged.
    await eventually(lambda: all(r.acknowledged_at for r in site.store.report_requests("ven-a")),
                     what="every report request acknowledged")
    event = _publish(site, lead=2 * HOUR, duration=2 * HOUR)
    await eventually(lambda: event.event_id in agent.decisions, what="event pushed")
    await eventually(lambda: site.store.target(event.event_id, "ven-a").opt_type == "optIn",
                     what="the oadrCreatedEvent answer stored")
    await agent.opt_out(event.event_id)      # the VEN's own requests still go to the VTN
    await eventually(lambda: site.store.opts("ven-a"), what="oadrCreateOpt stored")
    await eventually(lambda: any(p.plugged_in is not None for p in site.store.telemetry("ven-a")),
                     what="status telemetry stored")
    lifecycle.cancel(site.store, event.event_id, SystemClock())
    await eventually(lambda: agent.store.event(event.event_id).cancelled, what="cancel pushed")

    assert {"oadrCreateReport", "oadrDistributeEvent"} <= set(received.types())
    assert all(_signed(tree) for tree in received.trees)
    assert not [xml for xml in received.sent if "oadrPoll" in xml]    # a push VEN never polls
    await eventually(lambda: not site.store.pending_messages("ven-a"), what="all confirmed")
    pushed = [xml for xml in vtn_sent_messages if "oadrDistributeEvent" in xml]
    assert len(pushed) >= 2   # the event, then its cancellation


def _endpoint(store: Store, ven_id: str) -> PushEndpoint | None:
    with store.session() as s:
        return s.get(PushEndpoint, ven_id)


async def test_a_ven_down_gets_every_queued_message_once_in_order_even_across_a_vtn_restart(site):
    agent, received = await _push_agent(site, "ven-a")
    await eventually(lambda: all(r.acknowledged_at for r in site.store.report_requests("ven-a")),
                     what="report requests acknowledged")
    await agent.link.push_server.stop()          # the VEN's endpoint is gone for a while
    before = len(received.trees)
    requests = {r.report_name: r.report_request_id for r in site.store.report_requests("ven-a")}
    site.vtn.cancel_report(requests["TELEMETRY_USAGE"])
    first = _publish(site, lead=2 * HOUR, duration=2 * HOUR)
    site.vtn.cancel_report(requests["TELEMETRY_STATUS"])
    second = _publish(site, lead=3 * HOUR, duration=HOUR)
    await eventually(lambda: (_endpoint(site.store, "ven-a").attempts or 0) >= 2,
                     what="retries while the VEN is down")
    await _restart_vtn(site)                # nothing is lost across a VTN restart
    await asyncio.sleep(0.5)
    assert len(received.trees) == before
    await agent.link.push_server.start()
    await eventually(lambda: not site.store.pending_messages("ven-a"), what="queue delivered")
    await eventually(lambda: second.event_id in agent.decisions, what="second event")
    await asyncio.sleep(1.5)                # any duplicate would arrive meanwhile

    # In queue order; the first distribution carries every current event (as a poll's
    # would), so the second one no longer applies and is not sent.
    late = received.trees[before:]
    assert [xsd.message_type(t) for t in late] == [
        "oadrCancelReport", "oadrDistributeEvent", "oadrCancelReport"]
    assert {e.text for e in late[1].iter(f"{EI}eventID")} == {first.event_id, second.event_id}
    assert received.cancelled_reports() == [requests["TELEMETRY_USAGE"],
                                            requests["TELEMETRY_STATUS"]]
    assert len(set(received.request_ids())) == len(received.trees)
    assert site.store.target(second.event_id, "ven-a").opt_type == "optIn"
    endpoint = _endpoint(site.store, "ven-a")
    assert (endpoint.attempts, endpoint.failing_since, endpoint.lease_owner) == (0, None, None)


async def test_the_retry_interval_of_the_push_section_in_vtn_toml_is_the_one_delivery_waits(
        site, tmp_path):
    config = site.vtn.config
    path = tmp_path / "vtn.toml"
    path.write_text(f'vtn_id = "TEST_VTN"\nport = {config.port}\ncert = "{config.cert}"\n'
                    f'key = "{config.key}"\nca_file = "{config.ca_file}"\npoll_interval_s = 1\n'
                    "[push]\nfirst_retry_s = 30\nmax_retry_s = 40\n")
    await site.vtn.stop()
    site.vtn = Vtn(vtn_config.load(path).server, site.store, SystemClock())
    await site.vtn.start()
    agent, received = await _push_agent(site, "ven-a")
    await eventually(lambda: not site.store.pending_messages("ven-a"), what="settled")
    await agent.link.push_server.stop()
    _publish(site, lead=2 * HOUR, duration=HOUR)
    await eventually(lambda: _endpoint(site.store, "ven-a").attempts, what="a failed attempt")
    await asyncio.sleep(2.5)       # past the default first retry (2 s)
    endpoint = _endpoint(site.store, "ven-a")
    assert endpoint.attempts == 1
    assert endpoint.next_attempt_at - endpoint.failing_since == timedelta(seconds=30)


async def test_a_stock_pull_ven_works_beside_a_push_ven(site):
    agent, _ = await _push_agent(site, "ven-a")
    stock = Stock("stock-1", site.pki, f"https://127.0.0.1:{site.vtn.config.port}{PATH}")
    await asyncio.wait_for(stock.client.run(), 20)
    try:
        event = _publish(site, lead=2 * HOUR, duration=2 * HOUR)
        await eventually(lambda: stock.events and event.event_id in agent.decisions,
                         what="both VENs got the event")
        await eventually(lambda: all(t.opt_type == "optIn"
                                     for t in site.store.targets(event.event_id)),
                         what="both answers stored")
    finally:
        await stock.client.stop()
    assert _endpoint(site.store, "stock-1") is None
    assert "oadrDistributeEvent" in stock.types()


@pytest.mark.parametrize("address, why", [
    ("http://127.0.0.1:9/OpenADR2/Simple/2.0b", "https"),
    ("https://user:secret@127.0.0.1:9/OpenADR2", "credentials"),
    ("", "https URL"),
    ("https:///no-host", "no host"),
])
async def test_a_push_registration_with_a_bad_transport_address_is_refused(site, address, why):
    stock = Stock("stock-1", site.pki, f"https://127.0.0.1:{site.vtn.config.port}{PATH}")
    try:
        message = stock.client._create_message(
            "oadrCreatePartyRegistration", request_id="req-1", ven_name="stock-1", ven_id=None,
            http_pull_model=False, xml_signature=True, report_only=False, profile_name="2.0b",
            transport_name="simpleHttp", transport_address=address, registration_id=None)
        response_type, payload = await stock.client._perform_request("EiRegisterParty", message)
    finally:
        await stock.client.stop()
    assert response_type == "oadrCreatedPartyRegistration"
    assert payload["response"]["response_code"] == 454
    assert why in payload["response"]["response_description"]
    assert site.store.ven("stock-1").registration_id is None
    assert _endpoint(site.store, "stock-1") is None


async def test_a_push_registration_is_told_no_poll_frequency_and_xmpp_unserved_is_refused(
        site):
    stock = Stock("stock-1", site.pki, f"https://127.0.0.1:{site.vtn.config.port}{PATH}")
    answers = {}
    try:
        for transport, pull in (("simpleHttp", False), ("xmpp", True)):
            message = stock.client._create_message(
                "oadrCreatePartyRegistration", request_id="req-1", ven_name="stock-1",
                ven_id=None, http_pull_model=pull, xml_signature=True, report_only=False,
                profile_name="2.0b", transport_name=transport,
                transport_address="https://127.0.0.1:9/OpenADR2/Simple/2.0b", registration_id=None)
            answers[transport] = await stock.client._perform_request("EiRegisterParty", message)
    finally:
        await stock.client.stop()
    _, push = answers["simpleHttp"]
    assert push["response"]["response_code"] == 200 and push["registration_id"]
    assert "requested_oadr_poll_freq" not in push
    assert _endpoint(site.store, "stock-1").address == "https://127.0.0.1:9/OpenADR2/Simple/2.0b"
    _, xmpp = answers["xmpp"]
    assert xmpp["response"]["response_code"] == 451


async def test_two_vtn_processes_on_one_database_deliver_each_message_once(
        tmp_path, database_url):
    """Two VTNs (own store engines, own leases) on one database, both pushing."""
    async with running_site(tmp_path, SCALE, ("ven-a",)) as site:
        _on_database(site, database_url)
        await _restart_vtn(site)
        other_store = Store(database_url)
        other = Vtn(dataclasses.replace(site.vtn.config, port=_free_port()), other_store,
                    SystemClock())
        await other.start(run_ticker=False)
        try:
            agent, received = await _push_agent(site, "ven-a")
            await eventually(lambda: not site.store.pending_messages("ven-a"), what="settled")
            before = len(received.trees)
            ids = [f"r{i:02d}" for i in range(20)]
            for request_id in ids:
                site.store.enqueue("ven-a", "oadrCancelReport", {"report_request_id": request_id},
                                   SystemClock().now())
                await asyncio.sleep(0.02)
            await eventually(lambda: not site.store.pending_messages("ven-a"), what="delivered")
            await asyncio.sleep(1.0)
        finally:
            await other.stop()
            other_store.close()
    assert received.cancelled_reports()[-20:] == ids
    assert len(received.trees) - before == 20
    with site.store.session() as s:
        from sqlmodel import select
        rows = s.exec(select(OutboundMessage).where(OutboundMessage.ven_id == "ven-a")).all()
    assert all(row.delivered_at is not None for row in rows)
    site.store.close()
