"""Each event version reaches a VEN once, and reads the same whichever path it took.

A stock openleadr 0.5.36 client asks for events (oadrRequestEvent) right after it
registers, then polls; an event published before it registered must not come again
from the poll queue, and its status and createdDateTime must be the stored ones.
"""
import asyncio
from datetime import timedelta

import pytest
from lxml import etree

from flexadr import xsd
from test_openadr_20b import Stock, _publish, eventually, vtn  # noqa: F401  (fixture)
from vtn import lifecycle
from vtn.oadr_events import status_at

EI = "{http://docs.oasis-open.org/ns/energyinterop/201110}"


def _distributions(stock: Stock, event_id: str) -> list[etree._Element]:
    """The oadrDistributeEvent messages the stock VEN received that carry `event_id`."""
    found = []
    for xml in stock.received:
        tree = xsd.validate(xml)
        if xsd.message_type(tree) == "oadrDistributeEvent" and event_id in {
                e.text for e in tree.iter(f"{EI}eventID")}:
            found.append(tree)
    return found


async def test_an_event_published_before_registration_is_delivered_once(vtn, vtn_sent_messages):
    server, pki, url = vtn
    event = _publish(server.store, minutes_ahead=30)
    stock = Stock("stock-1", pki, url)
    await asyncio.wait_for(stock.client.run(), 20)
    try:
        await eventually(lambda: server.store.target(event.event_id, "stock-1").opt_type,
                         what="opt recorded")
        # Several poll intervals (1 s) during which the queued distribution comes due.
        await asyncio.sleep(4)
    finally:
        await stock.client.stop()

    deliveries = _distributions(stock, event.event_id)
    assert len(deliveries) == 1
    assert len(stock.events) == 1
    created = [xml for xml in vtn_sent_messages if "oadrDistributeEvent" in xml]
    assert len(created) == 1
    stored = server.store.event(event.event_id)
    descriptor = stock.events[0]["event_descriptor"]
    assert descriptor["event_status"] == status_at(stored, descriptor["created_date_time"])
    assert descriptor["created_date_time"] == stored.created_at


async def test_a_modification_after_delivery_is_delivered_once_more(vtn):
    server, pki, url = vtn
    event = _publish(server.store, minutes_ahead=30)
    stock = Stock("stock-1", pki, url)
    await asyncio.wait_for(stock.client.run(), 20)
    try:
        await eventually(lambda: len(_distributions(stock, event.event_id)) == 1, what="event")
        lifecycle.modify(server.store, event.event_id, server.clock,
                         end_utc=event.end_utc + timedelta(minutes=30))
        await eventually(lambda: len(_distributions(stock, event.event_id)) == 2,
                         what="modification")
        await asyncio.sleep(3)
    finally:
        await stock.client.stop()
    assert len(_distributions(stock, event.event_id)) == 2


# Push is served (tests/test_push.py); XMPP only by a VTN with [xmpp] (tests/test_xmpp.py).
@pytest.mark.parametrize("asked", [{"transport_name": "xmpp"}])
async def test_a_registration_for_an_exchange_the_vtn_does_not_serve_is_refused(vtn, asked):
    server, pki, url = vtn
    stock = Stock("stock-1", pki, url)
    try:
        message = stock.client._create_message(
            "oadrCreatePartyRegistration", request_id="req-1", ven_name="stock-1", ven_id=None,
            http_pull_model=asked.get("http_pull_model", True), xml_signature=True,
            report_only=False, profile_name="2.0b",
            transport_name=asked.get("transport_name", "simpleHttp"),
            transport_address="https://ven.example/push", registration_id=None)
        response_type, payload = await stock.client._perform_request("EiRegisterParty", message)
    finally:
        await stock.client.stop()
    assert response_type == "oadrCreatedPartyRegistration"
    assert payload["response"]["response_code"] == 451
    assert "use simpleHttp" in payload["response"]["response_description"]
    assert server.store.ven("stock-1").registration_id is None
