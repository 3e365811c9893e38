"""A cached platform access token, fetched by one caller at a time (single-flight).

Platforms (WeChat, the QQ bot OpenAPI) hand out short-lived tokens and may invalidate the previous
one on each fetch, so concurrent senders must share one fetch. The fetch itself (URL, payload, error
mapping) belongs to each channel; this class only does caching, expiry and the lock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

# A fetch returns the token and its lifetime in seconds.
TokenFetch = Callable[[], Awaitable[tuple[str, float]]]


class TokenCache:
    """One credential's token: cached until `margin_s` before expiry, refreshed single-flight."""

    def __init__(
        self,
        fetch: TokenFetch,
        *,
        margin_s: float,
        clock: Callable[[], float] = time.monotonic,
        name: str = "token",
    ) -> None:
        self._fetch_token = fetch
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
            return await self._fetch()

    async def refresh(self, stale: str) -> str:
        """A new token after the platform rejected `stale`; callers holding the same stale token share one fetch."""
        async with self._lock:
            if self._token is not None and self._token != stale and self._valid() is not None:
                return self._token
            return await self._fetch()

    def invalidate(self) -> None:
        """Forget the cached token (the next `get` fetches)."""
        self._token = None
        self._expires_at = 0.0

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
