"""SQLite keeps its reader connections: concurrent reads after warm-up open no new connection."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import event, text

from gateway.storage import Store

READERS = 16  # more than SQLAlchemy's default pool (5) kept, within its old overflow (10): it churned


async def _concurrent_reads(store: Store) -> None:
    barrier = asyncio.Barrier(READERS)

    async def read() -> None:
        async with store.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            await barrier.wait()  # every reader holds its connection at the same time

    await asyncio.gather(*(read() for _ in range(READERS)))


async def test_concurrent_sqlite_reads_reuse_their_connections(tmp_path: Any) -> None:
    store = Store.from_url(f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}")
    opened: list[int] = []
    event.listen(store.engine.sync_engine, "connect", lambda *_: opened.append(1))
    try:
        await _concurrent_reads(store)  # warm-up
        assert len(opened) == READERS
        for _ in range(3):
            await _concurrent_reads(store)
        assert len(opened) == READERS  # no churn: every later read found a kept connection
    finally:
        await store.dispose()
