"""Live NWS hourly forecasts (api.weather.gov answers served on loopback, tests/data/nws):
read by their issue time, kept when the service fails (logged once), and planned from."""
import json
import logging
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from flexadr import data as shipped
from flexadr.clock import ManualClock
from flexadr.demo import _free_port
from schedules import model
from schedules.nws import NwsFormatError, forecast_rows
from schedules.planner import decision_moment
from vtn.planning import PlannerSettings, PlannerSources, PlanningSchedule, read_inputs
from vtn.store import Ven
from vtn.weather_feed import NwsFeed, NwsPoint, NwsSettings

RECORDED = Path(__file__).with_name("data") / "nws"
POINTS = (NwsPoint("boston", 42.3601, -71.0589), NwsPoint("hartford", 41.7658, -72.6734))
ISSUED = datetime(2025, 6, 23, 13, 37, 12, tzinfo=timezone.utc)
EVENT_DAY = date(2025, 6, 24)       # 2025's annual peak day


class FakeNws:
    """A loopback server answering like api.weather.gov from the recorded documents."""

    def __init__(self):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.status = 200
        self.documents: dict[str, dict] = {}     # path -> answer
        self.hourly: dict[str, dict] = {}        # city -> its hourly forecast
        self.requests: list[str] = []            # User-Agent of each request
        for city in ("boston", "hartford"):
            points, hourly = (json.loads((RECORDED / f"{kind}_{city}.json").read_text()
                                         .replace("{base}", self.base))
                              for kind in ("points", "hourly"))
            self.documents[points["id"].removeprefix(self.base)] = points
            self.documents[points["properties"]["forecastHourly"].removeprefix(self.base)] = hourly
            self.hourly[city] = hourly

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request.headers.get("User-Agent", ""))
        if self.status != 200:
            return web.json_response({"title": "Unexpected Problem", "status": self.status},
                                     status=self.status)
        document = self.documents.get(request.path)
        return web.json_response(document) if document else web.Response(status=404)

    async def __aenter__(self):
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc):
        await self.runner.cleanup()

    def set_temperature_f(self, city: str, day: date, value: int) -> None:
        for period in self.hourly[city]["properties"]["periods"]:
            if period["startTime"].startswith(day.isoformat()):
                period["temperature"] = value


def _settings(nws: FakeNws) -> NwsSettings:
    return NwsSettings(POINTS, "flexadr-tests ops@utility.example", nws.base)


def test_an_hourly_forecast_becomes_rows_in_celsius_issued_at_its_update_time():
    document = json.loads((RECORDED / "hourly_boston.json").read_text())
    rows = forecast_rows(document, "boston")
    first = document["properties"]["periods"][0]
    assert len(rows.t) == len(document["properties"]["periods"]) == 156
    assert rows.t[0] == int(datetime.fromisoformat(first["startTime"]).timestamp())
    assert rows.temp[0] == pytest.approx((first["temperature"] - 32) * 5 / 9)
    assert set(rows.issued) == {int(ISSUED.timestamp())}
    assert set(rows.city) == {"boston"}


@pytest.mark.parametrize("break_it, message", [
    (lambda d: d["properties"].pop("periods"), "no forecast periods"),
    (lambda d: d["properties"]["periods"][3].update(temperature="hot"), "periods[3].temperature"),
    (lambda d: d["properties"]["periods"][0].update(temperatureUnit="K"), "neither F nor C"),
    (lambda d: d["properties"]["periods"][1].update(startTime="2025-06-23T07:00"), "no UTC offset"),
    (lambda d: d["properties"].update(updateTime=None, generatedAt=None), "updateTime"),
])
def test_a_document_the_planner_cannot_use_is_refused_by_name(break_it, message):
    document = json.loads((RECORDED / "hourly_boston.json").read_text())
    break_it(document)
    with pytest.raises(NwsFormatError, match=message.replace("[", r"\[").replace("]", r"\]")):
        forecast_rows(document, "boston")


def test_quantitative_temperatures_are_read_with_their_unit_code():
    document = json.loads((RECORDED / "hourly_boston.json").read_text())
    document["properties"]["periods"][0]["temperature"] = {"unitCode": "wmoUnit:degC",
                                                           "value": 31.5}
    assert forecast_rows(document, "boston").temp[0] == 31.5


