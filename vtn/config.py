"""The VTN's config file (TOML), validated by one strict model (flexadr/config.py).

Relative paths are relative to the file. Every key is listed in docs/vtn.md.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from flexadr.config import (ConfigError, ReadableFile, Strict, XmppFile, read_toml,
                            require_tls, sqlite_relative_to, validate)
from schedules import model as program_model
from vtn.openadr31.settings import MqttSettings, NotifySettings
from vtn.openadr31.settings import Settings as Openadr31Settings
from vtn.planning import PlannerSettings, PlannerSources
from vtn.push import PushSettings
from vtn.service import VtnConfig
from vtn.weather_feed import NWS_URL, NwsPoint, NwsSettings

__all__ = ["ConfigError", "SmtpSettings", "VtnSettings", "load", "planner_settings"]

Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(gt=0)]


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    sender: str


@dataclass(frozen=True)
class VtnSettings:
    server: VtnConfig
    database_url: str
    workers: int = 1                  # processes serving one port on one database
    database_pool_size: int = 5       # connections per worker
    smtp: SmtpSettings | None = None
    planner: PlannerSettings | None = None
    openadr31: Openadr31Settings | None = None     # the OpenADR 3.1 edge (docs/openadr3.md)


class SmtpFile(Strict):
    host: str
    port: Port = 25
    sender: str


class NwsPointFile(Strict):
    city: str = Field(min_length=1)     # as the weather forecast file names it (e.g. "boston")
    lat: Annotated[float, Field(ge=-90, le=90)]
    lon: Annotated[float, Field(ge=-180, le=180)]


class NwsFile(Strict):
    points: list[NwsPointFile] = Field(min_length=1)
    user_agent: str = Field(min_length=1)    # the NWS asks for a contact, e.g. "utility.example ops@utility.example"
    url: str = Field(NWS_URL, pattern=r"^https?://")
    timeout_s: Seconds = 20

    def settings(self) -> NwsSettings:
        return NwsSettings(tuple(NwsPoint(p.city, p.lat, p.lon) for p in self.points),
                           self.user_agent, self.url.rstrip("/"), self.timeout_s)


class PlannerFile(Strict):
    programs: list[str] = Field(min_length=1)
    load_csv: ReadableFile
    load_history: list[ReadableFile] = []       # older load files, read before load_csv
    weather_csv: ReadableFile | None = None
    weather_forecast: ReadableFile | None = None   # issued hourly temperature forecasts
    alerts: list[ReadableFile] = []
    emergencies: list[ReadableFile] = []
    forecast: Literal["iso", "own"] = "iso"
    setpoint_kw: Annotated[float, Field(gt=0)] = 5.0
    every_min: Annotated[float, Field(gt=0)] = 60
    nws: NwsFile | None = None      # live hourly forecasts (api.weather.gov) for the own forecaster

    @field_validator("programs")
    @classmethod
    def _known_programs(cls, programs: list[str]) -> list[str]:
        for pid in programs:
            try:
                program_model.load(pid)
            except (FileNotFoundError, program_model.ProgramError) as err:
                raise ValueError(f"no program {pid!r}: {err}") from None
        return programs

    def settings(self) -> PlannerSettings:
        return PlannerSettings(
            programs=tuple(self.programs),
            sources=PlannerSources(load_csv=self.load_csv, load_history=tuple(self.load_history),
                                   weather_csv=self.weather_csv,
                                   weather_forecast=self.weather_forecast,
                                   alerts=tuple(self.alerts), emergencies=tuple(self.emergencies),
                                   forecast=self.forecast, setpoint_kw=self.setpoint_kw),
            every=timedelta(minutes=self.every_min),
            nws=self.nws.settings() if self.nws is not None else None)


class Openadr31NotifyFile(Strict):
    interval_s: Seconds = 0.5
    max_attempts: Annotated[int, Field(ge=1, le=100)] = 8
    first_retry_s: Seconds = 2
    max_retry_s: Seconds = 600
    lease_s: Seconds = 60
    timeout_s: Seconds = 10
    keep_h: Seconds = 24
    allow_private_callbacks: bool = False

    def settings(self) -> NotifySettings:
        return NotifySettings(
            interval=timedelta(seconds=self.interval_s), max_attempts=self.max_attempts,
            first_retry=timedelta(seconds=self.first_retry_s),
            max_retry=timedelta(seconds=self.max_retry_s), lease=timedelta(seconds=self.lease_s),
            timeout=timedelta(seconds=self.timeout_s), keep=timedelta(hours=self.keep_h),
            allow_private_callbacks=self.allow_private_callbacks)


class Openadr31MqttFile(Strict):
    url: Annotated[str, Field(pattern=r"^mqtt://[^/:]+(:\d+)?/?$")]   # the VTN's way to the broker
    username: str = Field("flexadr-vtn", min_length=1)
    password_file: ReadableFile
    public_uris: list[str] = []
    topic_prefix: str = ""

    def settings(self) -> MqttSettings:
        return MqttSettings(url=self.url, username=self.username,
                            password=self.password_file.read_text().strip(),
                            public_uris=tuple(self.public_uris), topic_prefix=self.topic_prefix)


class Openadr31File(Strict):
    host: str = "127.0.0.1"
    port: Port = 8081
    token_secret_file: ReadableFile           # HS256 key of the access tokens
    token_ttl_min: Annotated[float, Field(gt=0)] = 60
    issuer: str = "flexadr-vtn"
    public_url: str | None = None
    jwks_url: str | None = None               # also trust an external authorization server
    audience: str | None = None
    external_issuer: str | None = None
    notify: Openadr31NotifyFile = Openadr31NotifyFile()
    mqtt: Openadr31MqttFile | None = None     # the MQTT notifier (docs/openadr3.md)

    @field_validator("token_secret_file")
    @classmethod
    def _long_enough(cls, path: Path) -> Path:
        if len(path.read_bytes().strip()) < 32:
            raise ValueError(f"fewer than 32 bytes in {path} (e.g. `openssl rand -hex 32`)")
        return path

    def settings(self) -> Openadr31Settings:
        return Openadr31Settings(
            token_secret=self.token_secret_file.read_text().strip(), host=self.host,
            port=self.port, token_ttl=timedelta(minutes=self.token_ttl_min), issuer=self.issuer,
            public_url=self.public_url, jwks_url=self.jwks_url, audience=self.audience,
            external_issuer=self.external_issuer, notify=self.notify.settings(),
            mqtt=self.mqtt.settings() if self.mqtt else None)


_PUSH = PushSettings()     # the defaults of [push] are the delivery loop's own


class PushFile(Strict):
    """`[push]`: delivery to 2.0b push VENs (vtn/push.py)."""
    scan_interval_s: Seconds = _PUSH.scan_interval.total_seconds()
    timeout_s: Seconds = _PUSH.timeout.total_seconds()
    first_retry_s: Seconds = _PUSH.first_retry.total_seconds()
    max_retry_s: Seconds = _PUSH.max_retry.total_seconds()
    lease_s: Seconds = _PUSH.lease.total_seconds()
    in_flight: Annotated[int, Field(ge=1, le=1024)] = _PUSH.in_flight

    @model_validator(mode="after")
    def _consistent(self) -> "PushFile":
        if self.first_retry_s > self.max_retry_s:
            raise ValueError(f"first_retry_s {self.first_retry_s:g} is above max_retry_s "
                             f"{self.max_retry_s:g}")
        # The lease is renewed at half its time, before a message; the POST that follows
        # may take timeout_s: a shorter lease could expire under it and let another
        # process deliver the same message.
        if self.lease_s <= 2 * self.timeout_s:
            raise ValueError(f"lease_s {self.lease_s:g} must be more than twice timeout_s "
                             f"{self.timeout_s:g}")
        return self

    def settings(self) -> PushSettings:
        return PushSettings(
            scan_interval=timedelta(seconds=self.scan_interval_s),
            timeout=timedelta(seconds=self.timeout_s),
            first_retry=timedelta(seconds=self.first_retry_s),
            max_retry=timedelta(seconds=self.max_retry_s),
            lease=timedelta(seconds=self.lease_s), in_flight=self.in_flight)


class VtnFile(Strict):
    vtn_id: str = Field("FLEXADR_VTN", min_length=1)
    database: str = "sqlite:///vtn.sqlite"
    # Worker processes on the port (SO_REUSEPORT), one database (PostgreSQL for more than 1).
    workers: Annotated[int, Field(ge=1, le=64)] = 1
    database_pool_size: Annotated[int, Field(ge=1, le=100)] = 5   # per worker
    host: str = "127.0.0.1"
    port: Port = 8080
    cert: ReadableFile
    key: ReadableFile
    ca_file: ReadableFile
    alt_cert: ReadableFile | None = None     # with alt_key: an RSA identity beside an ECC one
    alt_key: ReadableFile | None = None
    tls_profile: Literal["default", "openadr"] = "default"   # flexadr/tls.py
    crl_file: ReadableFile | None = None
    poll_interval_s: Seconds = 10
    idle_connection_s: Seconds | None = None   # default: 2 x poll_interval_s + 10
    telemetry_interval_s: Seconds = 900
    replay_past_s: Seconds = 30          # signed messages older than this are refused
    replay_future_s: Annotated[float, Field(ge=0)] = 5   # ... and this far ahead (clock skew)
    admin_token: str | None = None
    admin_token_env: str | None = None   # preferred: the token stays out of the file
    admin_host: str = "127.0.0.1"
    admin_port: Port | None = None
    admin_cert: ReadableFile | None = None     # with admin_key: HTTPS on the admin listener
    admin_key: ReadableFile | None = None
    public_url: str | None = None
    webhook_allow_private: bool = False
    smtp: SmtpFile | None = None
    planner: PlannerFile | None = None
    openadr31: Openadr31File | None = None
    xmpp: XmppFile | None = None      # the 2.0b XMPP transport; absent: XMPP is refused (451)
    push: PushFile = PushFile()

    @model_validator(mode="after")
    def _distinct_ports(self) -> "VtnFile":
        if self.admin_port == self.port:
            raise ValueError(f"admin_port {self.admin_port} is also the OpenADR port")
        if self.openadr31 is not None and self.openadr31.port in (self.port, self.admin_port):
            raise ValueError(f"openadr31.port {self.openadr31.port} is taken by port or "
                             f"admin_port")
        if self.admin_token is not None and self.admin_token_env is not None:
            raise ValueError("admin_token and admin_token_env: give one, not both")
        for pair in ("admin", "alt"):
            if (getattr(self, f"{pair}_cert") is None) != (getattr(self, f"{pair}_key") is None):
                raise ValueError(f"{pair}_cert and {pair}_key: give both or neither")
        return self

    def admin_secret(self, source: str) -> str | None:
        if self.admin_token_env is None:
            return self.admin_token
        token = os.environ.get(self.admin_token_env)
        if not token:
            raise ConfigError(f"{source}: admin_token_env: ${self.admin_token_env} is not set")
        return token

    def server(self, source: str) -> VtnConfig:
        return VtnConfig(
            vtn_id=self.vtn_id, host=self.host, port=self.port,
            cert=self.cert, key=self.key, ca_file=self.ca_file,
            poll_interval=timedelta(seconds=self.poll_interval_s),
            idle_connection=(timedelta(seconds=self.idle_connection_s)
                             if self.idle_connection_s is not None else None),
            telemetry_interval=timedelta(seconds=self.telemetry_interval_s),
            admin_token=self.admin_secret(source), admin_port=self.admin_port,
            public_url=self.public_url,
            replay_past=timedelta(seconds=self.replay_past_s),
            replay_future=timedelta(seconds=self.replay_future_s),
            admin_host=self.admin_host, crl_file=self.crl_file,
            admin_cert=self.admin_cert, admin_key=self.admin_key,
            alt_cert=self.alt_cert, alt_key=self.alt_key, tls_profile=self.tls_profile,
            webhook_allow_private=self.webhook_allow_private,
            xmpp=(self.xmpp.settings(self.cert, self.key, self.ca_file, self.tls_profile)
                  if self.xmpp else None),
            push_settings=self.push.settings())


def load(path: Path) -> VtnSettings:
    path = Path(path)
    base = path.parent
    parsed = validate(VtnFile, read_toml(path), base, str(path))
    require_tls(str(path), "", parsed.cert, parsed.key, parsed.ca_file)
    for prefix in ("admin_", "alt_"):
        if getattr(parsed, f"{prefix}cert") is not None:
            require_tls(str(path), prefix, getattr(parsed, f"{prefix}cert"),
                        getattr(parsed, f"{prefix}key"))
    smtp = parsed.smtp and SmtpSettings(parsed.smtp.host, parsed.smtp.port, parsed.smtp.sender)
    planner = parsed.planner.settings() if parsed.planner else None
    openadr31 = parsed.openadr31.settings() if parsed.openadr31 else None
    return VtnSettings(parsed.server(str(path)), sqlite_relative_to(base, parsed.database),
                       parsed.workers, parsed.database_pool_size, smtp, planner, openadr31)


def planner_settings(table: dict[str, Any], base: Path,
                     source: str = "vtn.toml") -> PlannerSettings:
    """A `[planner]` table alone (relative paths relative to `base`)."""
    return validate(PlannerFile, table, base, source, prefix=("planner",)).settings()
