"""Live hourly temperature forecasts from the National Weather Service (api.weather.gov).

The I/O edge of `[planner] nws`: before each planning run the feed asks each
configured point for its grid cell's hourly forecast (schedules/nws.py reads the
documents) and keeps the last good forecast per point. A point whose feed fails
(network, HTTP status, a document the parser cannot use) keeps its last forecast;
the failure is logged once, and its recovery once, so an outage of hours does not
fill the log. The planner sees each value from its `updateTime` on, as it sees the
issued forecast file's values from their issue time.

The NWS asks every client to send a User-Agent naming a contact; the config sets it.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import aiohttp

from schedules.forecast import ForecastRows
from schedules.nws import NwsFormatError, forecast_rows, hourly_forecast_url

log = logging.getLogger(__name__)

NWS_URL = "https://api.weather.gov"


@dataclass(frozen=True)
class NwsPoint:
    city: str        # the forecast's city name, as the load model knows it (e.g. "boston")
    lat: float
    lon: float


@dataclass(frozen=True)
class NwsSettings:
    points: tuple[NwsPoint, ...]
    user_agent: str
    base_url: str = NWS_URL
    timeout_s: float = 20.0


class NwsFeed:
    def __init__(self, settings: NwsSettings):
        self.settings = settings
        self._hourly_url: dict[str, str] = {}      # city -> its grid cell's forecast URL
        self._last: dict[str, ForecastRows] = {}   # city -> last good forecast
        self._failing: set[str] = set()

    async def refresh(self) -> None:
        headers = {"User-Agent": self.settings.user_agent, "Accept": "application/geo+json"}
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_s)
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            for point in self.settings.points:
                await self._refresh(session, point)

    def rows(self) -> ForecastRows | None:
        """Every point's last good forecast (None before the first one)."""
        kept = list(self._last.values())
        return sum(kept[1:], kept[0]) if kept else None

    async def _refresh(self, session: aiohttp.ClientSession, point: NwsPoint) -> None:
        try:
            url = self._hourly_url.get(point.city) or hourly_forecast_url(
                await _json(session, f"{self.settings.base_url}/points/"
                                     f"{point.lat:.4f},{point.lon:.4f}"))
            rows = forecast_rows(await _json(session, url), point.city)
        except (aiohttp.ClientError, asyncio.TimeoutError, NwsFormatError, ValueError) as err:
            self._hourly_url.pop(point.city, None)     # the grid cell may have moved
            if point.city not in self._failing:
                self._failing.add(point.city)
                log.warning("NWS forecast for %s failed (%s); the planner keeps %s meanwhile",
                            point.city, _why(err),
                            "the last forecast" if point.city in self._last else "no forecast")
            return
        if point.city in self._failing:
            self._failing.discard(point.city)
            log.info("NWS forecast for %s is back", point.city)
        self._hourly_url[point.city] = url
        self._last[point.city] = rows


async def _json(session: aiohttp.ClientSession, url: str) -> dict:
    async with session.get(url) as response:
        if response.status != 200:
            raise NwsFormatError(f"{url} answered HTTP {response.status}")
        return await response.json(content_type=None)


def _why(err: Exception) -> str:
    return str(err) or type(err).__name__
