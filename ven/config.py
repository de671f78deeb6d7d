"""VEN agent config files (TOML): one agent (`ven run`) or a fleet (`ven fleet`),
validated by one strict model (flexadr/config.py).

A fleet file has a `[defaults]` table merged under every `[[ven]]` entry.
Relative paths are relative to the config file.
"""
from __future__ import annotations

import difflib
import re
import zoneinfo
from datetime import time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationError, field_validator, model_validator

from flexadr.config import (ConfigError, FullJid, ReadableFile, Strict, XmppFile, check,
                            key_path, read_secret, read_toml, require_tls, secret_file,
                            sqlite_relative_to, validate)
from schedules import model
from ven.agent import AgentConfig
from ven.openadr20b.push_server import PushListen
from ven.openadr31.settings import Oadr31Settings
from ven.policy import OwnerPrefs
from ven.storm_watch import StormWatchConfig, watch_rules

__all__ = ["ConfigError", "agent_config", "load_agent", "load_fleet"]

Percent = Annotated[float, Field(ge=0, le=100)]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
TLS_KEYS = ("cert", "key", "ca_file")     # 2.0b: mutual TLS
FINGERPRINT = re.compile(r"^([0-9A-F]{2}:){9}[0-9A-F]{2}$")


class OwnerFile(Strict):
    min_soc_pct: Percent = 20.0
    ready_by: time | str | None = None
    ready_soc_pct: Percent = 80.0
    timezone: str = "America/New_York"
    opt_out_if_not_ready: bool = True

    @field_validator("ready_by")
    @classmethod
    def _clock_time(cls, value: time | str | None) -> time | None:
        if not isinstance(value, str):
            return value
        try:
            return time.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not a time of day 'HH:MM': {value!r}") from None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"no time zone {value!r} (e.g. 'America/New_York')") from None
        return value

    def prefs(self) -> OwnerPrefs:
        return OwnerPrefs(min_soc_pct=self.min_soc_pct, ready_by=self.ready_by,
                          ready_soc_pct=self.ready_soc_pct, timezone=self.timezone,
                          opt_out_if_not_ready=self.opt_out_if_not_ready)


class AdapterFile(Strict):
    name: str = "sim"
    config: dict[str, Any] = {}         # the adapter's own keys; the adapter checks them

    @field_validator("name")
    @classmethod
    def _installed(cls, name: str) -> str:
        from adapters import registry
        installed = sorted(registry.available())
        if name not in installed:
            close = difflib.get_close_matches(name, installed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"installed: {', '.join(installed)}"
            raise ValueError(f"no adapter {name!r} is installed ({hint})")
        return name


class StormWatchFile(Strict):
    program: str
    source: str                         # https:// URL or a file, relative to the config file
    every_min: Positive = 5

    @field_validator("program")
    @classmethod
    def _has_a_watch_rule(cls, pid: str) -> str:
        try:
            program = model.load(pid)
        except (FileNotFoundError, model.ProgramError) as err:
            raise ValueError(str(err)) from None
        if not watch_rules(program):
            raise ValueError(f"{program.id} has no storm rule with action "
                             f"'no_discharge_charge_full'")
        return program.id

    def settings(self, base: Path) -> StormWatchConfig:
        source = self.source
        if not source.startswith(("http://", "https://")):
            source = str((base / source).resolve())
        return StormWatchConfig(self.program, source, timedelta(minutes=self.every_min))


def _http_url(url: str) -> str:
    if not url.startswith(("https://", "http://")):
        raise ValueError(f"not an http(s):// URL: {url!r}")
    return url


HttpUrl = Annotated[str, AfterValidator(_http_url)]


class WebhookFile(Strict):
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 0     # 0: any free port
    url: HttpUrl | None = None  # as the VTN reaches it (a proxy, a public name)


ClientSecretFile = secret_file("`vtn oadr3-client create` prints the secret")


class Oadr31File(Strict):
    """OpenADR 3.1: OAuth client credentials, the webhook, how often to re-read."""
    client_id: str = Field(min_length=1)
    client_secret_file: ClientSecretFile
    token_url: HttpUrl | None = None    # default: the VTN's GET /auth/server names it
    reread_s: Positive = 60
    webhook: WebhookFile | None = None  # absent: no subscription; the re-read alone

    def settings(self) -> Oadr31Settings:
        hook = self.webhook
        return Oadr31Settings(
            client_id=self.client_id, client_secret=read_secret(self.client_secret_file),
            token_url=self.token_url, reread=timedelta(seconds=self.reread_s),
            webhook_host=hook.host if hook else None, webhook_port=hook.port if hook else 0,
            webhook_url=hook.url if hook else None)


class PushFile(Strict):
    """[push]: where the push endpoint listens and the URL the VTN is given."""
    public_url: str
    listen_host: str = "0.0.0.0"
    listen_port: Annotated[int, Field(ge=1, le=65535)]
    tls_profile: Literal["default", "openadr"] = "default"

    @field_validator("public_url")
    @classmethod
    def _https_without_credentials(cls, url: str) -> str:
        from urllib.parse import urlsplit
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"not an https:// URL with a host: {url!r}")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError(f"no credentials, query or fragment in the URL: {url!r}")
        return url.rstrip("/")

    def settings(self) -> PushListen:
        return PushListen(self.listen_host, self.listen_port, self.public_url, self.tls_profile)


