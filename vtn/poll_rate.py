"""The poll frequency a VEN was given at registration, held to (pure, per process).

oadrCreatedPartyRegistration tells every VEN its oadrRequestedOadrPollFreq; a VEN
that polls much faster costs every other VEN capacity, and the profile has the VEN
honour that frequency. Polls are allowed as a token bucket: a burst (a VEN that
restarts, re-registers or asks oadrRequestEvent polls early a few times), then at
most `SUSTAINED` times the requested rate. A poll beyond that is answered 459
(compliance error) and dequeues nothing, so the VEN loses no message by it.

The bucket lives in the process: with several workers a VEN may poll each of them
at the allowed rate, so the limit loosens by the worker count and never refuses a
conforming VEN.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

BURST = 10          # polls a VEN may make back to back
SUSTAINED = 2.0     # times the requested frequency a VEN may keep up


@dataclass
class _Bucket:
    tokens: float
    at: datetime


class PollRate:
    def __init__(self, requested: timedelta, burst: int = BURST, sustained: float = SUSTAINED):
        self.requested = requested
        self.burst = burst
        self.sustained = sustained
        # Seconds until a spent poll is allowed again (never zero: a 0 s interval
        # would make every poll a burst).
        self._refill_s = max(requested.total_seconds(), 0.001) / sustained
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, ven_id: str, now: datetime) -> bool:
        """Whether this poll is within the VEN's allowance (and take it if so)."""
        bucket = self._buckets.get(ven_id)
        if bucket is None:
            bucket = self._buckets[ven_id] = _Bucket(float(self.burst), now)
        elapsed = max((now - bucket.at).total_seconds(), 0.0)
        gained = elapsed / self._refill_s
        bucket.tokens, bucket.at = min(float(self.burst), bucket.tokens + gained), now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def refusal(self) -> str:
        seconds = self.requested.total_seconds()
        return (f"polling faster than the registration's oadrRequestedOadrPollFreq "
                f"(every {seconds:g} s; a burst of {self.burst}, then at most "
                f"{self.sustained:g}x that rate)")
