"""The Store: every query the gateway runs, behind async methods that return plain rows.

The pipeline works inside `Store.transaction()` (one unit of work per inbound message); the outbox
worker and the admin API use the single-statement methods. Nothing outside this package sees
SQLAlchemy: integrity clashes surface as `Conflict`, so callers can re-read and retry.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.pool import SingletonThreadPool, StaticPool

from gateway.storage import migrate
from gateway.storage.engine import create_engine, sqlite_autocommit_read, sqlite_directory, sqlite_writes
from gateway.storage.errors import Conflict, StoreUnavailable
from gateway.storage.messages import MessageReads, Unit
from gateway.storage.outbox import OutboxQueries
from gateway.storage.pg_unit import PgUnits
from gateway.storage.rows import MessageRow, utcnow
from gateway.storage.schema.core import (
    AuditRecord,
    MessageRecord,
    OutboxRecord,
)
from gateway.storage.settle_batch import SettleBatches
from gateway.storage.sqlite_reads import SqliteReads
from gateway.storage.unit import GroupCommit, SaDb

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Transaction:
    """One unit of work for async code: everything written through it commits together or not at all."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    @property
    def session(self) -> AsyncSession:
        """The SQLAlchemy session of this unit of work, for other query modules of this package only."""
        return self._session

    async def _flush(self) -> None:
        try:
            await self._session.flush()
        except IntegrityError as exc:
            raise Conflict(str(exc.orig)) from exc

    async def run(self, work: Callable[[Unit], T]) -> T:
        """Run sync `Unit` calls inside this transaction (SQLAlchemy's greenlet bridge: no blocking)."""
        try:
            return await self._session.run_sync(lambda session: work(Unit(SaDb(session.connection()))))
        except IntegrityError as exc:
            raise Conflict(str(exc.orig)) from exc

    async def find_message(self, channel: str, account: str, channel_msg_id: str) -> MessageRow | None:
        """The stored message with this platform id, if any (the dedupe lookup)."""
        return await self.run(lambda unit: unit.find_message(channel, account, channel_msg_id))

    async def update_conversation(self, conversation_id: int, **values: Any) -> None:
        """Change some fields of a conversation (see Unit.update_conversation)."""
        await self.run(lambda unit: unit.update_conversation(conversation_id, **values))

    async def add_message(self, **values: Any) -> MessageRow:
        """Store one message (see Unit.add_message); raises Conflict when its channel message id is stored."""
        return await self.run(lambda unit: unit.add_message(**values))

    async def set_message_decision(
        self,
        message_id: int,
        *,
        decision: str | None,
        reason: str | None,
        entry_id: str | None,
        confidence: float | None,
        kb_version: str | None,
    ) -> None:
        """Record how an inbound message was classified."""
        row = await self._session.get(MessageRecord, message_id)
        if row is None:
            raise LookupError(f"no message {message_id}")
        row.decision, row.reason, row.entry_id = decision, reason, entry_id
        row.confidence, row.kb_version = confidence, kb_version
        await self._flush()

    async def set_attachment(self, message_id: int, attachment: Mapping[str, Any]) -> None:
        """Record a message's attachment anew (a platform image once fetched gets its stored key)."""
        row = await self._session.get(MessageRecord, message_id)
        if row is None:
            raise LookupError(f"no message {message_id}")
        row.attachment = dict(attachment)
        await self._flush()

    async def enqueue(
        self,
        *,
        channel: str,
        account: str,
        conversation_key: str,
        text: str,
        sender: str,
        target: Mapping[str, Any],
        now: datetime,
        message_id: int | None = None,
        due: datetime | None = None,
        status: str = "pending",
        next_attempt_at: datetime | None = None,
        attachment: Mapping[str, Any] | None = None,
    ) -> int:
        """Add an outbox row (or return the existing one for the same stored message), sent from `due` on."""
        if message_id is not None:
            existing = await self._session.scalar(
                select(OutboxRecord.id).where(OutboxRecord.message_id == message_id)
            )
            if existing is not None:
                return existing
        row = OutboxRecord(
            channel=channel,
            account=account,
            conversation_key=conversation_key,
            text=text,
            sender=sender,
            target=dict(target),
            status=status,
            attempts=0,
            next_attempt_at=due or next_attempt_at or now,
            created_at=now,
            message_id=message_id,
            attachment=dict(attachment) if attachment else None,
        )
        self._session.add(row)
        await self._flush()
        return row.id

    async def audit(self, what: str, who: str, details: Mapping[str, Any] | None = None) -> None:
        """Append to the audit log."""
        self._session.add(AuditRecord(what=what, who=who, details=dict(details or {}), created_at=utcnow()))
        await self._flush()