class VenXmppFile(XmppFile):
    """[xmpp] of a VEN: its account, and the VTN's JID."""
    vtn_jid: FullJid

    def exchange(self, cert: Path, key: Path, ca_file: Path):
        from ven.openadr20b.xmpp_link import XmppExchange
        return XmppExchange(self.settings(cert, key, ca_file), self.vtn_jid)


class AgentFile(Strict):
    ven_name: str = Field(min_length=1)
    protocol: Literal["2.0b", "3.1"] = "2.0b"
    vtn_url: str | None = None          # required but with exchange = "xmpp" (the VTN's JID)
    cert: ReadableFile | None = None    # 2.0b: required (mutual TLS)
    key: ReadableFile | None = None
    ca_file: ReadableFile | None = None
    vtn_fingerprint: str | None = None
    oadr31: Oadr31File | None = None    # 3.1: required
    adapter: AdapterFile = AdapterFile()
    capacity_kwh: Positive
    max_discharge_kw: NonNegative = 0.0
    max_charge_kw: NonNegative = 0.0
    efficiency: Annotated[float, Field(gt=0, le=1)] = 0.95
    cycle_cap_per_year: Positive | None = None
    owner: OwnerFile = OwnerFile()
    time_scale: Positive = 1.0
    sample_period_s: Positive = 60
    telemetry_interval_min: Positive = 15
    state_url: str = "sqlite:///ven-state.sqlite"
    storm_watch: StormWatchFile | None = None
    group_ids: list[str] = []           # eiTarget groups this VEN belongs to
    party_ids: list[str] = []
    exchange: Literal["pull", "push", "xmpp"] = "pull"      # 2.0b exchange model / transport
    push: PushFile | None = None
    xmpp: VenXmppFile | None = None

    @model_validator(mode="after")
    def _push_table_with_push(self) -> "AgentFile":
        if self.exchange == "push" and self.push is None:
            raise ValueError("exchange = \"push\" needs a [push] table (public_url, listen_port)")
        if self.exchange != "push" and self.push is not None:
            raise ValueError("a [push] table needs exchange = \"push\"")
        if self.exchange == "xmpp" and self.xmpp is None:
            raise ValueError("exchange = \"xmpp\" needs an [xmpp] table (server_host, jid, "
                             "password_file, vtn_jid)")
        if self.exchange != "xmpp" and self.xmpp is not None:
            raise ValueError("an [xmpp] table needs exchange = \"xmpp\"")
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _protocol_keys(cls, data: Any, handler) -> "AgentFile":
        """cert, key and ca_file are required for 2.0b, [oadr31] for 3.1, vtn_url unless
        over XMPP: reported as missing beside every other problem of the file."""
        needed = ()
        if isinstance(data, dict):
            needed = {"2.0b": TLS_KEYS, "3.1": ("oadr31",)}.get(data.get("protocol", "2.0b"), ())
            if data.get("exchange") != "xmpp":
                needed = ("vtn_url", *needed)
        missing = [{"type": "missing", "loc": (key,), "input": data}
                   for key in needed if key not in data]
        try:
            parsed = handler(data)
        except ValidationError as err:
            raise ValidationError.from_exception_data(cls.__name__, missing + [
                {k: e[k] for k in ("type", "loc", "input", "ctx") if k in e}
                for e in err.errors()]) from None
        if missing:
            raise ValidationError.from_exception_data(cls.__name__, missing)
        if parsed.protocol == "2.0b" and parsed.oadr31 is not None:
            raise ValueError('[oadr31] is for protocol = "3.1"')
        if (parsed.cert is None) != (parsed.key is None):
            raise ValueError("cert and key go together (a client certificate)")
        return parsed

    @field_validator("vtn_url")
    @classmethod
    def _https(cls, url: str) -> str:
        if not url.startswith(("https://", "http://")):
            raise ValueError(f"not an https:// URL: {url!r}")
        return url

    @field_validator("vtn_fingerprint")
    @classmethod
    def _fingerprint(cls, value: str | None) -> str | None:
        if value is not None and not FINGERPRINT.match(value.upper()):
            raise ValueError(f"not a fingerprint like 'AB:CD:...' (10 bytes; `vtn certs "
                             f"fingerprint vtn.crt` prints it): {value!r}")
        return value.upper() if value else None

    def agent(self, base: Path) -> AgentConfig:
        return AgentConfig(
            ven_name=self.ven_name, vtn_url=self.vtn_url or "",
            cert=self.cert, key=self.key, ca_file=self.ca_file,
            vtn_fingerprint=self.vtn_fingerprint, protocol=self.protocol,
            oadr31=self.oadr31.settings() if self.oadr31 else None,
            adapter=self.adapter.name, adapter_config=dict(self.adapter.config),
            capacity_kwh=self.capacity_kwh, max_discharge_kw=self.max_discharge_kw,
            max_charge_kw=self.max_charge_kw, efficiency=self.efficiency,
            cycle_cap_per_year=self.cycle_cap_per_year, prefs=self.owner.prefs(),
            time_scale=self.time_scale,
            sample_period=timedelta(seconds=self.sample_period_s),
            telemetry_interval=timedelta(minutes=self.telemetry_interval_min),
            state_url=sqlite_relative_to(base, self.state_url),
            storm_watch=self.storm_watch.settings(base) if self.storm_watch else None,
            group_ids=tuple(self.group_ids), party_ids=tuple(self.party_ids),
            push=self.push.settings() if self.push else None,
            xmpp=self.xmpp.exchange(self.cert, self.key, self.ca_file) if self.xmpp else None)


