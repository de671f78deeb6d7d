"""One store, two protocols: an event created by a BL client over OpenADR 3.1 reaches a STOCK
openleadr 2.0b VEN (mTLS, through our 2.0b Vtn) and a 3.1 VEN client, and both report into
the same telemetry rows."""
import asyncio
from datetime import datetime, timezone

import aiohttp

from flexadr.clock import SystemClock
from flexadr.demo import _free_port
from tests.test_openadr31_api import SECRET, Api31, event_body, report_body
from tests.test_openadr_20b import Stock, eventually, vtn  # noqa: F401  (fixture)
from vtn.openadr31 import Server, Settings
from vtn.openadr31.auth import create_client


async def test_an_event_made_over_31_reaches_a_stock_20b_ven_and_a_31_ven(vtn):  # noqa: F811
    server20, pki, url = vtn
    store = server20.store
    now = datetime.now(timezone.utc)
    # stock-1 speaks 2.0b; stock-2 (enrolled the same way) speaks 3.1 through its client.
    secrets = {"bl": create_client(store, "bl", "bl", now)[1],
               "stock-2-client": create_client(store, "stock-2-client", "ven", now,
                                               ven_id="stock-2")[1]}
    stock = Stock("stock-1", pki, url)
    # Registered first: the VTN asks for telemetry at the fixture's 2 s, not at the program's
    # 15 min that applies once the 3.1 edge has copied the program files into the store.
    await asyncio.wait_for(stock.client.run(), 20)
    port = _free_port()
    server31 = Server(store, SystemClock(), Settings(token_secret=SECRET, port=port))
    await server31.start()
    api = Api31(f"http://127.0.0.1:{port}", aiohttp.ClientSession(), secrets)
    try:
        _, event = await api.call("POST", "/events", client="bl", expect=201,
                                  json=event_body(targets=["stock-1", "stock-2"], value=4.5))

        # The 2.0b VEN gets it at its next poll, as LOAD_DISPATCH setpoint 4.5, and opts in.
        await eventually(lambda: stock.events, what="oadrDistributeEvent at stock-1")
        received = stock.events[0]
        assert received["event_descriptor"]["event_id"] == event["id"]
        signal = received["event_signals"][0]
        assert (signal["signal_name"], signal["signal_type"]) == ("LOAD_DISPATCH", "setpoint")
        assert signal["intervals"][0]["signal_payload"] == 4.5
        await eventually(lambda: store.target(event["id"], "stock-1").opt_type == "optIn",
                         what="optIn stored")

        # The 3.1 VEN reads the same event, the same value, and only its own target.
        _, seen = await api.call("GET", "/events", client="stock-2-client", expect=200)
        assert [e["id"] for e in seen] == [event["id"]]
        assert seen[0]["intervals"][0]["payloads"] == [{"type": "DISPATCH_SETPOINT",
                                                        "values": [4.5]}]
        assert seen[0]["targets"] == ["stock-2"]
        assert store.target(event["id"], "stock-2").delivered_modification == 0

        # A modification over 3.1 is a new 2.0b modification for stock-1.
        await api.call("PUT", f"/events/{event['id']}", "/events/{eventID}", client="bl",
                       expect=200, json={**event_body(targets=["stock-1", "stock-2"], value=6.0),
                                         "intervalPeriod": seen[0]["intervalPeriod"]})
        await eventually(lambda: any(e["event_descriptor"]["modification_number"] == 1
                                     for e in stock.events), what="modification at stock-1")

        # The 3.1 VEN's report lands in the rows 2.0b telemetry fills, beside stock-1's.
        await api.call("POST", "/reports", client="stock-2-client", expect=201,
                       json=report_body(event["id"], client_name="stock-2",
                                        payloads=[{"type": "DEMAND", "values": [-4.5]}]))
        assert [p.kw for p in store.telemetry("stock-2")] == [-4.5, -4.5]
        await eventually(lambda: [p for p in store.telemetry("stock-1") if p.kw == 3.5],
                         what="stock-1 2.0b telemetry")
    finally:
        await stock.client.stop()
        await api.session.close()
        await server31.stop()
