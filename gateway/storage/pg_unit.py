"""Units of work on PostgreSQL: the same sync functions as on SQLite, over the asyncpg connection itself.

Why: sent through SQLAlchemy's execution path (a Connection in its greenlet bridge), each statement cost
about 70 µs of Python beside asyncpg's own ~40 µs: the compiled-cache lookup, an execution context, the
DB-API cursor emulation, result wrapping. A FAQ message's five statements and its transaction cost ~1.9 ms
of CPU against SQLite's 0.45 ms. Here a statement is compiled once for the asyncpg dialect, with
SQLAlchemy's own bind and result processors (`compile_statement`, shared with SQLite's unit), and sent
with asyncpg's `fetch`/`execute`, whose statement cache prepares it once per connection. The connection
still comes from the engine's pool (its limits, its checkout listener, the JSON codecs SQLAlchemy installs
on connect); the transaction is asyncpg's. The sync unit runs in a greenlet (SQLAlchemy's
`greenlet_spawn`): each statement awaits on the event loop, as SQLAlchemy's own bridge does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn, TypeVar

import asyncpg
from sqlalchemy import Integer, String, bindparam, cast, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.sql import Executable
from sqlalchemy.util import await_, greenlet_spawn

from gateway.storage.errors import Conflict, NeedsTransaction, StoreUnavailable
from gateway.storage.turns import is_turn
from gateway.storage.unit import ECHO, Db, compile_statement, mapped_rows, sql_and_values

logger = logging.getLogger(__name__)

T = TypeVar("T")

# What asyncpg raises for the database's or the connection's failures (timeouts are TimeoutError, an OSError,
# which callers already take for "unavailable"); InternalClientError: a protocol error, a stale statement.
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)


def id_array(name: str) -> Any:
    """A list of integer keys bound as ONE text parameter `name` ("3,5,8", see `id_text`), made an integer[]
    by the server; compare with `column == any_(id_array(...))`. One SQL text whatever the number of keys (an
    expanding IN list is new SQL, prepared again, for every length), and no array parameter (asyncpg would
    introspect its type once per connection: three more round trips)."""
    return cast(func.string_to_array(bindparam(name, type_=String), ","), ARRAY(Integer))


def id_text(ids: Iterable[int]) -> str:
    """The value of an `id_array` parameter."""
    return ",".join(str(int(i)) for i in ids)


def _translated(exc: Exception) -> Exception:
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return Conflict(str(exc))
    if isinstance(exc, _DRIVER_ERRORS):
        # The asyncpg error stays the cause: is_unavailable() reads its SQLSTATE.
        return StoreUnavailable(f"{type(exc).__name__}: {exc}")
    return exc


class PgDb:
    """`Db` over an asyncpg connection; only called inside a greenlet of `PgUnits.run`."""

    dialect = "postgresql"

    def __init__(self, connection: asyncpg.Connection, sa_dialect: Dialect) -> None:
        self._connection = connection
        self._sa_dialect = sa_dialect

    def _send(self, method: Callable[..., Any], compiled: Any, params: Mapping[str, Any]) -> Any:
        try:
            sql, values = sql_and_values(compiled, params)
            if ECHO.isEnabledFor(logging.INFO):
                ECHO.info(sql)  # the statement only: values may be customers' texts
            return await_(method(sql, *values))
        except _DRIVER_ERRORS as exc:
            raise _translated(exc) from exc

    def _compiled(self, statement: Executable, params: Mapping[str, Any]) -> Any:
        return compile_statement(statement, self._sa_dialect, frozenset(params))

    def rows(self, statement: Executable, params: Mapping[str, Any] | None = None) -> list[Mapping[str, Any]]:
        params = params or {}
        compiled = self._compiled(statement, params)
        return mapped_rows(compiled, self._send(self._connection.fetch, compiled, params))

    def run(self, statement: Executable, params: Mapping[str, Any] | None = None) -> int:
        params = params or {}
        # asyncpg's status string: "UPDATE 3", "DELETE 0", "INSERT 0 1".
        status = self._send(self._connection.execute, self._compiled(statement, params), params)
        count = status.rpartition(" ")[2]
        return int(count) if count.isdigit() else -1

    def insert(self, statement: Executable, params: Mapping[str, Any]) -> int:
        compiled = self._compiled(statement, params)
        if not compiled.returning:  # the dialect adds RETURNING <key> to a plain INSERT
            raise ValueError("an INSERT whose key PostgreSQL does not return: use rows() with RETURNING")
        return int(self._send(self._connection.fetchval, compiled, params))


class OptimisticDb:
    """A `PgDb` for a unit run without a transaction (`Unit.optimistic`): plain reads, then one turn.

    The turn's statement is the unit's one write and checks the conversation's row version itself
    (gateway/storage/turns.py). Any other write is refused before it is sent (NeedsTransaction: the store
    runs the unit again in a transaction); a write after the turn is a mistake in the unit (RuntimeError):
    the turn is committed already.
    """

    dialect = "postgresql"
    optimistic = True  # what `Unit` reads: its conversation read takes the row version, its turn checks it

    def __init__(self, db: PgDb) -> None:
        self._db = db
        self._turned = False

    def _refuse(self, what: str) -> NoReturn:
        if self._turned:
            raise RuntimeError(f"{what} after the turn of a unit without a transaction")
        raise NeedsTransaction(what)

    def rows(self, statement: Executable, params: Mapping[str, Any] | None = None) -> list[Mapping[str, Any]]:
        if is_turn(statement):
            if self._turned or not params or "seen_version" not in params:
                self._refuse("a turn that does not check the conversation's version")
            self._turned = True
        # Anything but a plain SELECT (text, DML, a SELECT … FOR UPDATE, whose lock would end with the
        # statement here) needs the transaction.
        elif not getattr(statement, "is_select", False) or getattr(statement, "_for_update_arg", None):
            self._refuse("a write or a locking read")
        return self._db.rows(statement, params)

    def run(self, statement: Executable, params: Mapping[str, Any] | None = None) -> int:
        self._refuse("a write")

    def insert(self, statement: Executable, params: Mapping[str, Any]) -> int:
        self._refuse("an insert")


class PgUnits:
    """Runs units of work on PostgreSQL: each in its own transaction (or none, for reads and one-statement
    writes), on a connection of the engine's pool, concurrently with other units."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sync_engine = engine.sync_engine
        self._dialect = engine.dialect

    async def run(self, work: Callable[[Db], T], *, transaction: bool = True, optimistic: bool = False) -> T:
        """`work` committed when it returns, nothing of it kept when it raises. transaction=False: its
        statements commit one by one (a read, or a unit of exactly one write: atomic by itself).
        optimistic: without a transaction over an `OptimisticDb` (reads, then one turn) first, and when that
        raises NeedsTransaction (nothing was written), again in a transaction."""
        if optimistic:
            try:
                return await greenlet_spawn(self._run, work, False, True)
            except NeedsTransaction:
                pass
        return await greenlet_spawn(self._run, work, transaction)

    def _run(self, work: Callable[[Db], T], transaction: bool, optimistic: bool = False) -> T:
        dbapi_error = self._dialect.loaded_dbapi.Error
        try:
            # A pool checkout, connecting when the pool has none idle.
            pooled = self._sync_engine.raw_connection()
        except dbapi_error as exc:
            # Refused (the database missing, shutting down, full): wrapped as SQLAlchemy's Connection does.
            raise DBAPIError.instance(None, None, exc, dbapi_error, dialect=self._dialect) from exc
        try:
            connection: asyncpg.Connection = pooled.driver_connection  # type: ignore[assignment]
            plain = PgDb(connection, self._dialect)
            db: Db = OptimisticDb(plain) if optimistic else plain
            if not transaction:
                return work(db)
            begun = connection.transaction()
            # asyncpg counts the connection in a transaction from before BEGIN is sent, and a BEGIN that timed
            # out may still have begun one: a failed BEGIN drops the connection.
            _ended_or_dropped(pooled, begun.start())
            try:
                result = work(db)
            except Exception:
                self._roll_back(pooled, begun)
                raise
            # What became of a failed commit is unknown (a timeout, a lost connection): dropped too.
            _ended_or_dropped(pooled, begun.commit())
            return result
        except BaseException as exc:
            if not isinstance(exc, Exception) and pooled.is_valid:
                # Cancelled mid-statement: the connection may still be busy with it.
                pooled.invalidate()
            raise
        finally:
            pooled.close()  # back to the pool: its reset is a no-op, SQLAlchemy began no transaction

    @staticmethod
    def _roll_back(pooled: Any, begun: Any) -> None:
        try:
            await_(begun.rollback())
        except Exception as exc:  # a broken connection cannot roll back: it is dropped instead
            logger.debug("rollback failed (%s): dropping the connection", type(exc).__name__)
            pooled.invalidate()


def _ended_or_dropped(pooled: Any, step: Any) -> None:
    """Await a transaction's BEGIN or COMMIT; when it fails, the connection leaves the pool for good."""
    try:
        await_(step)
    except Exception as exc:
        pooled.invalidate()
        if isinstance(exc, _DRIVER_ERRORS):
            raise _translated(exc) from exc
        raise
