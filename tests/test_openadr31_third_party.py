"""ElaadNL's openadr3-client (PyPI; Python >= 3.12, so in a venv of its own, run as a separate
process) against our 3.1 edge: as BL it reads the programs and creates an event, as a VEN
it reads that event and posts a report, which lands in the store's telemetry rows; our own
VEN agent in 3.1 mode, with the same VEN's credentials, receives the same event.

The interpreter: $FLEXADR_OPENADR3_CLIENT_PYTHON, else var/peers/openadr3/bin/python, which
`make test` creates when a Python 3.12 is on the machine. CI sets FLEXADR_REQUIRE_PEERS=1,
so there a missing peer fails the test instead of skipping it.
"""
import asyncio
import json
import os
from datetime import timedelta
from pathlib import Path

import pytest

from flexadr.clock import SystemClock
from tests.harness import eventually
from tests.test_openadr31_api import allowed_start, api  # noqa: F401  (fixture)
from tests.test_ven_openadr31 import agent_config
from ven.agent import VenAgent

ROOT = Path(__file__).resolve().parents[1]
PYTHON = Path(os.environ.get("FLEXADR_OPENADR3_CLIENT_PYTHON",
                             ROOT / "var" / "peers" / "openadr3" / "bin" / "python"))

SCRIPT = r'''
import json, sys
from datetime import datetime, timedelta, timezone
from openadr3_client.bl.http_factory import BusinessLogicHttpClientFactory
from openadr3_client.ven.http_factory import VirtualEndNodeHttpClientFactory
from openadr3_client.version import OADRVersion
from openadr3_client._models.common.interval import Interval
from openadr3_client._models.common.interval_period import IntervalPeriod
from openadr3_client.oadr310.models.event.event import NewEvent
from openadr3_client.oadr310.models.event.event_payload import EventPayload, EventPayloadType
from openadr3_client.oadr310.models.report.report import NewReport, ReportResource
from openadr3_client.oadr310.models.report.report_payload import ReportPayload, ReportPayloadType

args = json.loads(sys.argv[1])
common = dict(vtn_base_url=args["url"], allow_insecure_http=True, version=OADRVersion.OADR_310)
bl = BusinessLogicHttpClientFactory.create_http_bl_client(
    client_id="bl", client_secret=args["bl"], **common)   # token URL found via /auth/server
programs = bl.programs.get_programs(target=None, pagination=None)
start = datetime.fromisoformat(args["start"])     # one the program's rules accept
event = bl.events.create_event(new_event=NewEvent(
    programID="connected_solutions", event_name="elaad", targets=("ven-a",),
    interval_period=IntervalPeriod(start=start, duration=timedelta(hours=2)),
    intervals=(Interval(id=0, payloads=(EventPayload(type=EventPayloadType.DISPATCH_SETPOINT,
                                                     values=(3.0,)),)),)))
ven = VirtualEndNodeHttpClientFactory.create_http_ven_client(
    client_id="ven-a-client", client_secret=args["ven"], **common)
seen = ven.events.get_events(target=None, pagination=None, program_id=None)
report = ven.reports.create_report(new_report=NewReport(
    eventID=event.id, client_name="ven-a", resources=(ReportResource(
        resource_name="device",
        interval_period=IntervalPeriod(start=start, duration=timedelta(minutes=15)),
        intervals=(Interval(id=0, payloads=(ReportPayload(type=ReportPayloadType.DEMAND,
                                                          values=(2.5,)),)),)),)))
print(json.dumps({"programs": sorted(p.program_name for p in programs), "event": event.id,
                  "ven_saw": [e.id for e in seen], "report": report.id,
                  "report_client": report.client_id}))
'''


@pytest.mark.skipif(not PYTHON.exists() and not os.environ.get("FLEXADR_REQUIRE_PEERS"), reason=f"no Python 3.12 venv with openadr3-client at "
                    f"{PYTHON} (set FLEXADR_OPENADR3_CLIENT_PYTHON)")
async def test_elaadnl_openadr3_client_as_bl_and_as_ven(api, store, tmp_path):  # noqa: F811
    process = await asyncio.create_subprocess_exec(
        str(PYTHON), "-c", SCRIPT,
        json.dumps({"url": api.url, "bl": api.secrets["bl"],
                    "ven": api.secrets["ven-a-client"],
                    "start": allowed_start("connected_solutions", 0).isoformat()}),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        # The test serves plain HTTP on 127.0.0.1; oauthlib refuses that unless told.
        env={**os.environ, "OAUTHLIB_INSECURE_TRANSPORT": "1"})
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, err.decode()[-3000:]
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert "connected_solutions" in result["programs"]
    event = store.event(result["event"])
    assert (event.signal_name, event.signal_value) == ("LOAD_DISPATCH", 3.0)
    assert [t.ven_id for t in store.targets(event.event_id)] == ["ven-a"]
    assert result["ven_saw"] == [event.event_id]
    assert result["report_client"] == "ven-a-client"
    point = store.telemetry("ven-a")[0]
    assert point.kw == 2.5 and point.interval_start == event.start_utc
    assert point.interval_end - point.interval_start == timedelta(minutes=15)

    ours = VenAgent(agent_config(tmp_path, api.url, api.secrets["ven-a-client"], name="ven-a",
                                 webhook=False), SystemClock())
    await ours.start()
    try:
        await eventually(lambda: event.event_id in ours.decisions, 20, "our 3.1 agent read the event")
    finally:
        await ours.stop()
