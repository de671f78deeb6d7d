"""What the 3.1 edge needs from the VTN's configuration (the `[openadr31]` table)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta


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
