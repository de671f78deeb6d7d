"""Two VTN processes on one database: a VEN's queued messages are handed out once, by either."""
import asyncio
from datetime import datetime, timedelta, timezone

import pytest
from openleadr import OpenADRClient

from certs.pki import ensure_dev_pki
from flexadr.clock import SystemClock
from flexadr.demo import _free_port
from schedules import model
from vtn import lifecycle
from vtn.service import Vtn, VtnConfig
from vtn.store import Store, Ven

PATH = "/OpenADR2/Simple/2.0b"


@pytest.fixture
async def two_vtns(tmp_path, database_url):
    pki = ensure_dev_pki(tmp_path / "pki", ["ven-1"])
    first = Store(database_url)
    first.enrol(Ven(ven_id="ven-1", ven_name="ven-1", fingerprint=pki.vens["ven-1"].fingerprint,
                    program_id="connected_solutions", device_kind="battery"))
    vtns = []
    for store in (first, Store(database_url)):
        port = _free_port()
        vtn = Vtn(VtnConfig("TEST_VTN", "127.0.0.1", port, pki.vtn.cert, pki.vtn.key,
                            pki.ca.cert, poll_interval=timedelta(seconds=30)),
                  store, SystemClock())
        await vtn.start(run_ticker=False)
        vtns.append((vtn, f"https://127.0.0.1:{port}{PATH}"))
    yield pki, vtns
    for vtn, _ in vtns:
        await vtn.stop()
        vtn.store.close()


def _client(pki, url):
    paths = pki.vens["ven-1"]
    return OpenADRClient(ven_name="ven-1", vtn_url=url, cert=str(paths.cert), key=str(paths.key),
                         ca_file=str(pki.ca.cert), vtn_fingerprint=pki.vtn.fingerprint,
                         show_fingerprint=False)


async def test_a_queued_event_is_delivered_once_by_whichever_vtn_is_polled(two_vtns):
    pki, [(vtn_a, url_a), (vtn_b, url_b)] = two_vtns
    via_a, via_b = _client(pki, url_a), _client(pki, url_b)
    try:
        await asyncio.wait_for(via_a.create_party_registration(ven_id="ven-1"), 10)
        assert via_a.registration_id
        # The same VEN, routed to the other process (e.g. by a load balancer), is known there.
        via_b.ven_id, via_b.registration_id = via_a.ven_id, via_a.registration_id
        start = datetime.now(timezone.utc) + timedelta(hours=1)
        event = lifecycle.publish(vtn_a.store, model.load("connected_solutions"), start,
                                  start + timedelta(hours=2), ["ven-1"], SystemClock(),
                                  setpoint_kw=5)
        message_type, payload = await asyncio.wait_for(via_b.poll(), 10)
        assert message_type == "oadrDistributeEvent"
        assert [e["event_descriptor"]["event_id"] for e in payload["events"]] == [event.event_id]
        message_type, _ = await asyncio.wait_for(via_a.poll(), 10)
        assert message_type == "oadrResponse"          # already handed out by B
        lifecycle.cancel(vtn_b.store, event.event_id, SystemClock())
        message_type, payload = await asyncio.wait_for(via_a.poll(), 10)
        assert message_type == "oadrDistributeEvent"
        assert payload["events"][0]["event_descriptor"]["event_status"] == "cancelled"
    finally:
        for client in (via_a, via_b):
            if client.client_session is not None:
                await client.client_session.close()


def test_a_program_row_added_by_two_processes_is_kept_once(database_url):
    """Two `vtn serve` starting together both add the programs' rows; the one that comes
    second finds the row there (its check saw none) and must neither fail nor change it."""
    from vtn.programs import program_row
    first, second = Store(database_url), Store(database_url)
    try:
        row = program_row(model.load("connected_solutions"))
        assert first.program(row.program_id) is None and second.program(row.program_id) is None
        first.add_program_if_absent(row)
        stored = second.add_program_if_absent(row.model_copy(update={"name": "other"}))
        assert stored.name == row.name
        assert [p.program_id for p in second.programs()] == [row.program_id]
    finally:
        first.close()
        second.close()
