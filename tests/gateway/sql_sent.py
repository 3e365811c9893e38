"""What a piece of code sent to the database: statements and transaction control, counted for shape tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event

from gateway.storage import Store

# Simple-protocol queries of transaction control and pool pings, as asyncpg logs them.
CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", ";")


@asynccontextmanager
async def sql_sent(store: Store) -> AsyncIterator[dict[str, list[str]]]:
    """{"statements": [...], "control": [...]} sent while inside (complete once the block has left).

    Seen: what SQLAlchemy executes (its `before_cursor_execute`; on SQLite all but the group commit's
    own trips), SQLite's read units (`Store.sqlite_reads.trace`) and, on PostgreSQL, every query on the pool's asyncpg connections (asyncpg's query logger):
    the units of work's statements, which bypass SQLAlchemy's execution (gateway/storage/pg_unit.py), and
    the transaction control (BEGIN, COMMIT, ROLLBACK, a ping's ";"). SQLAlchemy's own statements go through
    asyncpg prepared statements, which that logger does not see, so nothing is counted twice.
    """
    seen: dict[str, list[str]] = {"statements": [], "control": []}
    logged: list[Any] = []

    def statement(conn: Any, cursor: Any, sql: str, *args: Any) -> None:
        seen["statements"].append(sql)

    def query(record: Any) -> None:
        sql = record.query.strip()
        seen["control" if sql.startswith(CONTROL) else "statements"].append(sql)

    def checkout(dbapi_connection: Any, *args: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        if driver is not None and hasattr(driver, "add_query_logger") and driver not in logged:
            driver.add_query_logger(query)
            logged.append(driver)

    sync_engine = store.engine.sync_engine
    event.listen(sync_engine, "before_cursor_execute", statement)
    event.listen(sync_engine, "checkout", checkout)
    reads = store.sqlite_reads
    if reads is not None:
        reads.trace = seen["statements"].append  # SQLite's read units, which bypass SQLAlchemy's execution
    try:
        yield seen
        await asyncio.sleep(0)  # asyncpg calls its query loggers on the next loop turn
    finally:
        event.remove(sync_engine, "before_cursor_execute", statement)
        event.remove(sync_engine, "checkout", checkout)
        if reads is not None:
            reads.trace = None
        for driver in logged:
            driver.remove_query_logger(query)
