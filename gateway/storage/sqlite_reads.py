"""SQLite's read-only units (`Store.read`) on connections of their own, each unit one trip to its thread.

Why: through SQLAlchemy a one-row read cost ~300 µs of CPU (a pool checkout, an AsyncConnection, the
statement's execution context and result, the connection's reset on return: several trips to aiosqlite's
thread and back through the event loop), and ~800 µs each when 30 ran at once, which the handoff path does
under load (routing, positions, the agents' loads, shifts: several reads per message). Here the whole unit
runs on a dedicated connection's thread, its statements compiled once (`SqliteDb`, as the group commit's
units): ~70 µs, ~40 µs when many wait. Autocommit, as before: each statement sees what was committed when
it started; WAL lets these readers run beside the group commit's writer.

A few connections, the unit going to the one with the fewest units waiting, so one slow read (a long page)
does not hold up every other. An in-memory database (one shared connection) keeps the engine's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from gateway.storage.errors import StoreUnavailable
from gateway.storage.unit import Db, SqliteDb

T = TypeVar("T")

READERS = 2


def _read(
    connection: sqlite3.Connection,
    dialect: Dialect,
    work: Callable[[Db], T],
    trace: Callable[[str], None] | None,
) -> T:
    """On the reader's thread: the whole unit (no BEGIN: the connection is in autocommit)."""
    return work(SqliteDb(connection, dialect, trace=trace))


@dataclass(eq=False)  # one reader is itself only (`reader in self._readers` asks for this very one)
class _Reader:
    waiting: int = 0
    connection: AsyncConnection | None = None
    driver: Any = None  # the aiosqlite.Connection behind `connection`
    opening: asyncio.Lock = field(default_factory=asyncio.Lock)


class SqliteReads:
    """Runs read-only units of work on READERS dedicated connections of the engine's pool."""

    def __init__(self, engine: AsyncEngine, readers: int = READERS) -> None:
        self._engine = engine
        self._size = readers
        self._readers: list[_Reader] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        # Every statement's SQL, when set (tests count statements with it; it is called on the reader's thread).
        self.trace: Callable[[str], None] | None = None

    async def run(self, work: Callable[[Db], T]) -> T:
        """`work`'s result (or what it raised); StoreUnavailable when the database cannot be read now."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (tests): nothing of the old one can be awaited here
            for old in self._readers:
                if old.driver is not None:
                    old.driver.stop()  # closes the sqlite3 connection and ends aiosqlite's thread, no await
            self._loop, self._readers = loop, [_Reader() for _ in range(self._size)]
        reader = min(self._readers, key=lambda r: r.waiting)
        reader.waiting += 1
        try:
            driver = reader.driver if reader.driver is not None else await self._open(reader)
            try:
                # aiosqlite's `_execute` queues a function for its thread: the unit's one trip.
                return await driver._execute(_read, driver._conn, self._engine.dialect, work, self.trace)
            except ValueError as exc:
                if driver._running and driver._connection is not None:
                    raise  # the unit's own error
                # aiosqlite's connection is closed (stopped, or its thread died): the next unit opens another.
                if reader.driver is driver:
                    connection, reader.connection, reader.driver = reader.connection, None, None
                    if connection is not None:
                        with contextlib.suppress(Exception):  # out of the pool for good
                            await connection.invalidate()
                raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        finally:
            reader.waiting -= 1

    async def _open(self, reader: _Reader) -> Any:
        async with reader.opening:
            if reader.driver is None:
                connection = await self._engine.connect()
                try:
                    raw = await connection.get_raw_connection()
                except BaseException:
                    await connection.close()
                    raise
                if reader not in self._readers:  # closed (or a new loop) while connecting: give it back
                    await connection.close()
                    raise StoreUnavailable("the store's readers were closed")
                reader.connection, reader.driver = connection, raw.driver_connection
            return reader.driver

    async def close(self) -> None:
        """Give the connections back to the pool (the next unit opens new ones)."""
        readers, self._readers, self._loop = self._readers, [], None
        for reader in readers:
            connection, reader.connection, reader.driver = reader.connection, None, None
            if connection is not None:
                with contextlib.suppress(Exception):  # closing a broken connection: nothing to save
                    await connection.close()
