"""Signing benchmark: stock openleadr create_message vs flexadr.signing.MessageSigner.

In one process, for RSA-2048 and ECDSA P-256 keys, prints messages per second for
- signing M oadrPoll messages with openleadr's create_message (parses the PEM key
  for every message) and with the cached MessageSigner (parses it once);
- verifying them with openleadr's validate_xml_signature (its global nonce set,
  pruned by a full scan per message) and with flexadr.signing.validate_xml_signature
  (the same checks against a NonceCache);
- the nonce cache alone: K (timestamp, nonce) pairs arriving within the 5 s replay
  window, openleadr's _update_nonce_cache vs NonceCache.add.

    .venv/bin/python -m bench.signing --messages 200 --nonces 2000
"""
from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from lxml import etree
from openleadr import messaging

from certs.pki import create_ca, issue
from flexadr.signing import MessageSigner, NonceCache, validate_xml_signature

KEY_TYPES = ("rsa", "ecdsa")
LABELS = {"rsa": "RSA-2048", "ecdsa": "ECDSA P-256"}


@dataclass(frozen=True)
class Row:
    what: str
    key: str
    stock_per_s: float
    cached_per_s: float

    @property
    def speedup(self) -> float:
        return self.cached_per_s / self.stock_per_s


def rate(count: int, work: Callable[[], None]) -> float:
    """Calls per second of `work`, over `count` calls."""
    began = time.perf_counter()
    for _ in range(count):
        work()
    return count / (time.perf_counter() - began)


def bench_key(key_type: str, count: int, root: Path) -> list[Row]:
    ca = create_ca(root / key_type, key_type=key_type)
    ven = issue(ca, root / key_type, "ven-1", key_type=key_type)
    cert, key = ven.cert.read_bytes(), ven.key.read_bytes()
    signer = MessageSigner(cert, key)
    stock_sign = rate(count, lambda: messaging.create_message("oadrPoll", cert=cert, key=key,
                                                              ven_id="ven-1"))
    cached_sign = rate(count, lambda: signer("oadrPoll", ven_id="ven-1"))

    # Verify every message once (each carries its own nonce), parsing included. Both
    # verifiers get a freshly signed set: stock RSA signing is slower than the 5 s
    # replay window, and the signer does not change what there is to verify.
    messaging.NONCE_CACHE.clear()
    stock_iter = iter([signer("oadrPoll", ven_id="ven-1") for _ in range(count)])
    stock_verify = rate(count, lambda: messaging.validate_xml_signature(
        etree.fromstring(next(stock_iter).encode())))
    cache = NonceCache()
    cached_iter = iter([signer("oadrPoll", ven_id="ven-1") for _ in range(count)])
    cached_verify = rate(count, lambda: validate_xml_signature(
        etree.fromstring(next(cached_iter).encode()), cache))
    messaging.NONCE_CACHE.clear()
    label = LABELS[key_type]
    return [Row("sign oadrPoll", label, stock_sign, cached_sign),
            Row("verify oadrPoll", label, stock_verify, cached_verify)]


def bench_nonces(count: int) -> Row:
    """K distinct pairs all inside the replay window: the worst case for a full scan."""
    now = datetime.now(timezone.utc)
    pairs = [(now, f"{i:032x}") for i in range(count)]
    messaging.NONCE_CACHE.clear()
    stock_iter = iter(pairs)
    stock = rate(count, lambda: messaging._update_nonce_cache(*next(stock_iter)))
    messaging.NONCE_CACHE.clear()
    cache = NonceCache()
    cached_iter = iter(pairs)
    cached = rate(count, lambda: cache.add(*next(cached_iter)))
    return Row(f"nonce cache, {count} in window", "-", stock, cached)


def format_rows(rows: list[Row]) -> str:
    header = f"{'operation':<28} {'key':<12} {'stock msg/s':>12} {'cached msg/s':>13} {'speed-up':>9}"
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(f"{row.what:<28} {row.key:<12} {row.stock_per_s:>12,.0f} "
                     f"{row.cached_per_s:>13,.0f} {row.speedup:>8.1f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="bench.signing",
        description="Sign and verify M OpenADR messages with stock openleadr and with the "
                    "cached signer (RSA-2048, ECDSA P-256); time the nonce cache.")
    parser.add_argument("--messages", type=int, default=200, help="messages per measurement (default 200)")
    parser.add_argument("--nonces", type=int, default=2000,
                        help="nonces inside the replay window for the cache measurement (default 2000)")
    args = parser.parse_args(argv)
    if not 1 <= args.messages <= 100_000 or not 1 <= args.nonces <= 1_000_000:
        parser.error("--messages must be within 1..100000 and --nonces within 1..1000000")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-signing-") as tmp:
        for key_type in KEY_TYPES:
            rows += bench_key(key_type, args.messages, Path(tmp))
    rows.append(bench_nonces(args.nonces))
    print(f"Python {platform.python_version()}, {args.messages} messages per measurement; "
          f"stock = openleadr.messaging, cached = flexadr.signing")
    print(format_rows(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
