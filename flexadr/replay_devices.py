"""The replay's devices: the `sim` adapter, or a real adapter talking its protocol to
its device simulator (adapters/testing/): OCPP 1.6, 2.0.1 and 2.1 (V2X) chargers dial in
to the agent's OCPP adapter, a SunSpec inverter answers the agent's Modbus client, a car's
cloud (the Smartcar-shaped recording) answers the telematics adapter's HTTPS calls.

Every simulator runs on the replay's clock and at its time scale, so one wall second
moves as much energy in it as in a `sim` device, and on its own thread and event loop
(`SimThread`), as a real device has its own CPU: a replay loop busy with a fleet's
signed messages does not delay its physics, meter reports or Modbus answers. The
report reads each device's truth (`devices()`): the sim device itself, or `DeviceTruth`
over the simulator's physics, read on the simulators' thread.
"""
from __future__ import annotations

import asyncio
import logging

from adapters.sim import DeviceSpec
from adapters.testing.device_truth import DeviceTruth
from adapters.testing.ev_physics import BatteryPhysics
from adapters.testing.ocpp16_charger import Ocpp16ChargerSim
from adapters.testing.ocpp2_charger import Ocpp2ChargerSim
from adapters.testing.sim_thread import SimThread
from adapters.testing.smartcar_cloud import SmartcarCloudSim
from adapters.testing.sunspec_battery import SunSpecBatterySim
from flexadr.clock import Clock
from flexadr.replay_scenario import TELEMETRY, Member
from ven.agent import VenAgent

log = logging.getLogger(__name__)

# The EV's own V2X reserve, below the owners' floors: the floor is the adapter's to hold.
EV_V2X_MIN_SOC_PCT = 10.0
CHARGER_CONNECT_S = 20.0
CHARGER_ATTEMPTS = 3


def ocpp2_version(m: Member) -> str:
    """OCPP 2.1 for a car that discharges (V2X), 2.0.1 for one that only charges."""
    return "2.1" if m.device.get("max_discharge_kw") else "2.0.1"


class Simulators:
    """The device simulators of the members on real adapters, for one run."""

    def __init__(self, members: list[Member], clock: Clock, scale: float):
        self.clock, self.scale = clock, scale
        self.members = {m.name: m for m in members}
        # Meter reports four times a reporting interval (and at once when the power changes
        # by itself), physics steps twenty times: the physics is exact between steps, a
        # step only notices a change to report.
        self.every_s = TELEMETRY.total_seconds() / scale / 4
        self.tick_s = self.every_s / 5
        self.sims: dict[str, object] = {}
        self.thread = SimThread()

    def _battery(self, m: Member) -> BatteryPhysics:
        d = m.device
        # Unplugged (idle) until the replay's clock starts, like the sim devices.
        return BatteryPhysics(capacity_kwh=d["capacity_kwh"], soc_pct=d["soc_pct"],
                              max_charge_kw=d["max_charge_kw"],
                              max_discharge_kw=d.get("max_discharge_kw", 0.0),
                              charge_target_pct=d.get("charge_target_pct"),
                              time_scale=self.scale, plugged_in=False)

    async def start_servers(self) -> None:
        """The simulators' thread starts; the SunSpec inverters and the car clouds
        listen on it before the agents' adapters connect to them."""
        self.thread.start()
        for m in self.members.values():
            if m.adapter in ("sunspec", "telematics"):
                self.sims[m.name] = await self.thread.run(lambda m=m: self._serve(m))

    async def _serve(self, m: Member):
        """On the simulators' loop: a server binds to the loop it is made on."""
        if m.adapter == "sunspec":
            sim = SunSpecBatterySim(self._battery(m), self.clock, tick_s=self.every_s)
        else:
            sim = SmartcarCloudSim(self._battery(m), self.clock, vehicle_id=m.name,
                                   tick_s=self.every_s)
        await sim.start()
        return sim

    def adapter_config(self, m: Member) -> dict:
        """The agent's adapter config for member `m` (its device simulator's address)."""
        if m.adapter == "sim":
            return dict(m.device, time_scale=self.scale, plugged_in=False)
        if m.adapter == "sunspec":
            # The inverter answers on its own loop, but the adapter's client waits on the
            # agents' loop, which a burst of signed messages holds for seconds when loaded.
            return {"port": self.sims[m.name].port, "timeout_s": 8}
        if m.adapter == "telematics":
            cloud = self.sims[m.name]
            return {"api_url": cloud.url, "auth_url": cloud.url, "vehicle_id": m.name,
                    "client_id": cloud.client_id, "client_secret": cloud.client_secret,
                    "refresh_token": "refresh-0", "charge_kw": m.device["max_charge_kw"],
                    # STOP a reporting interval ahead of a delay: the agent that sends it
                    # may lag by most of one under load, and the car must not charge in it.
                    "stop_lead_s": TELEMETRY.total_seconds(), "time_scale": self.scale}
        config = {"charge_point_id": m.name, "port": 0, "heartbeat_interval_s": 3600}
        if m.adapter == "ocpp2":
            # time_scale: the adapter places a discharge's floor in device time.
            config |= {"version": ocpp2_version(m), "time_scale": self.scale}
        return config

    async def connect_chargers(self, agents: dict[str, VenAgent]) -> None:
        """Each OCPP charger dials in to its agent's adapter, which listens by now (call
        it before the agents register: `Fleet.start(devices_up=...)`), one after the
        other; a charger that times out dials again, as a real one does."""
        for m in self.members.values():
            if m.adapter not in ("ocpp16", "ocpp2"):
                continue
            url = f"ws://127.0.0.1:{agents[m.name].adapter.port}/{m.name}"
            for attempt in range(CHARGER_ATTEMPTS):
                sim = self._charger(m, url)
                try:
                    await self.thread.run(lambda sim=sim: sim.start(timeout_s=CHARGER_CONNECT_S))
                    break
                except (TimeoutError, OSError) as err:
                    await self.thread.run(sim.stop)
                    if attempt == CHARGER_ATTEMPTS - 1:
                        raise
                    log.warning("charger %s did not connect and boot (%r); dialling again",
                                m.name, err)
            self.sims[m.name] = sim

    def _charger(self, m: Member, url: str):
        if m.adapter == "ocpp16":
            return Ocpp16ChargerSim(url, self._battery(m), self.clock,
                                    meter_interval_s=self.every_s, tick_s=self.tick_s)
        return Ocpp2ChargerSim(url, self._battery(m), self.clock, version=ocpp2_version(m),
                               v2x_min_soc_pct=EV_V2X_MIN_SOC_PCT,
                               meter_interval_s=self.every_s, tick_s=self.tick_s)

    def devices(self, agents: dict[str, VenAgent]) -> dict:
        """VEN name -> what its device really did."""
        return {name: (DeviceTruth(DeviceSpec(**self.members[name].device), self.sims[name],
                                   self.thread.call)
                       if name in self.sims else agent.adapter.device)
                for name, agent in agents.items()}

    async def stop(self) -> None:
        await self.thread.run(self._stop_all)
        await self.thread.stop()

    async def _stop_all(self) -> None:
        now = self.clock.now()
        for sim in self.sims.values():
            sim.advance(now)          # the truth runs to the end of the run
        await asyncio.gather(*(sim.stop() for sim in self.sims.values()), return_exceptions=True)
