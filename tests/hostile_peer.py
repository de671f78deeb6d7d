"""A VEN that sends what it likes: raw bodies or messages signed with its own certificate,
over mutual TLS to a real VTN on 127.0.0.1 (shared by the tests/test_hostile_*.py files)."""
from __future__ import annotations

import ssl
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

import aiohttp
from openleadr import messaging, utils
from sqlalchemy import MetaData, select

from certs.pki import DevPki, ensure_dev_pki
from flexadr.clock import SystemClock
from flexadr.demo import _free_port
from flexadr.signing import MessageSigner
from vtn.service import Vtn, VtnConfig
from vtn.store import Ven
from vtn.store.models import vtn_metadata

PATH = "/OpenADR2/Simple/2.0b"
VEN = "ven-h"
REGISTRATION = "reg-h"
_DSP = "{http://openadr.org/oadr-2.0b/2012/07/xmldsig-properties}"


def pki_for(root: Path) -> DevPki:
    return ensure_dev_pki(root / "pki", [VEN, "stranger"])


def enrol(store, pki: DevPki, registered: bool = True) -> None:
    store.enrol(Ven(ven_id=VEN, ven_name=VEN, fingerprint=pki.vens[VEN].fingerprint,
                    program_id="connected_solutions", device_kind="battery"))
    if registered:
        store.set_registration(VEN, REGISTRATION, datetime.now(timezone.utc))


@asynccontextmanager
async def running_vtn(store, pki: DevPki, poll_interval: timedelta = timedelta(seconds=1),
                      **config):
    port = _free_port()
    vtn = Vtn(VtnConfig("HOSTILE_VTN", "127.0.0.1", port, pki.vtn.cert, pki.vtn.key, pki.ca.cert,
                        poll_interval=poll_interval, **config), store, SystemClock())
    await vtn.start(run_ticker=False)
    try:
        yield f"https://127.0.0.1:{port}{PATH}"
    finally:
        await vtn.stop()


class Peer:
    """One TLS session (keep-alive) as a VEN of the test PKI."""

    def __init__(self, pki: DevPki, name: str = VEN):
        paths = pki.vens[name]
        self.signer = MessageSigner.from_files(paths.cert, paths.key)
        self._context = ssl.create_default_context(cafile=str(pki.ca.cert))
        self._context.load_cert_chain(str(paths.cert), str(paths.key))
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> "Peer":
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(self, *exc) -> None:
        await self._session.close()

    async def post(self, url: str, service: str, body: bytes | str,
                   content_type: str = "application/xml") -> tuple[int, str]:
        async with self._session.post(f"{url}/{service}", data=body, ssl=self._context,
                                      headers={"content-type": content_type}) as response:
            return response.status, await response.text()

    def sign(self, message_type: str, **payload) -> str:
        return self.signer(message_type, **payload)


@contextmanager
def signed_at(offset: timedelta):
    """Messages signed inside the block carry a ReplayProtect timestamp of now + offset."""
    original = messaging._create_replay_protect

    def shifted():
        element = original()
        element.find(f"{_DSP}timestamp").text = utils.datetimeformat(
            datetime.now(timezone.utc) + offset)
        return element
    messaging._create_replay_protect = shifted
    try:
        yield
    finally:
        messaging._create_replay_protect = original


def answer(body: str) -> tuple[str, dict]:
    """(type, payload) of a VTN answer, read by our own hardened reader."""
    from flexadr import oadr_xml, xsd
    return oadr_xml.payload(xsd.validate(body))


def code(body: str) -> int:
    return answer(body)[1]["response"]["response_code"]


@lru_cache(maxsize=1)
def _tables() -> MetaData:
    return vtn_metadata()


def snapshot(store) -> dict[str, list]:
    """Every row of every domain table. Left out: the nonce table (replay bookkeeping) and
    a VEN's last contact time, which any authenticated message updates, refused or not."""
    metadata = _tables()
    with store.engine.connect() as connection:
        return {name: sorted(map(repr, connection.execute(
                    select(*[c for c in table.columns if c.name != "last_seen_at"])).all()))
                for name, table in metadata.tables.items()
                if name not in ("noncerecord", "alembic_version")}
