"""The per-visitor rate limit shared by every process: one token bucket per key in Redis.

The same bucket as gateway/rate_limit.py (`burst` at once, refilled at `per_minute / 60` a second),
computed by a Lua script in Redis's own clock, so a visitor whose tabs reach different processes
spends from one bucket. A refused attempt spends nothing.
"""

from __future__ import annotations

from gateway.coord.connection import RedisLink

# KEYS[1] the bucket. ARGV: rate per second, burst, TTL ms. Returns the wait in seconds (0: allowed).
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local b = redis.call('HMGET', KEYS[1], 'tokens', 'updated')
local tokens = tonumber(b[1]) or burst
local updated = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(now - updated, 0) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'updated', tostring(now))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return tostring(wait)
"""


class SharedRateLimiter:
    """Token buckets per key in Redis (`<prefix>:rate:<name>:<key>`); idle buckets expire when full again."""

    def __init__(self, link: RedisLink, name: str, per_minute: float, burst: int) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("per_minute must be > 0 and burst >= 1")
        self.link = link
        self.name = name
        self.rate = per_minute / 60.0
        self.burst = burst
        # A bucket left alone this long is full again, the same as no bucket.
        self._ttl_ms = max(int(burst / self.rate * 1000), 1000)
        self._take = link.client.register_script(_TAKE)

    async def check(self, key: str) -> float:
        """Spend one token of `key`: 0.0 when allowed, else the seconds until one is back."""
        async with self.link.guard("rate limit"):
            wait = await self._take(
                keys=[self.link.key("rate", self.name, key)], args=[self.rate, self.burst, self._ttl_ms]
            )
        return float(wait)
