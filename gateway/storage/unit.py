"""Units of work as plain functions: one sync function over one connection, one trip to the database.

Why: on SQLite every awaited statement is a round trip to the driver's thread and back through the busy
event loop. A message's eight statements held SQLite's one write lock for eight loop turns, and under load
the messages queued behind each other's turns (about 100 messages/s on two cores). A unit of work written
as a sync function over `Db` runs whole on the driver's thread instead, and `GroupCommit` runs every unit
waiting at that moment in ONE transaction (group commit): one trip and one commit for many messages, each
unit inside its own savepoint so a failing one takes nothing else with it.

The statements are SQLAlchemy Core, compiled once per statement and dialect with SQLAlchemy's own type
processors (`compile_statement`) and run on the sqlite3 connection itself (`SqliteDb`); on PostgreSQL the same
functions run on the pool's asyncpg connections (`PgDb`, gateway/storage/pg_unit.py), one transaction per
unit, concurrently. `SaDb` runs them over a SQLAlchemy `Connection` (sessions' units, an in-memory SQLite's
reads); a file SQLite's reads run on connections of their own (gateway/storage/sqlite_reads.py).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy import types as sqltypes
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql import Executable

from gateway.storage.engine import may_hold_transaction
from gateway.storage.errors import Conflict, StoreUnavailable

logger = logging.getLogger(__name__)
# `database.echo` turns this logger to INFO (gateway/storage/engine.py): the units' SQL is logged there too.
ECHO = logging.getLogger("sqlalchemy.engine.Engine")

T = TypeVar("T")
# Enough to drain a burst in a few trips; a bigger batch only makes its first unit wait longer.
MAX_BATCH = 128
# A trip of fewer units than this may wait LINGER_S for more first: each trip costs its own BEGIN, COMMIT,
# WAL frames and thread hand-offs, about as much as the units in it at 500 msg/s. Waiting 1.5 ms there
# took 8-17 % off kefu's CPU per message (1.86 → 1.55-1.73 ms in A/Bs of alternating paced rounds; waiting
# always, 19 %) for ~2 ms of median latency. It waits only while waiting pays (LINGER_CAUGHT): one
# caller's units in sequence, or a low rate, wait only on the rare probes.
LINGER_BELOW = 4
LINGER_S = 0.0015
# Waits that caught nothing turn it off; then every this many writers waits on its first trip anyway, to
# see if the load is back.
LINGER_PROBE_EVERY = 16
# Waiting goes on while at least this moving share of recent waits caught company (at paced 500 msg/s it
# stays at 1.0: five units a trip).
LINGER_CAUGHT = 0.25


class Db(Protocol):
    """What a unit of work may do: run Core statements inside the unit's transaction."""

    dialect: str

    def rows(self, statement: Executable, params: Mapping[str, Any] | None = None) -> list[Mapping[str, Any]]:
        """Execute and return every row (as column key → value; none for DML without RETURNING)."""
        ...

    def run(self, statement: Executable, params: Mapping[str, Any] | None = None) -> int:
        """Execute a DML statement; the number of rows it touched."""
        ...

    def insert(self, statement: Executable, params: Mapping[str, Any]) -> int:
        """Execute an INSERT of one row; the new row's integer primary key."""
        ...


