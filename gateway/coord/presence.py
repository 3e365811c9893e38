"""Agents' open console connections and the assignment lock, shared by every process.

An agent goes offline when their LAST console socket closes, whichever process held it: each process
counts its own sockets in `<prefix>:conns:<agent>` (a hash field per process) and keeps
`<prefix>:proc:<id>` alive while it runs, so the share of a process killed with -9 stops counting
once that key expires. The assignment lock makes one process at a time plan assignments (the
database's compare-and-set already prevents double assignment; the lock avoids wasted races).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from gateway.coord.connection import CoordUnavailable, RedisLink

logger = logging.getLogger(__name__)

ALIVE_S = 30  # a process's liveness key lives this long…
REFRESH_S = 10.0  # …and is renewed this often
ASSIGN_LOCK_S = 30.0  # the longest one assignment round may hold the lock
ASSIGN_WAIT_S = 10.0  # how long another round waits for it


class LocalConnections:
    """Console sockets counted in this process (one process: the in-memory behaviour)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    async def opened(self, agent_id: str) -> None:
        self._counts[agent_id] = self._counts.get(agent_id, 0) + 1

    async def closed(self, agent_id: str) -> int:
        """One socket fewer; returns how many the agent still has open (0: take them offline)."""
        left = self._counts.get(agent_id, 1) - 1
        if left > 0:
            self._counts[agent_id] = left
        else:
            self._counts.pop(agent_id, None)
        return max(left, 0)

    async def start(self) -> None:
        """Nothing to keep alive in one process."""

    async def stop(self) -> None:
        """Nothing to release."""


class SharedConnections(LocalConnections):
    """Console sockets counted per process in Redis; a dead process's share stops counting."""

    def __init__(self, link: RedisLink) -> None:
        super().__init__()
        self.link = link
        self._alive: asyncio.Task[None] | None = None

    async def opened(self, agent_id: str) -> None:
        async with self.link.guard("connection count"):
            await self.link.client.hincrby(self.link.key("conns", agent_id), self.link.process_id, 1)

    async def closed(self, agent_id: str) -> int:
        key = self.link.key("conns", agent_id)
        async with self.link.guard("connection count"):
            await self.link.client.hincrby(key, self.link.process_id, -1)
            counts = await self.link.client.hgetall(key)
            live = [p for p, n in counts.items() if int(n) > 0]
            alive = await self.link.client.mget([self.link.key("proc", p) for p in live]) if live else []
            stale = [p for p, n in counts.items() if int(n) <= 0]
            if stale:
                await self.link.client.hdel(key, *stale)
        return sum(int(counts[p]) for p, a in zip(live, alive, strict=True) if a is not None)

    async def start(self) -> None:
        self._alive = asyncio.create_task(self._keep_alive(), name="kefu-coord-alive")

    async def stop(self) -> None:
        if self._alive is not None:
            self._alive.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._alive
        with contextlib.suppress(CoordUnavailable):
            async with self.link.guard("process exit"):
                await self.link.client.delete(self.link.key("proc", self.link.process_id))

    async def _keep_alive(self) -> None:
        while True:
            with contextlib.suppress(CoordUnavailable):
                async with self.link.guard("process alive"):
                    await self.link.client.set(self.link.key("proc", self.link.process_id), "1", ex=ALIVE_S)
            await asyncio.sleep(REFRESH_S)


class LocalAssignLock:
    """One assigner at a time in this process."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        async with self._lock:
            yield


class SharedAssignLock(LocalAssignLock):
    """One assigner at a time across the processes (redis-py's lock, released if its holder dies)."""

    def __init__(self, link: RedisLink) -> None:
        super().__init__()
        self.link = link

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        async with self._lock:  # this process's rounds queue here, not on Redis
            lock = self.link.client.lock(
                self.link.key("assign-lock"), timeout=ASSIGN_LOCK_S, blocking_timeout=ASSIGN_WAIT_S
            )
            async with self.link.guard("assignment lock"):
                got = await lock.acquire()
            if not got:
                # Another process holds it for long: assign anyway, the database's compare-and-set decides.
                logger.warning("assignment lock busy for %.0fs; assigning without it", ASSIGN_WAIT_S)
            try:
                yield
            finally:
                if got:
                    with contextlib.suppress(Exception):
                        await lock.release()
