"""The coordination layer of several kefu processes: Redis when `redis.url` is set, memory otherwise.

Each shared concern has a small interface with an in-memory implementation (one process, the
behaviour kefu always had) and a Redis one (any number of processes):

| concern | module | memory | Redis |
|---|---|---|---|
| wake-ups (agent events, outbox, handoff) | `events.py` | `LocalBus` | `RedisBus` (pub/sub) |
| in-flight webhook deliveries (WeChat retries) | `inflight.py` | the delivery's own task map | `SharedInFlight` |
| platform access tokens + refresh lock | `tokens.py` | `TokenCache` alone | `SharedTokens` |
| the per-visitor rate limit | `limits.py` | `gateway.rate_limit.RateLimiter` | `SharedRateLimiter` |
| QQ passive-reply counters (msg_seq, replies per message) | `counters.py` | `LocalCounters` | `SharedCounters` |
| agents' console connections, the assignment lock | `presence.py` | `Local…` | `Shared…` |

`check_processes` refuses to start several processes on PostgreSQL without Redis.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.coord.connection import CoordUnavailable, RedisLink, safe_redis_url
from gateway.coord.counters import LocalCounters, SharedCounters
from gateway.coord.events import LocalBus, RedisBus
from gateway.coord.inflight import SharedInFlight
from gateway.coord.limits import SharedRateLimiter
from gateway.coord.presence import LocalAssignLock, LocalConnections, SharedAssignLock, SharedConnections
from gateway.coord.settings import RedisSettings
from gateway.coord.tokens import SharedTokens
from gateway.rate_limit import RateLimiter

__all__ = [
    "PROCESSES_ENV",
    "CoordUnavailable",
    "Coordination",
    "RedisSettings",
    "build_coordination",
    "check_processes",
    "declared_processes",
]

logger = logging.getLogger(__name__)

# How many `kefu serve` processes share this deployment's database: set by `kefu serve --workers N` for
# its children, or by the operator on each machine of a multi-machine deployment.
PROCESSES_ENV = "KEFU_PROCESSES"


@dataclass(eq=False)
class Coordination:
    """What the processes share; `link` is None in a single process without Redis."""

    link: RedisLink | None = None
    bus: LocalBus = field(default_factory=LocalBus)
    connections: LocalConnections = field(default_factory=LocalConnections)
    assign_lock: LocalAssignLock = field(default_factory=LocalAssignLock)
    counters: LocalCounters = field(default_factory=LocalCounters)
    inflight: SharedInFlight | None = None
    tokens: SharedTokens | None = None

    @property
    def shared(self) -> bool:
        return self.link is not None

    def rate_limiter(self, name: str, per_minute: float, burst: int) -> RateLimiter | SharedRateLimiter:
        """A limiter with `async check(key)`: in Redis when shared, else in this process's memory."""
        if self.link is None:
            return RateLimiter(per_minute, burst)
        return SharedRateLimiter(self.link, name, per_minute, burst)

    async def start(self) -> None:
        if self.link is not None and not await self.link.ping():
            # Start anyway: the paths that need Redis answer 503 until it is back (see README).
            logger.error("redis %s is not reachable at start-up; retrying on each use", self.link.where)
        await self.bus.start()
        await self.connections.start()

    async def stop(self) -> None:
        await self.bus.stop()
        await self.connections.stop()
        if self.link is not None:
            await self.link.close()

    async def ok(self) -> bool | None:
        """Whether Redis answers (None: not configured)."""
        return None if self.link is None else await self.link.ping()


def build_coordination(settings: RedisSettings) -> Coordination:
    """The memory implementations without `redis.url`, the Redis ones with it (nothing connects yet)."""
    if settings.url is None:
        return Coordination()
    link = RedisLink(settings)
    return Coordination(
        link=link,
        bus=RedisBus(link),
        connections=SharedConnections(link),
        assign_lock=SharedAssignLock(link),
        counters=SharedCounters(link),
        inflight=SharedInFlight(link),
        tokens=SharedTokens(link),
    )


def declared_processes(env: Mapping[str, str]) -> int:
    """The process count of `KEFU_PROCESSES` (1 when unset); ValueError for anything but a positive integer."""
    raw = env.get(PROCESSES_ENV, "").strip()
    if not raw:
        return 1
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"{PROCESSES_ENV} must be a positive integer, got {raw!r}")
    return int(raw)


def check_processes(database_url: str, redis: RedisSettings, processes: int) -> str | None:
    """Why this deployment must not start (None: it may).

    Several processes on PostgreSQL share the database but nothing else: without Redis each would keep
    its own in-flight deliveries, tokens, limits and connection counts, and WeChat retries landing on
    another process could be answered twice.
    """
    if processes <= 1 or redis.url is not None:
        return None
    if database_url.startswith("postgresql"):
        return (
            f"{processes} kefu processes on PostgreSQL need Redis to coordinate (in-flight WeChat deliveries, "
            "access tokens, rate limits, agent connections and wake-ups would otherwise be per process, "
            "and a retried message could be answered twice): set redis.url (e.g. redis://127.0.0.1:6379/0) "
            f"or run one process ({PROCESSES_ENV}=1)"
        )
    return None


def describe(settings: RedisSettings) -> str:
    """Where the coordination state lives, for the start-up banner."""
    return "in memory (one process)" if settings.url is None else f"redis {safe_redis_url(settings.url)}"