async def test_the_feed_keeps_the_last_forecast_while_the_service_fails_and_logs_once(caplog):
    async with FakeNws() as nws:
        feed = NwsFeed(_settings(nws))
        await feed.refresh()
        good = feed.rows()
        assert sorted(set(good.city)) == ["boston", "hartford"] and len(good.t) == 2 * 156
        assert set(nws.requests) == {"flexadr-tests ops@utility.example"}

        nws.status = 503
        with caplog.at_level(logging.INFO, logger="vtn.weather_feed"):
            await feed.refresh()
            await feed.refresh()
            kept = feed.rows()
            nws.status = 200
            await feed.refresh()
    assert np.array_equal(kept.temp, good.temp)             # nothing lost to the outage
    failed = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failed) == 2                                 # once per point, not per refresh
    assert all("HTTP 503" in line and "keeps the last forecast" in line for line in failed)
    assert sum(r.getMessage().endswith("is back") for r in caplog.records) == 2


async def test_the_planner_plans_from_the_live_forecast_as_of_its_issue_time(store):
    """The file's day-ahead values call 2025-06-24 (the annual peak day); a live NWS
    forecast issued before the decision that says the day is cool (60 F) is what the
    planner then goes by, and its decision is stored with what it saw."""
    program = model.load("connected_solutions")
    store.enrol(Ven(ven_id="ven-1", ven_name="ven-1", fingerprint="AA:BB",
                    program_id=program.id, device_kind="battery"))
    found = PlannerSources(
        load_csv=shipped.path("isone_hourly_load_eei_2025-01_2026-07.csv"),
        load_history=(shipped.path("isone_hourly_load_2015-07_2019-12.csv"),),
        weather_forecast=shipped.path("gfs_day_ahead_temperature_2025-2026_summers.csv"),
        forecast="own")
    clock = ManualClock(decision_moment(program, EVENT_DAY) - timedelta(minutes=5))
    async with FakeNws() as nws:
        for city in ("boston", "hartford"):
            nws.set_temperature_f(city, EVENT_DAY, 60)
        schedule = PlanningSchedule(store, PlannerSettings((program.id,), found,
                                                           nws=_settings(nws)), clock)
        schedule.programs = {program.id: program}
        await schedule.tick()

    live = read_inputs(found, program, schedule.feed.rows())
    before_issue = live.as_of(ISSUED - timedelta(minutes=1), program.timezone)
    hour = datetime(2025, 6, 24, 17, tzinfo=program.timezone)
    assert _temp(live.weather_forecast, hour) == pytest.approx((60 - 32) * 5 / 9)
    # Before its issue time the planner cannot see the live value.
    assert _temp(before_issue.weather_forecast, hour) != pytest.approx((60 - 32) * 5 / 9)

    assert store.events(program_id=program.id) == []       # the cool forecast: not called
    (decision,) = store.decisions(program_id=program.id)
    assert decision.day == EVENT_DAY and decision.event_id is None
    assert decision.forecast_peak_mw is not None and decision.reason


def _temp(table, hour: datetime) -> float:
    """Boston's forecast for that local hour; NaN where the table has none."""
    (row,), (found,) = table.rows(np.array([hour.date().toordinal()]))
    return float(table.temp[row, table.cities.index("boston"), hour.hour]) if found else np.nan


def test_the_planner_config_takes_nws_points_strictly(tmp_path):
    from vtn.config import ConfigError, planner_settings
    (tmp_path / "load.csv").write_text("")
    table = {"programs": ["connected_solutions"], "load_csv": "load.csv", "forecast": "own",
             "nws": {"user_agent": "utility.example ops@utility.example",
                     "points": [{"city": "boston", "lat": 42.3601, "lon": -71.0589}]}}
    nws = planner_settings(table, tmp_path).nws
    assert nws.points == (NwsPoint("boston", 42.3601, -71.0589),)
    assert nws.base_url == "https://api.weather.gov"
    table["nws"]["points"][0]["lattitude"] = 42.0
    with pytest.raises(ConfigError, match="lattitude: unknown key"):
        planner_settings(table, tmp_path)
