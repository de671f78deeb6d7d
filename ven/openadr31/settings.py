"""What the 3.1 link needs beyond the agent's common config (ven.toml's [oadr31] table)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

NOTIFY_PATH = "/oadr31/notify"     # where the agent's webhook listens


@dataclass(frozen=True)
class Oadr31Settings:
    client_id: str
    client_secret: str
    token_url: str | None = None          # None: the VTN's GET /auth/server names it
    reread: timedelta = timedelta(seconds=60)    # wall time between full reads of the events
    webhook_host: str | None = None       # None: no subscription, the re-read alone
    webhook_port: int = 0                 # 0: any free port
    webhook_url: str | None = None        # as the VTN reaches it; default http://host:port/...
