"""SQLite's read units (gateway/storage/sqlite_reads.py): on connections of their own, one trip each, and
failures that say what they are."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event, text

from gateway.storage import Store, StoreUnavailable
from gateway.storage.sqlite_reads import READERS


@pytest.fixture
async def store(tmp_path: Any) -> Any:
    store = Store.from_url(f"sqlite+aiosqlite:///{tmp_path / 'reads.db'}")
    await store.create_all()
    try:
        yield store
    finally:
        await store.dispose()


def one(value: int) -> Any:
    return lambda unit: unit.db.rows(text("SELECT :v AS v"), {"v": value})


async def test_reads_run_on_their_own_connections_not_through_the_pool(store: Store) -> None:
    checkouts: list[int] = []
    event.listen(store.engine.sync_engine, "checkout", lambda *_: checkouts.append(1))
    results = await asyncio.gather(*(store.read(one(i)) for i in range(40)))
    assert results == [[{"v": i}] for i in range(40)]
    opened = len(checkouts)
    assert opened <= READERS  # each reader's connection, once
    for i in range(20):
        assert await store.read(one(i)) == [{"v": i}]
    assert len(checkouts) == opened  # later reads check nothing out


async def test_a_read_sees_what_the_group_commit_committed(store: Store) -> None:
    await store.audit("kb.reload", "admin")
    count = text("SELECT count(*) AS n FROM audit_log")
    assert await store.read(lambda unit: unit.db.rows(count, {})) == [{"n": 1}]
    await store.audit("kb.reload", "admin")
    assert await store.read(lambda unit: unit.db.rows(count, {})) == [{"n": 2}]


async def test_a_units_own_error_is_raised_as_it_is(store: Store) -> None:
    def broken(unit: Any) -> None:
        unit.db.rows(text("SELECT 1 AS one"), {})
        raise ValueError("the unit's own bug")

    with pytest.raises(ValueError, match="own bug"):
        await store.read(broken)
    assert await store.read(one(7)) == [{"v": 7}]  # the reader is still fine


async def test_a_bad_statement_is_a_store_error_and_the_reader_goes_on(store: Store) -> None:
    with pytest.raises(StoreUnavailable, match="no such table"):
        await store.read(lambda unit: unit.db.rows(text("SELECT * FROM no_such_table"), {}))
    assert await store.read(one(3)) == [{"v": 3}]


async def test_a_reader_whose_connection_died_is_unavailable_once_then_reopened(store: Store) -> None:
    reads = store.sqlite_reads
    assert reads is not None
    await asyncio.gather(*(store.read(one(i)) for i in range(READERS * 4)))  # every reader opened
    for reader in reads._readers:
        await reader.driver.close()  # as if aiosqlite's connection had gone
    with pytest.raises(StoreUnavailable):
        await store.read(one(1))
    outcomes = await asyncio.gather(*(store.read(one(i)) for i in range(READERS * 2)), return_exceptions=True)
    assert [o for o in outcomes if not isinstance(o, StoreUnavailable)]  # reopened
    assert await store.read(one(5)) == [{"v": 5}]


async def test_an_in_memory_database_reads_through_the_engine() -> None:
    store = Store.from_url("sqlite+aiosqlite://")
    try:
        await store.create_all()
        assert store.sqlite_reads is None  # its one connection is every checkout's
        assert await store.read(one(2)) == [{"v": 2}]
    finally:
        await store.dispose()