class Store(MessageReads, OutboxQueries):
    """The gateway's database: one engine, short transactions, plain rows out."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        # SQLite has one writer at a time. Left to SQLite, concurrent writers of this process poll the file
        # lock with growing sleeps (busy_timeout), which wrecks latency under load; instead they queue here,
        # in order, and BEGIN IMMEDIATE finds the lock free (other processes still go through busy_timeout).
        # PostgreSQL needs nothing of the kind: its writers run concurrently.
        self._serialise_writes = engine.dialect.name == "sqlite"
        self._write_lock: asyncio.Lock | None = None
        self._write_lock_loop: asyncio.AbstractEventLoop | None = None
        self._writer: asyncio.Task[Any] | None = None
        self._group_commit = GroupCommit(engine, self.write_lock) if self._serialise_writes else None
        # PostgreSQL: units of work on the pool's asyncpg connections themselves (gateway/storage/pg_unit.py).
        self._pg = PgUnits(engine) if engine.dialect.name == "postgresql" else None
        self._settles = SettleBatches(self.run_one) if self._pg is not None else None
        # SQLite (a file): read-only units on connections of their own (gateway/storage/sqlite_reads.py).
        self.sqlite_reads = SqliteReads(engine) if self._serialise_writes and _pooled(engine) else None

    @asynccontextmanager
    async def write_lock(self) -> AsyncIterator[None]:
        """Held around every write transaction of this process on SQLite (re-entrant per task)."""
        task = asyncio.current_task()
        if not self._serialise_writes or (task is not None and self._writer is task):
            yield
            return
        loop = asyncio.get_running_loop()
        if self._write_lock is None or self._write_lock_loop is not loop:
            self._write_lock, self._write_lock_loop = asyncio.Lock(), loop
        lock = self._write_lock
        async with lock:
            self._writer = task
            try:
                with sqlite_writes():
                    yield
            finally:
                self._writer = None

    @classmethod
    def from_url(cls, url: str, *, echo: bool = False) -> Store:
        """A store on a new engine for `url` (SQLite file directories are created)."""
        return cls(create_engine(url, echo=echo))

    @property
    def dialect(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self.engine.dialect.name

    async def create_all(self) -> None:
        """Bring the schema to the newest migration (gateway/storage/migrate.py; once across processes)."""
        directory = sqlite_directory(str(self.engine.url))
        if directory is not None:
            # The default `data/kefu.db` works on a fresh checkout; mkdir is file I/O, so off the loop.
            await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        await migrate.upgrade(self.engine)

    async def dispose(self) -> None:
        """Close every pooled connection (the store reconnects on next use)."""
        if self._group_commit is not None:
            await self._group_commit.close()
        if self.sqlite_reads is not None:
            await self.sqlite_reads.close()
        await self.engine.dispose()

    async def ping(self) -> bool:
        """True when a trivial query succeeds."""
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
        except (SQLAlchemyError, OSError) as exc:
            logger.warning("database ping failed: %s", type(exc).__name__)
            return False
        return True

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """A unit of work: commits on success, rolls everything back on any exception."""
        async with self.write_lock(), self._sessions() as session:
            try:
                async with session.begin():
                    yield Transaction(session)
            except IntegrityError as exc:  # from a statement, or from the commit itself
                raise Conflict(str(exc.orig)) from exc

    async def run(self, work: Callable[[Unit], T], *, optimistic: bool = False) -> T:
        """Run a sync unit of work in its own transaction: committed when it returns, nothing kept if it raises.

        SQLite: in one trip to the driver's thread, grouped with the other units waiting (one commit for
        all). PostgreSQL: on an asyncpg connection of the pool, concurrently with other units; `optimistic`
        (a unit that reads, then stores one turn: `Unit.optimistic`): first without BEGIN and COMMIT, two
        round trips fewer, and in a transaction only when it must (it wrote more, or its conversation
        changed meanwhile: nothing was written then).
        """
        if self._pg is not None:
            return await self._pg.run(lambda db: work(Unit(db)), optimistic=optimistic)
        return await self._grouped(work)

    async def _grouped(self, work: Callable[[Unit], T]) -> T:
        assert self._group_commit is not None, "SQLite's units ride the group commit"
        if self._writer is not None and self._writer is asyncio.current_task():
            # The group commit's writer would wait for this task's write lock forever.
            raise RuntimeError("Store.run inside a write transaction of the same task: use Transaction.run")
        return await self._group_commit.run(lambda db: work(Unit(db)))

    async def run_one(self, work: Callable[[Unit], T]) -> T:
        """A unit of exactly ONE write statement: on PostgreSQL without BEGIN/COMMIT (two round trips fewer;
        one statement is atomic by itself), on SQLite in the group commit like any unit."""
        if self._pg is not None:
            return await self._pg.run(lambda db: work(Unit(db)), transaction=False)
        return await self._grouped(work)

    async def read(self, work: Callable[[Unit], T]) -> T:
        """Run a sync, read-only unit (no write lock; outside any transaction: on PostgreSQL each statement
        sees its own snapshot, as under READ COMMITTED inside one)."""
        if self._pg is not None:
            return await self._pg.run(lambda db: work(Unit(db)), transaction=False)
        if self.sqlite_reads is not None:
            return await self.sqlite_reads.run(lambda db: work(Unit(db)))
        with sqlite_autocommit_read():
            async with self.engine.connect() as conn:
                return await conn.run_sync(lambda sync_conn: work(Unit(SaDb(sync_conn))))

    async def audit(self, what: str, who: str, details: Mapping[str, Any] | None = None) -> None:
        """Append to the audit log in its own transaction."""
        async with self.transaction() as tx:
            await tx.audit(what, who, details)

    async def audit_entries(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest audit log entries, newest first."""
        async with self._sessions() as session:
            rows = await session.scalars(select(AuditRecord).order_by(AuditRecord.id.desc()).limit(limit))
            return [
                {"what": r.what, "who": r.who, "details": r.details, "created_at": r.created_at.isoformat()}
                for r in rows
            ]


