"""One process at a time per periodic job on PostgreSQL (`pg_try_advisory_lock`), for `kefu serve --workers N`.

Every process runs the same job loops; a round that finds the job's lock taken skips, so the sweeps of N
processes do not race over the same due items (each item's own claim — a lease, SKIP LOCKED, a unique
row or a compare-and-set — still makes it once; the lock spares the duplicated reads and the doubled
"your place moved" notices of two concurrent catch-up assignments). Session-level: a process that dies
holding it releases it with its connection. SQLite runs one process (`--workers` refuses it): always yes.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text

from gateway.storage.store import Store

__all__ = ["job_key", "job_lock"]


def job_key(name: str) -> int:
    """The advisory lock key of a job (a signed 64-bit integer from its name)."""
    return int.from_bytes(hashlib.sha256(f"kefu.job.{name}".encode()).digest()[:8], "big", signed=True)


@asynccontextmanager
async def job_lock(store: Store, name: str) -> AsyncIterator[bool]:
    """Yields True when this process runs the job's round now, False when another process is running it."""
    if store.dialect != "postgresql":
        yield True
        return
    key = job_key(name)
    async with store.engine.connect() as conn:
        mine = bool((await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})).scalar())
        await conn.commit()
        try:
            yield mine
        finally:
            if mine:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                await conn.commit()
