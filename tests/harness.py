"""A VTN and VEN agents on loopback, with a cuttable network between them."""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from certs.pki import DevPki, ensure_dev_pki
from flexadr.clock import SystemClock
from flexadr.demo import _free_port
from ven.agent import AgentConfig, VenAgent
from ven.policy import OwnerPrefs
from ven.store import LocalDatabase
from vtn.service import Vtn, VtnConfig
from vtn.store import Store, Ven

BATTERY = dict(kind="battery", capacity_kwh=13.5, soc_pct=90.0, max_charge_kw=5.0,
               max_discharge_kw=5.0, charge_target_pct=None)


async def eventually(predicate, timeout_s: float = 30.0, what: str = "condition",
                     step_s: float = 0.05):
    """Wait (bounded) until predicate() is truthy; return its value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not (value := predicate()):
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(step_s)
    return value


class Proxy:
    """A TCP relay the test can cut: every connection dropped, no new one accepted."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self.port = _free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port,
                                                  reuse_address=True)

    async def cut(self) -> None:
        self._server.close()
        await self._server.wait_closed()
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _relay(self, client_reader, client_writer) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.close()
            return
        self._writers |= {client_writer, server_writer}

        async def pipe(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, asyncio.CancelledError):
                pass
            finally:
                writer.close()

        await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))


@dataclass
class Site:
    """One VTN, its store, and agents that reach it through a proxy."""
    root: Path
    time_scale: float
    pki: DevPki = None
    store: Store = None
    vtn: Vtn = None
    proxy: Proxy = None
    agents: list[VenAgent] = field(default_factory=list)
    database: LocalDatabase = None
    vtn_options: dict = field(default_factory=dict)   # more VtnConfig fields (e.g. admin_port)

    @property
    def report_wall(self) -> timedelta:
        """The program's 15-minute interval on the wall clock."""
        return timedelta(minutes=15) / self.time_scale

    async def start(self, ven_names: list[str]) -> None:
        self.pki = ensure_dev_pki(self.root / "pki", ven_names)
        self.store = Store(f"sqlite:///{self.root / 'vtn.sqlite'}")
        for name in ven_names:
            self.store.enrol(Ven(ven_id=name, ven_name=name, fingerprint=self.pki.vens[name].fingerprint,
                                 program_id="connected_solutions", device_kind="battery"))
        port = _free_port()
        self.vtn = Vtn(VtnConfig("TEST_VTN", "127.0.0.1", port, self.pki.vtn.cert, self.pki.vtn.key,
                                 self.pki.ca.cert, poll_interval=timedelta(seconds=1),
                                 telemetry_interval=self.report_wall, **self.vtn_options),
                       self.store, SystemClock())
        await self.vtn.start()
        self.proxy = Proxy(port)
        await self.proxy.start()
        self.database = LocalDatabase(f"sqlite:///{self.root / 'vens.sqlite'}")

    def agent_config(self, name: str, **device) -> AgentConfig:
        return AgentConfig(
            ven_name=name, vtn_url=f"https://127.0.0.1:{self.proxy.port}/OpenADR2/Simple/2.0b",
            cert=self.pki.vens[name].cert, key=self.pki.vens[name].key, ca_file=self.pki.ca.cert,
            vtn_fingerprint=self.pki.vtn.fingerprint, adapter="sim",
            adapter_config=dict(BATTERY, time_scale=self.time_scale, **device),
            capacity_kwh=BATTERY["capacity_kwh"], max_discharge_kw=BATTERY["max_discharge_kw"],
            prefs=OwnerPrefs(min_soc_pct=20), time_scale=self.time_scale,
            state_url=f"sqlite:///{self.root / 'vens.sqlite'}")

    async def add_agent(self, config: AgentConfig, adapter=None) -> VenAgent:
        agent = VenAgent(config, SystemClock(), adapter=adapter, database=self.database)
        await agent.start()
        self.agents.append(agent)
        return agent

    async def stop(self) -> None:
        for agent in self.agents:
            await agent.stop()
        await self.vtn.stop()


@contextlib.asynccontextmanager
async def running_site(root: Path, time_scale: float, ven_names: tuple[str, ...] = ("ven-a",),
                       **vtn_options):
    site = Site(root, time_scale, vtn_options=vtn_options)
    await site.start(list(ven_names))
    try:
        yield site
    finally:
        await site.stop()
