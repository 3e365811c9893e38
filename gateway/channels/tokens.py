"""A cached platform access token, fetched by one caller at a time (single-flight).

Platforms (WeChat, the QQ bot OpenAPI) hand out short-lived tokens and may invalidate the previous
one on each fetch, so concurrent senders must share one fetch. The fetch itself (URL, payload, error
mapping) belongs to each channel; this class only does caching, expiry and the lock. With several
processes (`redis.url` set) the token and its refresh lock are shared through `SharedTokenStore`
(gateway/coord/tokens.py): one process fetches, the others use what it stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

# A fetch returns the token and its lifetime in seconds.
TokenFetch = Callable[[], Awaitable[tuple[str, float]]]
# Tries to get a token from the shared store before fetching without its lock (its holder died).
SHARED_TRIES = 3


class SharedTokenStore(Protocol):
    """Tokens and refresh locks shared by the processes (gateway/coord/tokens.py over Redis)."""

    async def cached(self, name: str) -> tuple[str, float] | None: ...

    async def store(self, name: str, token: str, lifetime_s: float) -> None: ...

    async def lock(self, name: str) -> str | None: ...

    async def unlock(self, name: str, handle: str) -> None: ...

    async def wait_for_other(self, name: str, stale: str | None) -> tuple[str, float] | None: ...


class TokenCache:
    """One credential's token: cached until `margin_s` before expiry, refreshed single-flight."""

    def __init__(
        self,
        fetch: TokenFetch,
        *,
        margin_s: float,
        clock: Callable[[], float] = time.monotonic,
        name: str = "token",
        shared: SharedTokenStore | None = None,
    ) -> None:
        self._fetch_token = fetch
        self._shared = shared
        self._margin_s = margin_s
        self._clock = clock
        self.name = name
        self._token: str | None = None
        self._expires_at = 0.0
        self._lock = asyncio.Lock()
        self.fetches = 0  # how many fetches ran (for tests and metrics)

    def __repr__(self) -> str:  # never show the token itself
        return f"TokenCache({self.name!r}, cached={self._token is not None})"

    def _valid(self) -> str | None:
        if self._token is not None and self._clock() < self._expires_at:
            return self._token
        return None

    async def get(self) -> str:
        """A valid token, fetching one when the cache is empty or about to expire."""
        token = self._valid()
        if token is not None:
            return token
        async with self._lock:
            token = self._valid()  # another caller may have fetched while this one waited
            if token is not None:
                return token
            return await self._obtain(None)

    async def refresh(self, stale: str) -> str:
        """A new token after the platform rejected `stale`; callers holding the same stale token share one fetch."""
        async with self._lock:
            if self._token is not None and self._token != stale and self._valid() is not None:
                return self._token
            return await self._obtain(stale)

    def invalidate(self) -> None:
        """Forget the cached token (the next `get` fetches)."""
        self._token = None
        self._expires_at = 0.0

    async def _obtain(self, stale: str | None) -> str:
        """A token other than `stale`: from the shared store, else fetched under its lock (or alone)."""
        shared = self._shared
        if shared is None:
            return await self._fetch()
        for _ in range(SHARED_TRIES):
            found = await shared.cached(self.name)
            if found is not None and found[0] != stale:
                return self._adopt(*found)
            handle = await shared.lock(self.name)
            if handle is None:
                found = await shared.wait_for_other(self.name, stale)
                if found is not None:
                    return self._adopt(*found)
                continue  # the holder let go without storing one (its fetch failed): try again
            try:
                found = await shared.cached(self.name)  # stored between our read and our lock
                if found is not None and found[0] != stale:
                    return self._adopt(*found)
                token = await self._fetch()
                await shared.store(self.name, token, self._expires_at - self._clock())
                return token
            finally:
                await shared.unlock(self.name, handle)
        return await self._fetch()

    def _adopt(self, token: str, usable_s: float) -> str:
        self._token = token
        self._expires_at = self._clock() + usable_s
        return token

    async def _fetch(self) -> str:
        self.fetches += 1
        token, expires_in = await self._fetch_token()
        self._token = token
        # A margin larger than the lifetime would refetch on every call: keep it at least half its life.
        self._expires_at = self._clock() + max(expires_in - self._margin_s, expires_in / 2)
        return token


def parse_expires_in(value: object, default: float = 7200.0) -> float:
    """A token lifetime from a platform answer; QQ sends it as a string ("7200"), WeChat as a number."""
    if isinstance(value, bool):
        return default
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return seconds if seconds > 0 else default
