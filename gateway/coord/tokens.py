"""Platform access tokens shared by every process, refreshed by one of them at a time.

WeChat (and QQ, WeCom) invalidate the previous token when a new one is fetched, so processes that
each fetched their own would push each other into 40001 errors. The token lives in Redis under
`<prefix>:token:<name>` with the platform's lifetime; a refresh takes `<prefix>:token-lock:<name>`
(SET NX with an expiry, so a process killed mid-fetch blocks the others for `LOCK_MS` at most) and
the processes that did not get the lock wait for the token it stores.
"""

from __future__ import annotations

import asyncio
import uuid

from gateway.coord.connection import RedisLink

LOCK_MS = 15_000  # longer than a token fetch's HTTP timeout (10 s)
POLL_S = 0.05

# Delete the lock only if this caller still holds it (it may have expired and been taken meanwhile).
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class SharedTokens:
    """The shared token store (`channels/tokens.py` TokenCache uses it when Redis is configured)."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self._unlock = link.client.register_script(_UNLOCK)

    async def cached(self, name: str) -> tuple[str, float] | None:
        """The stored token and its remaining lifetime in seconds, if any."""
        key = self.link.key("token", name)
        async with self.link.guard("token read"):
            pipe = self.link.client.pipeline(transaction=False)
            pipe.get(key)
            pipe.pttl(key)
            token, ttl_ms = await pipe.execute()
        if token is None or ttl_ms is None or ttl_ms <= 0:
            return None
        return str(token), ttl_ms / 1000.0

    async def store(self, name: str, token: str, lifetime_s: float) -> None:
        async with self.link.guard("token write"):
            await self.link.client.set(self.link.key("token", name), token, px=max(int(lifetime_s * 1000), 1))

    async def lock(self, name: str) -> str | None:
        """Take the refresh lock: its owner handle, or None when another process holds it."""
        handle = uuid.uuid4().hex
        async with self.link.guard("token lock"):
            taken = await self.link.client.set(self.link.key("token-lock", name), handle, nx=True, px=LOCK_MS)
        return handle if taken else None

    async def unlock(self, name: str, handle: str) -> None:
        async with self.link.guard("token unlock"):
            await self._unlock(keys=[self.link.key("token-lock", name)], args=[handle])

    async def wait_for_other(self, name: str, stale: str | None) -> tuple[str, float] | None:
        """Wait (while another process holds the lock) for a token other than `stale`; None if the lock went."""
        lock_key = self.link.key("token-lock", name)
        while True:
            found = await self.cached(name)
            if found is not None and found[0] != stale:
                return found
            async with self.link.guard("token lock"):
                held = await self.link.client.exists(lock_key)
            if not held:
                return None
            await asyncio.sleep(POLL_S)