def _pooled(engine: AsyncEngine) -> bool:
    """False for an in-memory SQLite, whose one connection every checkout shares."""
    return not isinstance(engine.sync_engine.pool, StaticPool | SingletonThreadPool)


def is_database_error(exc: BaseException) -> bool:
    """True for errors that mean the database failed (not a bug in the caller)."""
    return isinstance(exc, DBAPIError | StoreUnavailable | OSError)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """The error and what it wraps (SQLAlchemy's `orig`, else `__cause__`), each once."""
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = getattr(error, "orig", None) or error.__cause__


def is_unavailable(exc: BaseException) -> bool:
    """True when the database could not take the work now — down, restarting, locked, out of connections,
    timed out — so the same work can succeed later; False when it refused the work for what it is (a
    constraint, a trigger, bad data) or the error is not the database's."""
    return any(_says_not_now(error) for error in _chain(exc))


def _says_not_now(error: BaseException) -> bool:
    if isinstance(error, OSError | TimeoutError | PoolTimeout):
        return True
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    # SQLite says "not now" only in words (its own errors, or the unit's wrapper of them and of aiosqlite's
    # closed connection); PostgreSQL's wrapped errors are judged by their SQLSTATE below.
    from_postgres = type(error.__cause__).__module__.startswith("asyncpg")
    sqlite = type(error).__module__ == "sqlite3" or (
        isinstance(error, StoreUnavailable) and not from_postgres
    )
    if sqlite and any(m in str(error).lower() for m in _SQLITE_OUTAGES):
        return True
    # asyncpg: connection exceptions (08…), operator intervention (57…: shutting down), resources (53…),
    # the database missing (3D000: being restored or renamed).
    state = getattr(error, "sqlstate", None)
    if isinstance(state, str) and (state[:2] in ("08", "57", "53") or state == "3D000"):
        return True
    if type(error).__name__ == "ConnectionDoesNotExistError":
        return True
    # asyncpg's InterfaceError for a connection the server closed under us
    return type(error).__module__.startswith("asyncpg") and "connection is closed" in str(error)


def is_refused(exc: BaseException) -> bool:
    """True when the database refused the work for what it is, so the same work fails again: a data error
    or a constraint (SQLSTATE class 22 or 23 on PostgreSQL; sqlite3's DataError or IntegrityError)."""
    return any(_says_never(error) for error in _chain(exc))


def _says_never(error: BaseException) -> bool:
    if isinstance(error, sqlite3.DataError | sqlite3.IntegrityError):
        return True
    state = getattr(error, "sqlstate", None)
    return isinstance(state, str) and state[:2] in ("22", "23")


# SQLite errors that say "not now" (another writer, a missing or closed file), not "never".
_SQLITE_OUTAGES = ("database is locked", "unable to open", "disk i/o error", "no active connection", "closed")
