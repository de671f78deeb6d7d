"""One VEN agent: an openleadr client, one device adapter and the dispatch policy.

Events come in through openleadr's `on_event`; the policy turns each into
device commands; the adapter's energy registers become TELEMETRY_USAGE
reports (kW, kWh, state of charge) at the interval the VTN asks for.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

from openleadr import OpenADRClient, enums, objects

from adapters import registry
from adapters.base import Adapter, AdapterError
from flexadr.clock import Clock
from ven.policy import Decision, DeviceProfile, EventSignal, EventWindow, Opt, OwnerPrefs, decide
from ven.telemetry import IntervalSampler

log = logging.getLogger(__name__)

# r_id -> (openleadr measurement, unit, SI scale). State of charge has no 2.0b
# measurement, so it travels as a customUnit whose description names it.
TELEMETRY_POINTS = {
    "kw": ("REAL_POWER", "W", "k"),
    "kwh": ("ENERGY_REAL", "Wh", "k"),
    "soc": ("stateOfCharge", "%", "none"),
}
SAMPLING = objects.SamplingRate(min_period=timedelta(seconds=1), max_period=timedelta(hours=1))


@dataclass(frozen=True)
class AgentConfig:
    ven_name: str
    vtn_url: str
    cert: Path
    key: Path
    ca_file: Path
    vtn_fingerprint: str | None
    adapter: str
    adapter_config: dict[str, Any]
    capacity_kwh: float
    max_discharge_kw: float = 0.0
    efficiency: float = 0.95
    prefs: OwnerPrefs = field(default_factory=OwnerPrefs)
    time_scale: float = 1.0


class VenAgent:
    def __init__(self, config: AgentConfig, clock: Clock, adapter: Adapter | None = None):
        self.config = config
        self.clock = clock
        self.adapter = adapter or registry.load(config.adapter)(config.adapter_config, clock)
        self.profile = DeviceProfile(capabilities=self.adapter.capabilities,
                                     capacity_kwh=config.capacity_kwh,
                                     max_discharge_kw=config.max_discharge_kw,
                                     efficiency=config.efficiency)
        self.decisions: dict[str, Decision] = {}
        self._sampler: IntervalSampler | None = None
        self.client = OpenADRClient(
            ven_name=config.ven_name, vtn_url=config.vtn_url,
            cert=str(config.cert), key=str(config.key), ca_file=str(config.ca_file),
            vtn_fingerprint=config.vtn_fingerprint, show_fingerprint=False)
        self.client.add_handler("on_event", self.on_event)
        self.client.add_handler("on_update_event", self.on_event)
        for r_id, (measurement, unit, scale) in TELEMETRY_POINTS.items():
            self.client.add_report(
                callback=partial(self._report_point, r_id), resource_id="device",
                measurement=measurement, unit=unit, scale=scale, r_id=r_id,
                report_specifier_id=f"{config.ven_name}-telemetry",
                sampling_rate=SAMPLING, report_duration=timedelta(hours=1))

    @property
    def ven_id(self) -> str | None:
        return self.client.ven_id

    @property
    def registered(self) -> bool:
        return self.client.registration_id is not None

    async def start(self) -> None:
        await self.adapter.start()
        self._sampler = IntervalSampler(await self.adapter.read(), self.config.time_scale)
        await self.client.run()
        if not self.registered:
            log.error("VEN %s could not register with %s", self.config.ven_name, self.config.vtn_url)

    async def stop(self) -> None:
        if self.client.client_session is not None:
            await self.client.stop()
        await self.adapter.stop()

    # --- events ------------------------------------------------------------
    async def on_event(self, event: dict) -> str:
        descriptor = event["event_descriptor"]
        event_id = descriptor["event_id"]
        if descriptor["event_status"] == enums.EVENT_STATUS.CANCELLED:
            await self.adapter.clear()
            self.decisions.pop(event_id, None)
            return Opt.IN.value
        window = _window(event)
        reading = await self.adapter.read()
        decision = decide(window, reading, self.profile, self.config.prefs, self.clock.now(),
                          self.config.time_scale)
        try:
            for command in decision.commands:
                await self.adapter.apply(command)
        except AdapterError as err:
            decision = Decision(Opt.OUT, f"device refused the command: {err}")
        self.decisions[event_id] = decision
        log.info("VEN %s event %s: %s (%s)", self.config.ven_name, event_id, decision.opt,
                 decision.reason)
        return decision.opt.value

    # --- telemetry ---------------------------------------------------------
    async def _report_point(self, r_id: str) -> list:
        interval = self._sampler.close(await self.adapter.read())
        if interval is None:
            return []
        value = {"kw": interval.kw, "kwh": interval.kwh, "soc": interval.soc_pct}[r_id]
        return [(interval.start, round(value, 6))]


def _window(event: dict) -> EventWindow:
    active = event["active_period"]
    signal = _first(event["event_signals"])
    interval = _first(signal["intervals"])
    return EventWindow(
        event_id=event["event_descriptor"]["event_id"],
        start=active["dtstart"],
        end=active["dtstart"] + active["duration"],
        signal=EventSignal(signal["signal_name"], signal["signal_type"],
                           float(interval["signal_payload"])),
    )


def _first(value):
    """openleadr's parser gives a dict for a single element and a list for several."""
    return value[0] if isinstance(value, list) else value