class SaDb:
    """`Db` over a SQLAlchemy sync Connection (PostgreSQL via run_sync, and async sessions' units)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.dialect = connection.dialect.name

    def rows(self, statement: Executable, params: Mapping[str, Any] | None = None) -> list[Mapping[str, Any]]:
        try:
            result = self._connection.execute(statement, params)
        except IntegrityError as exc:
            raise Conflict(str(exc.orig)) from exc
        return list(result.mappings()) if result.returns_rows else []

    def run(self, statement: Executable, params: Mapping[str, Any] | None = None) -> int:
        try:
            return self._connection.execute(statement, params).rowcount
        except IntegrityError as exc:
            raise Conflict(str(exc.orig)) from exc

    def insert(self, statement: Executable, params: Mapping[str, Any]) -> int:
        try:
            # SQLAlchemy fetches the key the dialect's way (RETURNING on PostgreSQL).
            return int(self._connection.execute(statement, params).inserted_primary_key[0])
        except IntegrityError as exc:
            raise Conflict(str(exc.orig)) from exc


# --- SQLite: compiled statements on the driver's own connection -------------------------------------


Processor = Callable[[Any], Any]
# Where a bound value comes from, besides the caller's parameters.
_CONSTANT, _CALL = 1, 2


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    # The positional values, planned once per (statement, parameter names): the caller's parameters in
    # order when every value is theirs (the common case), else (kind, name or value, processor) steps.
    params: tuple[tuple[str, Processor | None], ...] | None
    steps: tuple[tuple[int, Any, Processor | None], ...]
    columns: tuple[tuple[str, Processor | None], ...]  # result key, processor
    returning: bool  # the SQL ends in RETURNING (PostgreSQL adds the key to a plain INSERT by itself)
    # SQLAlchemy's compiled form when the SQL is finished per execution (an IN list, a LIMIT rendered
    # inline): it then renders the SQL and values each time.
    late: Any = None


# (id(statement), dialect, parameter names) → (statement, compiled); the statement is kept so its id is never
# reused.
_COMPILED: dict[tuple[int, str, frozenset[str]], tuple[Executable, _Compiled]] = {}
# Statements are meant to be module constants; one built per call would grow the cache for ever, so past
# this size it starts over (such a caller pays a compile per call, nothing worse).
COMPILED_MAX = 1024
_PARAM = 0


def _column_defaults(compiled: Any) -> dict[str, tuple[Any, bool]]:
    """Python-side `default=` / `onupdate=` of the columns the caller left out, as SQLAlchemy fills them in."""
    out: dict[str, tuple[Any, bool]] = {}
    for attribute, kind in (("insert_prefetch", "default"), ("update_prefetch", "onupdate")):
        for column in getattr(compiled, attribute, ()) or ():
            default = getattr(column, kind)
            if default is None or not (default.is_scalar or default.is_callable):
                raise NotImplementedError(f"column default of {column} cannot run outside SQLAlchemy")
            out[column.key] = (default.arg, bool(default.is_callable))
    return out


def compile_statement(statement: Executable, dialect: Dialect, keys: frozenset[str]) -> _Compiled:
    """The statement's SQL for `dialect`, compiled once per parameter names, with its value plan."""
    cache_key = (id(statement), dialect.name, keys)
    hit = _COMPILED.get(cache_key)
    if hit is not None and hit[0] is statement:
        return hit[1]
    # INSERT/UPDATE compile for the columns given (as SQLAlchemy does per execution); SELECT ignores it.
    compiled = statement.compile(dialect=dialect, column_keys=sorted(keys))  # type: ignore[attr-defined]
    defaults = _column_defaults(compiled)
    steps: list[tuple[int, Any, Processor | None]] = []
    for name in compiled.positiontup or ():
        bind = compiled.binds[name]
        processor = _bind_processor(bind.type, dialect)
        if name in keys:
            steps.append((_PARAM, name, processor))
        elif name in defaults:
            value, call = defaults[name]
            steps.append(
                (_CALL, value, processor) if call else (_CONSTANT, _processed(value, processor), None)
            )
        elif bind.required:  # SQLAlchemy refuses to bind NULL for a value nobody gave
            raise ValueError(f"a value is required for bind parameter {name!r}")
        else:
            steps.append((_CONSTANT, _processed(bind.effective_value, processor), None))
    params = tuple((name, processor) for _, name, processor in steps)
    columns = [
        (column.key, _result_processor(column.type, dialect))
        for column in getattr(statement, "exported_columns", ())
    ]
    all_params = all(kind == _PARAM for kind, _, _ in steps)
    returning = bool(getattr(compiled, "returning", None))
    late = compiled if (compiled.post_compile_params or compiled.literal_execute_params) else None
    if late is not None and defaults:
        # SQLAlchemy renders such SQL per execution from the caller's values alone (sql_and_values).
        raise NotImplementedError(
            "Python-side column defaults in a statement with an IN list or inline LIMIT"
        )
    result = _Compiled(
        compiled.string, params if all_params else None, tuple(steps), tuple(columns), returning, late
    )
    if len(_COMPILED) >= COMPILED_MAX:
        _COMPILED.clear()
    _COMPILED[cache_key] = (statement, result)
    return result


def _bind_processor(type_: Any, dialect: Dialect) -> Processor | None:
    processor = type_.dialect_impl(dialect).bind_processor(dialect)
    if processor is not None and isinstance(type_, sqltypes.JSON):
        # Most JSON values of a message are None (no suggestions, no attachment): serialised once.
        null = processor(None)
        return lambda value: null if value is None else processor(value)
    return processor


def _processed(value: Any, processor: Processor | None) -> Any:
    return processor(value) if processor is not None else value


def _result_processor(type_: Any, dialect: Dialect) -> Processor | None:
    impl = type_.dialect_impl(dialect)
    coltype = None
    if dialect.name == "postgresql" and isinstance(impl, sqltypes.NumericCommon):
        # asyncpg's numeric types pick a processor by the result column's type oid; a column comes back
        # as declared: float8 for Float, numeric otherwise.
        coltype = _PG_FLOAT8 if isinstance(impl, sqltypes.Float) else _PG_NUMERIC
    return impl.result_processor(dialect, coltype)


