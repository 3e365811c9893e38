"""One Redis connection pool per process (redis-py's asyncio client) and what "Redis is down" means.

Every Redis call of the coordination layer goes through `RedisLink.guard`, which turns connection
errors and timeouts into `CoordUnavailable`: the paths that need Redis answer a 503 with Retry-After
instead of a traceback, and the pool reconnects by itself on the next call once Redis is back.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.utils import get_lib_version

from gateway.coord.settings import RedisSettings

logger = logging.getLogger(__name__)

# redis-py reads its version from the package metadata (file I/O) on the first connection and caches it:
# read it now, at import, rather than on the event loop.
get_lib_version()


class CoordUnavailable(ConnectionError):
    """Redis (the shared coordination layer) did not answer; `retry_after_s` is what to tell clients.

    A ConnectionError, so callers that retry network failures (the outbox) retry this one too.
    """

    def __init__(self, reason: str, retry_after_s: int = 5) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s


def safe_redis_url(url: str) -> str:
    """The URL without its password (for logs and errors)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


class RedisLink:
    """The process's Redis client, its key prefix and its identity among the processes."""

    def __init__(self, settings: RedisSettings) -> None:
        assert settings.url is not None
        self.settings = settings
        self.where = safe_redis_url(settings.url)
        self.client: aioredis.Redis = aioredis.Redis.from_url(
            settings.url,
            decode_responses=True,
            socket_timeout=settings.timeout_s,
            socket_connect_timeout=settings.timeout_s,
            health_check_interval=10,
        )
        # Names this process in shared state (connection counts), so a dead process's share can be told apart.
        self.process_id = uuid.uuid4().hex[:12]
        self._down = False

    def key(self, *parts: object) -> str:
        """`<prefix>:<part>:<part>…`."""
        return ":".join([self.settings.prefix, *(str(p) for p in parts)])

    @contextlib.asynccontextmanager
    async def guard(self, what: str) -> AsyncIterator[None]:
        """Run Redis calls; a connection error or timeout becomes CoordUnavailable (logged once per outage)."""
        try:
            yield
        except (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError) as exc:
            if not self._down:
                logger.error("redis %s is unreachable (%s: %s)", self.where, what, type(exc).__name__)
            self._down = True
            raise CoordUnavailable(f"redis unreachable during {what}", self.settings.retry_after_s) from None
        if self._down:
            logger.warning("redis %s is reachable again", self.where)
            self._down = False

    async def ping(self) -> bool:
        """Whether Redis answers now."""
        try:
            async with self.guard("ping"):
                return bool(await self.client.ping())
        except CoordUnavailable:
            return False

    async def close(self) -> None:
        await self.client.aclose()