class FleetFile(Strict):
    defaults: dict[str, Any] = {}
    # Named sets of keys merged over [defaults] for the entries that name them
    # (`group = "oadr31"`), e.g. one group of 3.1 agents in a fleet of 2.0b ones.
    groups: dict[str, dict[str, Any]] = {}
    ven: list[dict[str, Any]] = Field(min_length=1)


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(
            base.get(key), dict) else value
    return merged


def _entry(fleet: FleetFile, entry: dict[str, Any], source: str, i: int) -> dict[str, Any]:
    """One [[ven]] over its group over [defaults]."""
    entry = dict(entry)
    group = entry.pop("group", None)
    if group is None:
        return _merge(fleet.defaults, entry)
    if not isinstance(group, str) or group not in fleet.groups:
        known = ", ".join(sorted(fleet.groups)) or "none defined"
        raise ConfigError(f"{source}: ven[{i}].group: no group {group!r} (groups: {known})")
    return _merge(_merge(fleet.defaults, fleet.groups[group]), entry)


def agent_config(data: dict[str, Any], base: Path, source: str,
                 prefix: tuple[str | int, ...] = ()) -> AgentConfig:
    parsed = validate(AgentFile, data, base, source, prefix)
    if parsed.cert is not None:
        require_tls(source, key_path(prefix) + "." if prefix else "", parsed.cert, parsed.key,
                    parsed.ca_file)
    return parsed.agent(base)


def load_agent(path: Path) -> AgentConfig:
    return agent_config(read_toml(path), Path(path).parent, str(path))


def load_fleet(path: Path) -> list[AgentConfig]:
    base = Path(path).parent
    fleet = validate(FleetFile, read_toml(path), base, str(path))
    # problems in [defaults] and [groups.*] are reported there, not once per [[ven]]
    check(AgentFile, fleet.defaults, base, str(path), ("defaults",), allow_missing=True)
    for name, keys in fleet.groups.items():
        check(AgentFile, _merge(fleet.defaults, keys), base, str(path), ("groups", name),
              allow_missing=True)
    configs = [agent_config(_entry(fleet, entry, str(path), i), base, str(path), ("ven", i))
               for i, entry in enumerate(fleet.ven)]
    seen: dict[str, int] = {}
    for i, config in enumerate(configs):
        if config.ven_name in seen:
            raise ConfigError(f"{path}: ven[{i}].ven_name: {config.ven_name!r} is also "
                              f"ven[{seen[config.ven_name]}]")
        seen[config.ven_name] = i
    return configs
