"""Per-key rate limits: a token bucket per API key, in this process.

Each gateway process keeps its own buckets, so with N processes a key may make up to N times
its rate in all (docs/security.md says so). A bucket holds one second's worth of requests (at
least one), so short bursts pass and a steady rate above the limit does not.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from service.auth import Principal
from service.errors import RateLimited


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def admit(self, principal: Principal) -> None:
        """Take one request from the key's bucket; RateLimited (with the wait) if it is empty."""
        self.take(principal.key_id, principal.rate_per_s)

    def take(self, key_id: str, rate: float) -> None:
        """Take one from the bucket of `key_id`, which refills at `rate` a second;
        RateLimited (with the wait) if it is empty."""
        bucket = self._refilled(key_id, rate)
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return
        raise RateLimited(retry_after_s=max(1, math.ceil((1 - bucket.tokens) / rate)))

    def has_room(self, key_id: str, rate: float) -> bool:
        """Whether `take` would pass now, taking nothing (the scheduler asks before it claims a
        run, and `charge`s only a run it claimed)."""
        return self._refilled(key_id, rate).tokens >= 1

    def charge(self, key_id: str, rate: float) -> None:
        """Take one from the bucket whatever it holds (a debt delays what follows)."""
        self._refilled(key_id, rate).tokens -= 1

    def _refilled(self, key_id: str, rate: float) -> _Bucket:
        capacity = max(rate, 1.0)
        now = self._clock()
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = _Bucket(capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.at) * rate)
        bucket.at = now
        return bucket
