"""The VTN: openleadr's OpenADR 2.0b server with its state in the VTN store.

openleadr keeps registrations, events and reports in process memory; every
handler here reads and writes the store instead, so a restart (or a second
VTN process on the same database) loses nothing.
"""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

from openleadr import OpenADRServer, errors

from flexadr.clock import Clock
from vtn.oadr_events import to_oadr
from vtn.security import signature_middleware
from vtn.store import Store

log = logging.getLogger(__name__)

# What a VEN's report description measures -> the TelemetryPoint column it fills.
MEASUREMENT_COLUMNS = {"RealPower": "kw", "RealEnergy": "kwh", "stateOfCharge": "soc_pct"}


@dataclass(frozen=True)
class VtnConfig:
    vtn_id: str
    host: str
    port: int
    cert: Path
    key: Path
    ca_file: Path
    poll_interval: timedelta = timedelta(seconds=10)
    telemetry_interval: timedelta = timedelta(minutes=15)


class Vtn:
    def __init__(self, config: VtnConfig, store: Store, clock: Clock):
        self.config = config
        self.store = store
        self.clock = clock
        self.server = OpenADRServer(
            vtn_id=config.vtn_id,
            cert=str(config.cert), key=str(config.key),
            http_cert=str(config.cert), http_key=str(config.key), http_ca_file=str(config.ca_file),
            http_host=config.host, http_port=config.port,
            requested_poll_freq=config.poll_interval,
            ven_lookup=self.ven_lookup,
            show_fingerprint=False,
        )
        for name in ("on_create_party_registration", "on_cancel_party_registration",
                     "on_poll", "on_request_event", "on_created_event", "on_register_report"):
            self.server.add_handler(name, getattr(self, name))
        self._accept_reports_without_intervals()
        create_message = self.server.services["poll_service"]._create_message
        self.server.app.middlewares.append(signature_middleware(create_message, config.vtn_id))

    def _accept_reports_without_intervals(self) -> None:
        """A report with no intervals is valid 2.0b, but openleadr answers it with HTTP 500."""
        service = self.server.services["report_service"]
        original = service.handlers["oadrUpdateReport"]

        async def update_report(payload: dict):
            for report in payload.get("reports", []):
                report.setdefault("intervals", [])
            return await original(payload)

        service.handlers["oadrUpdateReport"] = update_report

    async def start(self) -> None:
        await self.server.run()
        log.info("VTN %s listening on https://%s:%s", self.config.vtn_id, self.config.host,
                 self.config.port)

    async def stop(self) -> None:
        await self.server.stop()

    # --- EiRegisterParty ---------------------------------------------------
    def ven_lookup(self, ven_id: str) -> dict | None:
        ven = self.store.ven(ven_id)
        if ven is None:
            return None
        return {"ven_id": ven.ven_id, "ven_name": ven.ven_name,
                "fingerprint": ven.fingerprint, "registration_id": ven.registration_id}

    def on_create_party_registration(self, payload: dict) -> tuple[str, str]:
        fingerprint = payload.get("fingerprint")
        ven = self.store.ven_by_fingerprint(fingerprint) if fingerprint else None
        if ven is None:
            raise errors.NotRegisteredOrAuthorizedError(
                f"certificate {fingerprint} is not enrolled with this VTN")
        if ven.ven_name != payload.get("ven_name"):
            raise errors.NotRegisteredOrAuthorizedError(
                f"certificate {fingerprint} is enrolled as {ven.ven_name!r}, "
                f"not {payload.get('ven_name')!r}")
        registration_id = str(uuid.uuid4())
        self.store.set_registration(ven.ven_id, registration_id, self.clock.now())
        log.info("registered VEN %s (%s)", ven.ven_id, ven.device_kind)
        return ven.ven_id, registration_id

    def on_cancel_party_registration(self, payload: dict) -> tuple[str, dict]:
        self.store.set_registration(payload["ven_id"], None, self.clock.now())
        return "oadrCanceledPartyRegistration", {"registration_id": payload.get("registration_id"),
                                                 "ven_id": payload["ven_id"]}

    # --- EiEvent / OadrPoll ------------------------------------------------
    def _current_events(self, ven_id: str) -> list:
        now = self.clock.now()
        events = self.store.events_for(ven_id, not_ended_before=now)
        self.store.mark_delivered(ven_id, events)
        return [to_oadr(event, ven_id, now) for event in events]

    def on_poll(self, ven_id: str):
        if not self.store.undelivered(ven_id):
            return None
        return "oadrDistributeEvent", {"events": self._current_events(ven_id)}

    def on_request_event(self, ven_id: str):
        return self._current_events(ven_id) or None

    def on_created_event(self, ven_id: str, event_id: str, opt_type: str) -> None:
        if not self.store.record_opt(ven_id, event_id, opt_type, self.clock.now()):
            raise errors.InvalidIdError(f"event {event_id} was not sent to VEN {ven_id}")
        log.info("VEN %s answered %s to event %s", ven_id, opt_type, event_id)

    # --- EiReport ----------------------------------------------------------
    def on_register_report(self, ven_id, resource_id, measurement, unit, scale,
                           min_sampling_interval, max_sampling_interval):
        column = MEASUREMENT_COLUMNS.get(measurement)
        if column is None:
            return None
        interval = min(max(self.config.telemetry_interval, min_sampling_interval),
                       max_sampling_interval)
        return partial(self._store_values, ven_id, column, interval), interval

    def _store_values(self, ven_id: str, column: str, interval: timedelta,
                      values: list[tuple[datetime, float]]) -> None:
        for start, value in values:
            self.store.record_telemetry(ven_id, start, start + interval, **{column: float(value)})
