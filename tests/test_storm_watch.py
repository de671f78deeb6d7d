"""Storm watch next to the devices: an NWS alert feed over HTTP -> no discharge, charge to 100 %.

The feed is an aiohttp server on loopback answering like api.weather.gov
(`/alerts/active?zone=...`, GeoJSON). Time is compressed as in the other
agent tests: an hour is four wall-clock seconds.
"""
import asyncio
import json
import logging
from dataclasses import replace
from datetime import timedelta

import pytest
from aiohttp import web

from certs.pki import ensure_dev_pki
from flexadr.clock import SystemClock
from flexadr.demo import _free_port
from schedules import model
from tests.harness import running_site
from ven import config as ven_config
from ven.fleet import Fleet
from ven.storm_watch import StormWatch, StormWatchConfig

SCALE = 900.0
HOUR = timedelta(hours=1) / SCALE
BYOD = model.load("byod_vpp")


def _alert(zone: str, onset, ends, event="Severe Thunderstorm Warning") -> dict:
    return {"type": "Feature", "id": "urn:oid:2.49.0.1.840.0.test", "properties": {
        "id": "urn:oid:2.49.0.1.840.0.test", "areaDesc": "Suffolk", "event": event,
        "geocode": {"SAME": ["025025"], "UGC": [zone]},
        "sent": onset.isoformat(), "effective": onset.isoformat(), "onset": onset.isoformat(),
        "expires": ends.isoformat(), "ends": ends.isoformat(), "status": "Actual",
        "messageType": "Alert", "severity": "Severe", "certainty": "Observed",
        "urgency": "Immediate"}}


class FakeNws:
    """Answers /alerts/active with whatever the test sets (or an HTTP error)."""

    def __init__(self):
        self.features: list[dict] = []
        self.status = 200
        self.requests: list[web.Request] = []
        self.port = _free_port()

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        if self.status != 200:
            return web.Response(status=self.status, text="upstream trouble")
        body = {"type": "FeatureCollection", "features": self.features}
        return web.Response(text=json.dumps(body), content_type="application/geo+json")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/alerts/active?zone=MAZ014"


@pytest.fixture
async def nws():
    fake = FakeNws()
    app = web.Application()
    app.router.add_get("/alerts/active", fake.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", fake.port).start()
    yield fake
    await runner.cleanup()


@pytest.fixture
async def site(tmp_path):
    async with running_site(tmp_path, SCALE) as site:
        yield site


async def test_a_warning_for_our_zone_charges_the_battery_to_full_without_any_event(site, nws):
    agent = await site.add_agent(site.agent_config("ven-a", soc_pct=60.0))
    device = agent.adapter.device
    now = SystemClock().now()
    ends = now + 2 * HOUR
    nws.features = [_alert("MAZ014", now - HOUR, ends)]
    watch = StormWatch([agent], BYOD, nws.url, SystemClock())

    assert await watch.check() == ends
    assert agent.conditions.storm_warning_until == ends
    assert device.power_kw() > 0                                  # charging at once
    assert "flexadr" in nws.requests[0].headers["User-Agent"]     # api.weather.gov asks for it
    await asyncio.sleep((ends - SystemClock().now()).total_seconds() + 0.5)
    device.advance(SystemClock().now())
    assert device.soc_pct > 60.0 and device.power_kw() == 0       # stops when the warning ends
    assert all(seg.kw >= 0 for seg in device.history)             # never discharged


async def test_other_zones_and_other_alert_types_change_nothing(site, nws):
    agent = await site.add_agent(site.agent_config("ven-a", soc_pct=60.0))
    now = SystemClock().now()
    nws.features = [_alert("MEZ001", now - HOUR, now + 2 * HOUR),
                    _alert("MAZ014", now - HOUR, now + 2 * HOUR, event="Heat Advisory")]
    watch = StormWatch([agent], BYOD, nws.url, SystemClock())
    assert await watch.check() is None
    assert agent.conditions.storm_warning_until is None
    assert agent.adapter.device.power_kw() == 0


async def test_a_failing_feed_keeps_the_last_known_warning(site, nws, caplog):
    agent = await site.add_agent(site.agent_config("ven-a", soc_pct=60.0))
    now = SystemClock().now()
    ends = now + 4 * HOUR
    nws.features = [_alert("MAZ014", now - HOUR, ends)]
    watch = StormWatch([agent], BYOD, nws.url, SystemClock())
    await watch.check()
    nws.status = 503
    with caplog.at_level(logging.WARNING, logger="ven.storm_watch"):
        assert await watch.check() == ends
    assert agent.conditions.storm_warning_until == ends
    assert "unreachable" in caplog.text and "keeping the last state" in caplog.text
    nws.status, nws.features = 200, []                            # the warning is withdrawn
    assert await watch.check() is None
    assert agent.conditions.storm_warning_until is None


async def test_a_fleet_shares_one_watch_per_feed_and_runs_it(site, nws):
    watch_config = StormWatchConfig("byod_vpp", nws.url, timedelta(seconds=0.2))
    configs = [replace(site.agent_config("ven-a"), storm_watch=watch_config)]
    now = SystemClock().now()
    nws.features = [_alert("MAZ014", now - HOUR, now + 8 * HOUR)]
    fleet = Fleet(configs, SystemClock(), database=site.database)
    (watch,) = fleet.storm_watches
    assert watch.agents == fleet.agents
    await fleet.start()
    try:
        async with asyncio.timeout(5):
            while fleet.agents[0].conditions.storm_warning_until is None:
                await asyncio.sleep(0.05)
    finally:
        await fleet.stop()
    assert len(nws.requests) >= 1


def test_storm_watch_config_needs_a_program_with_a_storm_watch_rule(tmp_path):
    pki = ensure_dev_pki(tmp_path / "pki", ["v"])
    base = {"ven_name": "v", "vtn_url": "https://h", "cert": str(pki.vens["v"].cert),
            "key": str(pki.vens["v"].key), "ca_file": str(pki.ca.cert), "capacity_kwh": 10}
    good = ven_config.agent_config(
        dict(base, storm_watch={"program": "byod_vpp", "source": "feeds/nws.json",
                                "every_min": 2}), tmp_path, "ven.toml")
    assert good.storm_watch == StormWatchConfig(
        "byod_vpp", str((tmp_path / "feeds" / "nws.json").resolve()), timedelta(minutes=2))
    with pytest.raises(ven_config.ConfigError, match="storm_watch.program: connected_solutions "
                                                     "has no storm rule"):
        ven_config.agent_config(dict(base, storm_watch={"program": "connected_solutions",
                                                        "source": "x"}), tmp_path, "ven.toml")
    with pytest.raises(ven_config.ConfigError, match="source: missing"):
        ven_config.agent_config(dict(base, storm_watch={"program": "byod_vpp"}), tmp_path,
                                "ven.toml")