_PG_FLOAT8, _PG_NUMERIC = 701, 1700


def sql_and_values(compiled: _Compiled, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
    """The SQL and positional values of one execution of `compiled`."""
    if compiled.late is None:
        return compiled.sql, bound_values(compiled, params)
    state = compiled.late.construct_expanded_state(dict(params))
    # The expanded state has the processors of the expanded values only; the others' are the compiled
    # statement's own (SQLAlchemy merges the two the same way when it executes).
    processors = {**compiled.late._bind_processors, **state.processors}
    values = []
    for name in state.positiontup or ():
        value, processor = state.parameters[name], processors.get(name)
        values.append(processor(value) if processor is not None else value)
    return state.statement, values


def mapped_rows(
    compiled: _Compiled, rows: Any, names: Callable[[], list[str]] | None = None
) -> list[Mapping[str, Any]]:
    """Result rows (sequences in column order) as column key → processed value.

    A textual statement (`text()`) declares no columns: its rows are keyed by the result's own column
    names (`names`, else asyncpg's record keys), values as the driver returned them."""
    columns = compiled.columns
    if not columns and rows:
        keys = names() if names is not None else list(rows[0].keys())
        return [dict(zip(keys, row, strict=True)) for row in rows]
    return [
        {
            key: (processor(value) if processor is not None else value)
            for (key, processor), value in zip(columns, row, strict=True)
        }
        for row in rows
    ]


def bound_values(compiled: _Compiled, params: Mapping[str, Any]) -> list[Any]:
    """The positional values for one execution of `compiled` (the caller's, defaults, processed)."""
    if compiled.params is not None:
        return [params[n] if p is None else p(params[n]) for n, p in compiled.params]
    values = []
    for kind, source, processor in compiled.steps:
        if kind == _CONSTANT:
            values.append(source)
            continue
        value = params[source] if kind == _PARAM else source(None)  # SQLAlchemy passes a context
        values.append(value if processor is None else processor(value))
    return values


class SqliteDb:
    """`Db` over the sqlite3 connection itself; only ever used on that connection's own thread."""

    dialect = "sqlite"

    def __init__(
        self,
        connection: sqlite3.Connection,
        sa_dialect: Dialect,
        *,
        trace: Callable[[str], None] | None = None,
    ) -> None:
        self._connection = connection
        self._sa_dialect = sa_dialect
        self._trace = trace  # called with each statement's SQL (tests count statements)

    def _execute(self, statement: Executable, params: Mapping[str, Any] | None) -> tuple[_Compiled, Any]:
        params = params or {}
        compiled = compile_statement(statement, self._sa_dialect, frozenset(params))
        sql, values = sql_and_values(compiled, params)
        if self._trace is not None:
            self._trace(sql)
        if ECHO.isEnabledFor(logging.INFO):
            ECHO.info(sql)  # `database.echo`: the statement only, values may be customers' texts
        try:
            return compiled, self._connection.execute(sql, values)
        except sqlite3.IntegrityError as exc:
            raise Conflict(str(exc)) from exc
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

    def rows(self, statement: Executable, params: Mapping[str, Any] | None = None) -> list[Mapping[str, Any]]:
        compiled, cursor = self._execute(statement, params)
        try:
            raw = cursor.fetchall()
        except sqlite3.Error as exc:  # RETURNING rows are produced while fetching
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return mapped_rows(compiled, raw, lambda: [d[0] for d in cursor.description or ()])

    def run(self, statement: Executable, params: Mapping[str, Any] | None = None) -> int:
        return self._execute(statement, params)[1].rowcount

    def insert(self, statement: Executable, params: Mapping[str, Any]) -> int:
        # lastrowid, not RETURNING: a result set costs SQLite more than the insert itself.
        return int(self._execute(statement, params)[1].lastrowid)


@dataclass(frozen=True, slots=True)
class _Failed:
    error: BaseException


def run_batch(
    connection: sqlite3.Connection, dialect: Dialect, works: list[Callable[[Db], Any]]
) -> list[Any]:
    """On the driver's thread: every work in one transaction, each in a savepoint; results or _Failed."""
    db = SqliteDb(connection, dialect)
    outcomes: list[Any] = []
    connection.execute("BEGIN IMMEDIATE")
    try:
        for work in works:
            connection.execute("SAVEPOINT unit")
            try:
                outcomes.append(work(db))
            except Exception as exc:
                # This unit's writes go; the others' stay.
                connection.execute("ROLLBACK TO unit")
                outcomes.append(_Failed(exc))
            connection.execute("RELEASE unit")
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    return outcomes


class GroupCommit:
    """SQLite's writer: units of work queue here and run on one dedicated connection, many per transaction.

    A unit submitted while a trip is under way waits for the next trip, which takes everything queued by
    then: under load the units per transaction grow, the trips and commits per message shrink.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        write_lock: Callable[[], AbstractAsyncContextManager[None]],
        max_batch: int = MAX_BATCH,
    ) -> None:
        self._engine = engine
        self._write_lock = write_lock
        self._max_batch = max_batch
        self._queue: list[tuple[Callable[[Db], Any], asyncio.Future[Any]]] = []
        self._drainer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connection: AsyncConnection | None = None
        self._driver: Any = None  # the aiosqlite.Connection behind _connection
        self.linger_s = LINGER_S
        self._caught = 0.0  # moving share of recent waits during which another unit arrived
        self._since_probe = 0
        self.lingered = 0  # waits so far (tests)

    async def run(self, work: Callable[[Db], T]) -> T:
        """Run `work` in the next group transaction; its result, or what it raised (nothing of it is kept)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (tests): nothing of the old one can be awaited here
            if self._driver is not None:
                self._driver.stop()  # closes the sqlite3 connection and ends aiosqlite's thread, no await
            self._loop, self._queue, self._drainer = loop, [], None
            self._connection = self._driver = None
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((work, future))
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain(), name="kefu-sqlite-group-commit")
            self._drainer.add_done_callback(self._drained)
        return await future

    def _drained(self, task: asyncio.Task[None]) -> None:
        # Also runs for a writer cancelled before it started (its body, and its `finally`, never ran).
        if self._drainer is task:
            self._drainer = None
        if task.cancelled() and self._drainer is None:  # (a newer writer owns the queue otherwise)
            for _, future in self._queue:
                future.cancel()
            self._queue.clear()

    async def _drain(self) -> None:
        try:
            fresh = True  # this writer's first trip: its units came while no trip was under way
            while self._queue:
                if len(self._queue) < LINGER_BELOW and self._lingers(probe=fresh):
                    queued = len(self._queue)
                    self.lingered += 1
                    await asyncio.sleep(self.linger_s)
                    self._caught = 0.8 * self._caught + 0.2 * (len(self._queue) > queued)
                fresh = False
                batch = self._queue[: self._max_batch]
                del self._queue[: len(batch)]
                try:
                    async with self._write_lock():
                        # A caller that gave up before its trip (cancelled: a worker stopping, a shutdown)
                        # has its unit left out: what it would have written, nobody would know of.
                        batch = [(work, future) for work, future in batch if not future.cancelled()]
                        outcomes = await self._trip([work for work, _ in batch]) if batch else []
                except asyncio.CancelledError:
                    # Shutting down. A trip already on the driver's thread still commits; its callers are
                    # cancelled with those still queued (see _drained).
                    for _, future in batch:
                        future.cancel()
                    raise
                except Exception as exc:  # the transaction itself failed (BEGIN, COMMIT, the connection)
                    await self.close()
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():  # the caller gave up; the unit is committed all the same
                        continue
                    if isinstance(outcome, _Failed):
                        future.set_exception(outcome.error)
                    else:
                        future.set_result(outcome)
        finally:
            if self._drainer is asyncio.current_task():
                self._drainer = None  # before the done-callback: a unit queued meanwhile starts a new writer

    def _lingers(self, *, probe: bool) -> bool:
        """Whether this trip waits for company: while recent waits caught some (a steady stream of units
        from concurrent messages), and otherwise as a probe on every LINGER_PROBE_EVERY-th writer's first
        trip (what follows a trip has had the trip's time to gather company already)."""
        if self.linger_s <= 0:
            return False
        if self._caught >= LINGER_CAUGHT:
            return True
        if probe:
            self._since_probe += 1
            if self._since_probe >= LINGER_PROBE_EVERY:
                self._since_probe = 0
                return True
        return False

    async def _trip(self, works: list[Callable[[Db], Any]]) -> list[Any]:
        if self._driver is None:
            connection = await self._engine.connect()
            raw = await connection.get_raw_connection()
            may_hold_transaction(raw)
            self._connection, self._driver = connection, raw.driver_connection
        driver = self._driver
        try:
            # aiosqlite's `_execute` queues a function for its thread: the one trip of this batch.
            return await driver._execute(run_batch, driver._conn, self._engine.dialect, works)
        except (sqlite3.Error, ValueError) as exc:  # ValueError: aiosqlite's connection is closed
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        """Give the dedicated connection back (the next unit opens a new one)."""
        connection, self._connection, self._driver = self._connection, None, None
        if connection is not None:
            try:
                await connection.close()
            except Exception as exc:  # closing a broken connection: nothing more to save
                logger.debug("group commit: closing the connection failed: %s", type(exc).__name__)
