"""A token-bucket rate limit per key (the web chat uses one bucket per visitor, shared by their tabs).

Each key may spend `burst` messages at once; its bucket refills at `per_minute / 60` tokens a second.
These buckets live in this process's memory; with `redis.url` set the same bucket is kept in Redis
instead (gateway/coord/limits.py), so several gateway processes share one limit per visitor.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# Far more visitors than one process serves at once in a few seconds; a flood of fresh keys past this
# evicts the least recently used buckets (so memory stays bounded even under attack).
DEFAULT_MAX_KEYS = 10_000


class VisitorLimit(Protocol):
    """A limiter per key: this module's (memory) or gateway/coord/limits.py's (Redis)."""

    async def check(self, key: str) -> float: ...


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets per key: `burst` at once, then `per_minute` a minute; idle buckets are dropped."""

    def __init__(
        self,
        per_minute: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = DEFAULT_MAX_KEYS,
    ) -> None:
        if per_minute <= 0 or burst < 1 or max_keys < 1:
            raise ValueError("per_minute must be > 0, burst and max_keys >= 1")
        self.rate = per_minute / 60.0  # tokens per second
        self.burst = burst
        self.clock = clock
        self.max_keys = max_keys
        # A bucket left alone this long is full again, i.e. the same as no bucket: safe to forget.
        self.idle_s = burst / self.rate
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()  # least recently used first

    def take(self, key: str) -> float:
        """Spend one token of `key`: 0.0 when allowed, else the seconds until a token is back.

        A refused attempt spends nothing, so a visitor who waits is served again on time.
        """
        now = self.clock()
        self._evict_idle(now)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.burst), updated=now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            elapsed = max(now - bucket.updated, 0.0)  # a clock that steps back must not drain it
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed * self.rate)
            bucket.updated = now
            self._buckets.move_to_end(key)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate

    async def check(self, key: str) -> float:
        """`take` behind the interface the Redis limiter shares (its check is a network call)."""
        return self.take(key)

    def __len__(self) -> int:
        """How many buckets are kept (tests and metrics)."""
        return len(self._buckets)

    def _evict_idle(self, now: float) -> None:
        # Least recently used first, so the scan stops at the first bucket still in use: O(1) amortised.
        while self._buckets:
            key, bucket = next(iter(self._buckets.items()))
            if now - bucket.updated < self.idle_s:
                return
            del self._buckets[key]


def retry_after_header(wait_s: float) -> str:
    """The Retry-After value (whole seconds, at least 1) for a wait from `RateLimiter.take`."""
    return str(max(1, math.ceil(wait_s)))
