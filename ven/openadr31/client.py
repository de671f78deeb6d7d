"""The VEN's HTTP client for a 3.1 VTN: OAuth 2.0 client credentials, bearer requests,
paging. No retries of its own: the link decides what a failure means."""
from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from ven.openadr31.settings import Oadr31Settings

log = logging.getLogger(__name__)

PAGE = 50                       # the YAML's largest `limit`
TOKEN_MARGIN_S = 30             # ask for a new token this long before the old one expires
TIMEOUT = aiohttp.ClientTimeout(sock_connect=5, sock_read=10)


class VtnUnreachable(Exception):
    """No answer (connection refused, reset, timed out): try again later."""


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any


class Client31:
    def __init__(self, base_url: str, settings: Oadr31Settings, ca_file: Path | None = None,
                 cert: Path | None = None, key: Path | None = None):
        self.base_url = base_url.rstrip("/")
        self.settings = settings
        self._ssl = _tls_context(ca_file, cert, key) if base_url.startswith("https") else None
        self._session: aiohttp.ClientSession | None = None
        self._token: str | None = None
        self._token_expires = 0.0          # time.monotonic()
        self._token_url = settings.token_url

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(ssl=self._ssl) if self._ssl else None
            self._session = aiohttp.ClientSession(connector=connector, timeout=TIMEOUT)
        return self._session

    async def _send(self, method: str, url: str, **kwargs) -> Answer:
        try:
            async with self._http().request(method, url, **kwargs) as response:
                body = await response.json(content_type=None) if response.content_length != 0 \
                    else None
                return Answer(response.status, body)
        except (aiohttp.ClientError, TimeoutError, ValueError) as err:
            # ValueError: a body that is not JSON (a proxy's error page)
            raise VtnUnreachable(f"{method} {url}: {err or type(err).__name__}") from None

    async def token(self) -> str:
        if self._token is not None and time.monotonic() < self._token_expires:
            return self._token
        if self._token_url is None:
            answer = await self._send("GET", self.base_url + "/auth/server")
            if answer.status != 200 or not isinstance(answer.body, dict):
                raise VtnUnreachable(f"GET /auth/server answered {answer.status}")
            self._token_url = answer.body["tokenURL"]
        answer = await self._send("POST", self._token_url, data={
            "grant_type": "client_credentials", "client_id": self.settings.client_id,
            "client_secret": self.settings.client_secret})
        if answer.status != 200:
            raise Refused(answer, f"token {self._token_url}")
        self._token = answer.body["access_token"]
        self._token_expires = time.monotonic() + float(answer.body.get("expires_in", 3600)) \
            - TOKEN_MARGIN_S
        return self._token

    async def call(self, method: str, path: str, **kwargs) -> Answer:
        """One request with a bearer token; a 401 gets one new token and one more try."""
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {await self.token()}"}
            answer = await self._send(method, self.base_url + path, headers=headers, **kwargs)
            if answer.status != 401 or attempt == 2:
                return answer
            self._token = None
        raise AssertionError("unreachable")

    async def read_all(self, path: str, **params) -> list[dict]:
        """Every object of a list, page by page."""
        objects: list[dict] = []
        while True:
            answer = await self.call("GET", path, params={**params, "skip": len(objects),
                                                          "limit": PAGE})
            if answer.status != 200 or not isinstance(answer.body, list):
                raise Refused(answer, f"GET {path}")
            objects += answer.body
            if len(answer.body) < PAGE:
                return objects


class Refused(Exception):
    """The VTN answered, but not with what was asked for."""

    def __init__(self, answer: Answer, what: str):
        detail = answer.body.get("detail") if isinstance(answer.body, dict) else answer.body
        super().__init__(f"{what}: {answer.status} {detail}")
        self.answer = answer


def _tls_context(ca_file: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return context
