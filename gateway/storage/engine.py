"""The async engine: SQLite (WAL, foreign keys, busy timeout, serialised writers) or PostgreSQL."""

from __future__ import annotations

import collections
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

SQLITE_BUSY_TIMEOUT_MS = 10_000
# `PRAGMA journal_mode=WAL` refused as a deadlock breaker (several processes opening a new file) is asked
# again up to this many times.
WAL_ATTEMPTS = 20
PG_CONNECT_TIMEOUT_S = 10.0
PG_STATEMENT_TIMEOUT_S = 30.0
PG_POOL_TIMEOUT_S = 30.0
# Connections kept per process, and how many more a burst may open (each closed again on its return). Under
# load a webhook holds its connection for most of its life (between round trips it waits its turn on the busy
# event loop), so 32 concurrent webhooks want ~30; keeping 10 closed and reopened the overflow ones (TCP,
# authentication, every statement prepared again). 32 kept ran out of PostgreSQL's max_connections (100 by
# default) with two deployments side by side, so 20 in all. All of them kept, none opened for a burst only:
# with 16 kept and 4 more, the bot-only bench still opened and closed connections all along (each with
# its SSL probe, authentication and type-codec queries; README, evening pass); a unit past the 20th waits.
PG_POOL_SIZE = 20
PG_MAX_OVERFLOW = 0
SQLITE_CACHE_KIB = 16_384  # page cache per connection (negative cache_size = KiB)
# Connections kept open for SQLite readers. SQLAlchemy's default (5 + 10 overflow) closed every overflow
# connection on return, so bursts of concurrent one-statement reads (the handoff's) opened a new aiosqlite
# thread, sqlite3.connect and six PRAGMAs each time: thousands per minute under load. Kept, they cost an
# idle thread each; only a burst beyond this many at once opens (and then closes) overflow connections.
SQLITE_POOL_SIZE = 24

# How a SQLite transaction begins in this context: "deferred" (the default, for reads: a WAL snapshot that
# neither waits on nor blocks the writer), "immediate" (set by `sqlite_writes()`, which `Store.write_lock`
# wraps around every write transaction: takes the write lock up front) or "none" (ONE read-only statement
# in autocommit mode: no BEGIN round trip at all).
_SQLITE_BEGIN: ContextVar[str] = ContextVar("kefu_sqlite_begin", default="deferred")


@contextmanager
def _begin_mode(mode: str) -> Iterator[None]:
    token = _SQLITE_BEGIN.set(mode)
    try:
        yield
    finally:
        _SQLITE_BEGIN.reset(token)


def sqlite_autocommit_read() -> AbstractContextManager[None]:
    """For ONE read-only statement: on SQLite it runs without BEGIN (no effect on PostgreSQL)."""
    return _begin_mode("none")


def sqlite_writes() -> AbstractContextManager[None]:
    """Transactions begun inside take SQLite's write lock at BEGIN (no effect on PostgreSQL)."""
    return _begin_mode("immediate")


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    """An AsyncEngine for the URL (connects lazily: nothing happens until the first query)."""
    if echo:
        # `database.echo`: SQL through the root logger, whose handler masks phone/ID numbers and secrets;
        # SQLAlchemy's own echo=True adds a stream handler of its own that would bypass that filter.
        logging.getLogger("sqlalchemy.engine.Engine").setLevel(logging.INFO)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # Bounded waits on every call: connecting, a statement (asyncpg's command_timeout, and the server's
        # own statement_timeout) and a free pooled connection. A frozen server is an error in seconds
        # (a 503, the platform retries), not a webhook hanging past the platform's deadline.
        # No pool_pre_ping: on asyncpg it costs three round trips (BEGIN, ";", ROLLBACK) per checkout, and a
        # FAQ message checks out twice: six of its ~16 round trips. `_drop_closed` below does its job for
        # free (see there).
        engine = create_async_engine(
            url,
            pool_size=PG_POOL_SIZE,
            max_overflow=PG_MAX_OVERFLOW,
            pool_timeout=PG_POOL_TIMEOUT_S,
            connect_args={
                "timeout": PG_CONNECT_TIMEOUT_S,
                "command_timeout": PG_STATEMENT_TIMEOUT_S,
                "server_settings": {"statement_timeout": str(int(PG_STATEMENT_TIMEOUT_S * 1000))},
            },
        )
        event.listen(engine.sync_engine, "checkout", _drop_closed)
        return engine
    pool: dict[str, Any] = {}
    if parsed.database and parsed.database != ":memory:" and parsed.query.get("mode") != "memory":
        pool = {"pool_size": SQLITE_POOL_SIZE, "max_overflow": SQLITE_POOL_SIZE}
    engine = create_async_engine(url, module=_one_hop_aiosqlite(), **pool)
    _configure_sqlite(engine)
    return engine


# --- aiosqlite, one thread hop per statement ------------------------------------------------------------
#
# aiosqlite runs every call on its own thread and each call is a round trip through a queue and the event
# loop. SQLAlchemy's adapter makes three or four of them per statement (open a cursor, execute, fetchall,
# close); under load each trip waits its turn on the busy loop, which made a message's ~10 statements
# cost ~35 trips. This cursor does the whole statement in ONE trip: the same sqlite3 calls, in the same
# order, on aiosqlite's thread (through its `_execute`, the queue every aiosqlite method uses).


