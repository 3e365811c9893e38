"""Small counters with an expiry, shared by every process: the QQ bot's passive-reply bookkeeping.

QQ allows at most 5 passive replies per customer message and refuses a `msg_seq` used before for the
same `msg_id`; with several processes sending, both counts must be the same for all of them.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from gateway.coord.connection import RedisLink

MEMORY = 8192  # counters kept by one process (the oldest are forgotten first)


class LocalCounters:
    """Counters in this process's memory (one process)."""

    def __init__(self) -> None:
        self._values: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def _live(self, name: str) -> int:
        found = self._values.get(name)
        if found is None or found[1] < time.monotonic():
            self._values.pop(name, None)
            return 0
        return found[0]

    async def get(self, name: str) -> int:
        return self._live(name)

    async def add(self, name: str, amount: int, ttl_s: float) -> int:
        """Add `amount` (may be 0) and return the new value; the counter is forgotten `ttl_s` after its creation."""
        value = self._live(name) + amount
        expires = self._values[name][1] if name in self._values else time.monotonic() + ttl_s
        self._values[name] = (value, expires)
        self._values.move_to_end(name)
        while len(self._values) > MEMORY:
            self._values.popitem(last=False)
        return value

    async def raise_to(self, name: str, value: int, ttl_s: float) -> int:
        """Make the counter at least `value`; returns its value."""
        current = self._live(name)
        return await self.add(name, max(value - current, 0), ttl_s)


# KEYS[1] the counter; ARGV[1] minimum value, ARGV[2] TTL ms (set on creation).
_RAISE = """
local v = tonumber(redis.call('GET', KEYS[1]) or '0')
local m = tonumber(ARGV[1])
if v < m then
  local created = redis.call('EXISTS', KEYS[1]) == 0
  redis.call('SET', KEYS[1], m, 'KEEPTTL')
  if created then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
  return m
end
return v
"""


class SharedCounters(LocalCounters):
    """Counters in Redis (`<prefix>:count:<name>`)."""

    def __init__(self, link: RedisLink) -> None:
        super().__init__()
        self.link = link
        self._raise = link.client.register_script(_RAISE)

    async def get(self, name: str) -> int:
        async with self.link.guard("counter"):
            value = await self.link.client.get(self.link.key("count", name))
        return int(value or 0)

    async def add(self, name: str, amount: int, ttl_s: float) -> int:
        key = self.link.key("count", name)
        async with self.link.guard("counter"):
            pipe = self.link.client.pipeline(transaction=True)
            pipe.incrby(key, amount)
            pipe.expire(key, max(int(ttl_s), 1), nx=True)
            value, _ = await pipe.execute()
        return int(value)

    async def raise_to(self, name: str, value: int, ttl_s: float) -> int:
        async with self.link.guard("counter"):
            result = await self._raise(keys=[self.link.key("count", name)], args=[value, int(ttl_s * 1000)])
        return int(result)
