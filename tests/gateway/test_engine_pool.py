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


class _Rollbacks:
    """Counts the driver-level rollbacks (each one a trip to aiosqlite's thread)."""

    def __init__(self, monkeypatch: Any) -> None:
        from sqlalchemy.dialects.sqlite import aiosqlite

        self.count = 0
        original = aiosqlite.AsyncAdapt_aiosqlite_connection.rollback

        def counted(connection: Any) -> None:
            self.count += 1
            original(connection)

        monkeypatch.setattr(aiosqlite.AsyncAdapt_aiosqlite_connection, "rollback", counted)


async def test_an_autocommit_read_costs_no_rollback_but_a_failed_write_is_rolled_back(
    tmp_path: Any, monkeypatch: Any
) -> None:
    store = Store.from_url(f"sqlite+aiosqlite:///{tmp_path / 'reads.db'}")
    try:
        await store.create_all()
        rollbacks = _Rollbacks(monkeypatch)
        for _ in range(5):
            assert await store.read(lambda unit: unit.db.rows(text("SELECT 1 AS one"), {})) == [{"one": 1}]
        # The read began no transaction (no BEGIN in autocommit mode): nothing to roll back on its return.
        assert rollbacks.count == 0
        # A write transaction on the same pooled connections still ends in a real rollback when it fails.
        try:
            async with store.write_lock(), store.engine.begin() as conn:
                await conn.execute(
                    text("INSERT INTO audit_log (what, who, created_at) VALUES ('x', 'y', '2026-01-01')")
                )
                raise RuntimeError("fail inside the transaction")
        except RuntimeError:
            pass
        assert rollbacks.count >= 1
        rows = await store.read(lambda unit: unit.db.rows(text("SELECT count(*) AS n FROM audit_log"), {}))
        assert rows == [{"n": 0}]
    finally:
        await store.dispose()


async def test_processes_opening_a_new_sqlite_file_at_once_all_connect(tmp_path: Any) -> None:
    """Each engine switches the new file to WAL on connect; SQLite refuses one of two switching at once
    ("database is locked", no busy wait) and it is asked again. Before, 4-6 of 800 such connects failed
    (it took `test_three_upgraders_at_once_migrate_once` down once in CI)."""
    from gateway.storage.engine import create_engine

    failed: list[BaseException] = []
    for i in range(200):
        engines = [create_engine(f"sqlite+aiosqlite:///{tmp_path}/new-{i}.db") for _ in range(4)]

        async def connect(engine: Any) -> None:
            async with engine.connect() as conn:
                assert (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"

        outcomes = await asyncio.gather(*(connect(e) for e in engines), return_exceptions=True)
        failed += [o for o in outcomes if isinstance(o, BaseException)]
        for engine in engines:
            await engine.dispose()
    assert failed == []
