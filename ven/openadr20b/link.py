"""The agent's 2.0b link: registers over openleadr (and keeps trying), hands every
oadrEvent to the agent core, tells the VTN the agent's opt, and runs the uplink that
sends the outbox as TELEMETRY_USAGE / TELEMETRY_STATUS reports."""
from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from openleadr import enums, objects, utils

from ven.events import RESOURCE_ID
from ven.openadr20b.client import FlexClient
from ven.openadr20b.events import from_openleadr
from ven.openadr20b.push_server import PushServer
from ven.openadr20b.uplink import STATUS, USAGE, Uplink
from ven.policy import Opt
from ven.store import LocalStore

if TYPE_CHECKING:
    from ven.agent import AgentConfig, Core

log = logging.getLogger(__name__)

# r_id -> (openleadr measurement, unit, SI scale). State of charge has no 2.0b
# measurement, so it travels as a customUnit whose description names it.
USAGE_POINTS = {
    "kw": ("REAL_POWER", "W", "k"),
    "kwh": ("ENERGY_REAL", "Wh", "k"),
    "soc": ("stateOfCharge", "%", "none"),
}
STATUS_POINTS = ("status", "plugged_in")      # oadrPayloadResourceStatus, and the plug
SAMPLING = objects.SamplingRate(min_period=timedelta(seconds=1), max_period=timedelta(hours=1))
REGISTER_RETRY = timedelta(seconds=30)


class Link20b:
    def __init__(self, config: "AgentConfig", store: LocalStore, core: "Core"):
        self.config, self.core = config, core
        self.client = FlexClient(
            ven_name=config.ven_name, vtn_url=config.vtn_url,
            cert=str(config.cert), key=str(config.key), ca_file=str(config.ca_file),
            vtn_fingerprint=config.vtn_fingerprint, show_fingerprint=False)
        self.client.add_handler("on_event", self.on_event)
        self.client.add_handler("on_update_event", self.on_event)
        self.push_server = None             # what the VTN pushes to: PushServer, XmppTransport
        if config.push is not None:       # the push exchange model: the VTN POSTs to us
            self.client.push_address = config.push.public_url
            self.push_server = PushServer(self.client, config.push, config.cert, config.key,
                                          config.ca_file, config.vtn_fingerprint)
        elif config.xmpp is not None:     # XMPP: requests and pushed messages on one connection
            from ven.openadr20b.xmpp_link import XmppTransport
            self.push_server = XmppTransport(self.client, config.xmpp, config.vtn_fingerprint)
        self._describe_reports()
        self.uplink = Uplink(self.client, store)
        self._tasks: list[asyncio.Task] = []

    @property
    def ven_id(self) -> str | None:
        return self.client.ven_id

    @property
    def registered(self) -> bool:
        return self.client.registration_id is not None

    async def start(self) -> None:
        if self.push_server is not None:     # listening before the VTN learns the address
            await self.push_server.start()
        self._tasks = [asyncio.create_task(self.uplink.run(),
                                           name=f"{self.config.ven_name}-uplink")]
        if not await self._register():
            self._tasks.append(asyncio.create_task(self._register_loop()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.push_server is not None:
            await self.push_server.stop()
        await self.client.stop()

    def outbox_changed(self) -> None:
        self.uplink.wake.set()

    async def on_event(self, raw: dict) -> str:
        """openleadr's handler: the event to the core, its opt back as 2.0b's optType. An
        event that breaks the profile never reaches the core (the client answers it 454)."""
        if raw["event_descriptor"]["event_id"] in self.client.refused_events:
            return Opt.OUT.value
        return (await self.core.on_event(from_openleadr(raw))).value

    async def tell_opt(self, event_id: str, modification_number: int, opt: Opt,
                       override: bool) -> None:
        if not self.registered:
            return
        reason = (enums.OPT_REASON.OVERRIDE_STATUS if override
                  else enums.OPT_REASON.PARTICIPATING if opt is Opt.IN
                  else enums.OPT_REASON.NOT_PARTICIPATING)
        await self.client.created_event(request_id=utils.generate_id(), event_id=event_id,
                                        opt_type=opt.value, modification_number=modification_number)
        await self.client.create_opt(opt_type=opt.value, opt_reason=reason, event_id=event_id,
                                     modification_number=modification_number,
                                     targets=[objects.Target(ven_id=self.ven_id)])

    async def _register(self) -> bool:
        await self.client.run()
        if not self.registered:
            log.error("VEN %s could not register with %s", self.config.ven_name,
                      self.config.xmpp.vtn_jid if self.config.xmpp else self.config.vtn_url)
            self.client.client_session = None      # openleadr closed it; a retry needs a new one
            return False
        request = self.client.requested.get(USAGE)
        if request is not None and request.granularity:
            # Report at the granularity the VTN asked for (program time).
            self.core.report_every(request.granularity * self.config.time_scale)
        self.uplink.wake.set()
        return True

    async def _register_loop(self) -> None:
        while True:
            await asyncio.sleep(REGISTER_RETRY.total_seconds())
            if await self._register():
                return

    def _describe_reports(self) -> None:
        specifier = f"{self.config.ven_name}-usage"
        for r_id, (measurement, unit, scale) in USAGE_POINTS.items():
            self.client.add_report(callback=_pushed_from_outbox, resource_id=RESOURCE_ID,
                                   measurement=measurement, unit=unit, scale=scale, r_id=r_id,
                                   report_specifier_id=specifier, report_name=USAGE,
                                   sampling_rate=SAMPLING, report_duration=timedelta(hours=1))
        for r_id in STATUS_POINTS:
            self.client.add_report(callback=_pushed_from_outbox, resource_id=RESOURCE_ID,
                                   r_id=r_id, report_specifier_id=f"{self.config.ven_name}-status",
                                   report_name=STATUS, sampling_rate=SAMPLING,
                                   report_duration=timedelta(hours=1))


def _pushed_from_outbox(*_args, **_kwargs):
    raise RuntimeError("telemetry is pushed from the outbox, not sampled by openleadr")