def _run_statement(conn: Any, operation: str, parameters: Any) -> tuple[Any, int, Any, list[Any]]:
    cursor = conn.cursor()
    try:
        cursor.execute(operation, () if parameters is None else parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


def _run_many(conn: Any, operation: str, seq_of_parameters: Any) -> tuple[int, Any]:
    cursor = conn.cursor()
    try:
        cursor.executemany(operation, seq_of_parameters)
        return cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class _OneHopCursor(AsyncAdapt_aiosqlite_cursor):
    """A buffered cursor whose statement, rows and counts come back from aiosqlite's thread in one trip."""

    __slots__ = ("_description", "_rowcount", "_lastrowid")

    def __init__(self, adapt_connection: Any) -> None:  # no cursor opened up front (that was a trip)
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None
        self._soft_closed_memoized = {}
        self._rows = collections.deque()
        self._description = None
        self._rowcount = -1
        self._lastrowid = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    async def _async_soft_close(self) -> None:
        return None  # nothing open on the driver's side

    def close(self) -> None:
        self._rows.clear()

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        async with self._adapt_connection._execute_mutex:
            aio = self._connection
            description, rowcount, lastrowid, rows = await aio._execute(
                _run_statement, aio._conn, operation, parameters
            )
            self._description, self._rowcount, self._lastrowid = description, rowcount, lastrowid
            self._rows = collections.deque(rows)
            return None

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        async with self._adapt_connection._execute_mutex:
            aio = self._connection
            self._rowcount, self._lastrowid = await aio._execute(
                _run_many, aio._conn, operation, seq_of_parameters
            )
            self._description = None
            return None


class _OneHopConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = _OneHopCursor


class _OneHopDbapi(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> Any:
        adapted = super().connect(*arg, **kw)
        adapted.__class__ = _OneHopConnection  # same slots and state, only the cursor class differs
        return adapted


def _one_hop_aiosqlite() -> Any:
    import sqlite3

    import aiosqlite

    return _OneHopDbapi(aiosqlite, sqlite3)


def _drop_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled asyncpg connection the server closed (restart, pg_terminate_backend, idle timeout) is
    replaced before use, without a round trip: asyncpg's protocol saw the socket close (the event loop
    reads every idle connection), so `is_closed()` already knows. The pool then opens a fresh one."""
    driver = getattr(dbapi_connection, "_connection", None)
    if driver is not None and driver.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


def sqlite_directory(url: str) -> Path | None:
    """The directory a SQLite file URL lives in (created at startup when missing), else None."""
    file = sqlite_file(url)
    return None if file is None else file.parent


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL; None for other databases and in-memory SQLite."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return None
    return Path(database)


_NO_BEGIN = "kefu_no_begin"  # connection info: its current transaction emitted no BEGIN (autocommit read)


def may_hold_transaction(pooled: Any) -> None:
    """A pooled connection now runs its own BEGINs (the group commit's): its rollbacks are never skipped."""
    pooled.info[_NO_BEGIN] = False


def _wal(cursor: Any) -> None:
    """Put the database file in WAL mode (a property of the file, kept once set)."""
    for attempt in range(WAL_ATTEMPTS):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:
            # Processes opening a new file at once all switch it, and SQLite breaks the deadlock by
            # refusing one of them at once ("database is locked": the busy timeout does not apply there).
            # Asked again, it waits for the others' switch or makes its own.
            if "locked" not in str(exc) or attempt == WAL_ATTEMPTS - 1:
                raise


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take over transaction control from the driver so that "begin" below can say IMMEDIATE.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        _wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # A deferred transaction that reads and then writes fails at once with SQLITE_BUSY when another
        # connection wrote in between (busy_timeout does not help there), so writers BEGIN IMMEDIATE and
        # queue on busy_timeout instead (in this process they queue on Store.write_lock first). Readers
        # BEGIN DEFERRED: in WAL mode they read a snapshot while the writer writes.
        mode = _SQLITE_BEGIN.get()
        connection.connection.info[_NO_BEGIN] = mode == "none"
        if mode == "immediate":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif mode == "deferred":
            connection.exec_driver_sql("BEGIN")

    rollback = engine.sync_engine.dialect.do_rollback

    def _rollback(dbapi_connection: Any) -> None:
        # A one-statement autocommit read (mode "none") began no transaction, so ending it (and the pool's
        # reset when the connection goes back) has nothing to roll back: skip the trip to aiosqlite's
        # thread that the driver's rollback() costs, once per Store.read, several per handoff.
        try:
            info = dbapi_connection.info
        except (AttributeError, NotImplementedError):  # not a pooled connection (first connect)
            info = None
        if info is not None and info.get(_NO_BEGIN):
            return
        rollback(dbapi_connection)

    engine.sync_engine.dialect.do_rollback = _rollback  # type: ignore[method-assign]


def safe_url(url: str) -> str:
    """The URL with its password hidden, for logs and error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: show only its scheme
        return url.split("://", 1)[0] + "://…"
