"""What the 3.1 edge needs from the VTN's configuration (the `[openadr31]` table)."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta


@dataclass(frozen=True)
class MqttSettings:
    """The MQTT notifier: the broker the VTN publishes to, and what VENs are told of it."""
    url: str                            # how the VTN reaches the broker: mqtt://host:port
    username: str                       # the VTN's own broker account (publishes only)
    password: str
    public_uris: tuple[str, ...] = ()   # advertised in GET /notifiers; default: (url,)
    topic_prefix: str = ""              # e.g. "openadr/" when the broker is shared


@dataclass(frozen=True)
class NotifySettings:
    """Delivery of notifications (webhooks and MQTT) from the database outbox."""
    interval: timedelta = timedelta(seconds=0.5)   # how often the outbox is looked at
    max_attempts: int = 8                          # then a notification is given up (kept)
    first_retry: timedelta = timedelta(seconds=2)  # doubled after each failure ...
    max_retry: timedelta = timedelta(minutes=10)   # ... up to this
    lease: timedelta = timedelta(seconds=60)       # a claimed row is another's after this
    timeout: timedelta = timedelta(seconds=10)     # one webhook POST
    keep: timedelta = timedelta(days=1)            # delivered / given-up rows, then deleted
    allow_private_callbacks: bool = False          # callbacks into loopback/private nets


@dataclass(frozen=True)
class Settings:
    token_secret: str                   # HS256 key of the access tokens, >= 32 bytes
    host: str = "127.0.0.1"
    port: int = 8081
    token_ttl: timedelta = timedelta(hours=1)
    issuer: str = "flexadr-vtn"
    public_url: str | None = None       # base URL clients use (for /auth/server's tokenURL)
    # Trusting an external authorization server as well: its JWKS, and what its tokens say.
    jwks_url: str | None = None
    audience: str | None = None         # required `aud` of external tokens
    external_issuer: str | None = None  # required `iss` of external tokens
    notify: NotifySettings = field(default_factory=NotifySettings)
    mqtt: MqttSettings | None = None    # None: webhooks only
