"""The Store: every query the gateway runs, behind async methods that return plain rows.

The pipeline works inside `Store.transaction()` (one unit of work per inbound message); the outbox
worker and the admin API use the single-statement methods. Nothing outside this package sees
SQLAlchemy: integrity clashes surface as `Conflict`, so callers can re-read and retry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import bindparam, case, func, literal_column, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.storage.engine import create_engine, sqlite_autocommit_read, sqlite_directory, sqlite_writes
from gateway.storage.errors import Conflict, StoreUnavailable
from gateway.storage.models import (
    AuditRecord,
    Base,
    Conversation,
    Customer,
    MessageRecord,
    OutboxRecord,
    UTCDateTime,
)
from gateway.storage.unit import Db, GroupCommit, SaDb
from handoff.state import ConversationState

logger = logging.getLogger(__name__)

OUTBOX_STATUSES = ("pending", "sending", "sent", "failed", "undeliverable")
T = TypeVar("T")


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ConversationRow:
    """A stored conversation."""

    id: int
    customer_id: int
    channel: str
    account: str
    conversation_key: str
    state: ConversationState
    priority: str
    handoff_reason: str | None
    group: str | None
    miss_streak: int
    opened_at: datetime
    last_activity_at: datetime
    queued_at: datetime | None
    closed_at: datetime | None
    closed_reason: str | None
    kb_version: str | None


@dataclass(frozen=True, slots=True)
class MessageRow:
    """A stored message, inbound (from the customer) or outbound (bot, agent or system)."""

    id: int
    conversation_id: int
    conversation_key: str
    channel: str
    account: str
    direction: str
    sender: str
    sender_name: str | None
    text: str
    kind: str
    channel_msg_id: str | None
    reply_to: int | None
    decision: str | None
    reason: str | None
    entry_id: str | None
    confidence: float | None
    kb_version: str | None
    suggestions: tuple[str, ...]
    target: Mapping[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One asynchronous send and where it stands."""

    id: int
    channel: str
    account: str
    conversation_key: str
    text: str
    sender: str
    target: Mapping[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    locked_until: datetime | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    message_id: int | None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict (datetimes as ISO 8601)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.isoformat() if isinstance(value, datetime) else value
        out["target"] = dict(self.target)
        return out


def _outbox(row: OutboxRecord) -> OutboxRow:
    return OutboxRow(
        id=row.id,
        channel=row.channel,
        account=row.account,
        conversation_key=row.conversation_key,
        text=row.text,
        sender=row.sender,
        target=dict(row.target or {}),
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        locked_until=row.locked_until,
        last_error=row.last_error,
        created_at=row.created_at,
        sent_at=row.sent_at,
        message_id=row.message_id,
    )


# The hot path (one inbound message) runs SQLAlchemy Core on the tables, not the ORM: no identity map, no
# flush bookkeeping, and the rows just written are built from the values sent, not read back.
_CUSTOMERS = Customer.__table__
_CONVERSATIONS = Conversation.__table__
_MESSAGES = MessageRecord.__table__


def _conversation_from(m: Mapping[str, Any]) -> ConversationRow:
    return ConversationRow(
        id=m["id"],
        customer_id=m["customer_id"],
        channel=m["channel"],
        account=m["account"],
        conversation_key=m["conversation_key"],
        state=ConversationState(m["state"]),
        priority=m["priority"],
        handoff_reason=m["handoff_reason"],
        group=m["group_name"],
        miss_streak=m["miss_streak"],
        opened_at=m["opened_at"],
        last_activity_at=m["last_activity_at"],
        queued_at=m["queued_at"],
        closed_at=m["closed_at"],
        closed_reason=m["closed_reason"],
        kb_version=m["kb_version"],
    )


def _message_from(m: Mapping[str, Any]) -> MessageRow:
    return MessageRow(
        id=m["id"],
        conversation_id=m["conversation_id"],
        conversation_key=m["conversation_key"],
        channel=m["channel"],
        account=m["account"],
        direction=m["direction"],
        sender=m["sender"],
        sender_name=m["sender_name"],
        text=m["text"],
        kind=m["kind"],
        channel_msg_id=m["channel_msg_id"],
        reply_to=m["reply_to"],
        decision=m["decision"],
        reason=m["reason"],
        entry_id=m["entry_id"],
        confidence=m["confidence"],
        kb_version=m["kb_version"],
        suggestions=tuple(m["suggestions"] or ()),
        target=dict(m["target"] or {}),
        created_at=m["created_at"],
    )


# Built once, executed with parameters: constructing a statement per call costs more than running it, and
# SqliteDb compiles each statement object once.
_FIND_MESSAGE = select(_MESSAGES).where(
    _MESSAGES.c.channel == bindparam("channel"),
    _MESSAGES.c.account == bindparam("account"),
    _MESSAGES.c.channel_msg_id == bindparam("channel_msg_id"),
)
_REPLIES_TO = (
    select(_MESSAGES).where(_MESSAGES.c.reply_to == bindparam("message_id")).order_by(_MESSAGES.c.id)
)
_LAST_SUGGESTIONS = (
    select(_MESSAGES.c.suggestions)
    .where(_MESSAGES.c.conversation_id == bindparam("conversation_id"), _MESSAGES.c.direction == "out")
    .order_by(_MESSAGES.c.id.desc())
    .limit(1)
)
_OPEN_CONVERSATION = (
    select(_CONVERSATIONS)
    .where(
        _CONVERSATIONS.c.conversation_key == bindparam("conversation_key"),
        # A literal, not a parameter: it must match the partial index's WHERE (uq_conversations_open_key),
        # or SQLite re-plans the statement on every execution to check the bound value against it.
        _CONVERSATIONS.c.state != literal_column("'closed'"),
    )
    .with_for_update()
)
_INSERT_MESSAGE = _MESSAGES.insert()
# The handoff's per-message reads (Store.message, last_inbound, has_message_text, recent_messages): each one
# row or a short page off the primary key or ix_messages_conversation (conversation_id, id), never a whole
# conversation, so a long human conversation costs no more per message than a short one.
_MESSAGE_BY_ID = select(_MESSAGES).where(_MESSAGES.c.id == bindparam("message_id"))
_LAST_INBOUND = (
    select(_MESSAGES)
    .where(_MESSAGES.c.conversation_id == bindparam("conversation_id"), _MESSAGES.c.direction == "in")
    .order_by(_MESSAGES.c.id.desc())
    .limit(1)
)
_HAS_TEXT = (
    select(_MESSAGES.c.id)
    .where(_MESSAGES.c.conversation_id == bindparam("conversation_id"), _MESSAGES.c.text == bindparam("text"))
    .limit(1)
)
_RECENT_MESSAGES = (
    select(_MESSAGES)
    .where(_MESSAGES.c.conversation_id == bindparam("conversation_id"))
    .order_by(_MESSAGES.c.id.desc())
    .limit(bindparam("limit"))
)
_RECENT_MESSAGES_BEFORE = _RECENT_MESSAGES.where(_MESSAGES.c.id < bindparam("before"))
_CONVERSATION_BY_ID = select(_CONVERSATIONS).where(_CONVERSATIONS.c.id == bindparam("conversation_id"))
_CONVERSATIONS_FOR_KEY = (
    select(_CONVERSATIONS)
    .where(_CONVERSATIONS.c.conversation_key == bindparam("conversation_key"))
    .order_by(_CONVERSATIONS.c.id)
)
_MESSAGES_OF = (
    select(_MESSAGES)
    .where(_MESSAGES.c.conversation_id == bindparam("conversation_id"))
    .order_by(_MESSAGES.c.id)
)
_MESSAGES_FOR_KEY = (
    select(_MESSAGES)
    .where(_MESSAGES.c.conversation_key == bindparam("conversation_key"), _MESSAGES.c.id > bindparam("after"))
    .order_by(_MESSAGES.c.id)
    .limit(bindparam("limit"))
)
_MESSAGES_FOR_KEY_ONE_WAY = _MESSAGES_FOR_KEY.where(_MESSAGES.c.direction == bindparam("direction"))
_INSERT_CONVERSATION = _CONVERSATIONS.insert()
_UPSERT_CUSTOMER: dict[str, Any] = {}
_UPDATE_CONVERSATION: dict[frozenset[str], Any] = {}


def _utc(value: datetime) -> datetime:
    """The same instant in UTC, as the database hands it back (naive values are refused, as by UTCDateTime)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime passed to the database; use datetime.now(UTC)")
    return value.astimezone(UTC)


def _upsert_customer(dialect: str) -> Any:
    """INSERT … ON CONFLICT (channel, account, user_id) DO UPDATE … RETURNING id, for the dialect."""
    statement = _UPSERT_CUSTOMER.get(dialect)
    if statement is None:
        insert = (sqlite_insert if dialect == "sqlite" else pg_insert)(_CUSTOMERS)
        excluded = insert.excluded
        statement = insert.on_conflict_do_update(
            index_elements=[_CUSTOMERS.c.channel, _CUSTOMERS.c.account, _CUSTOMERS.c.user_id],
            set_={
                "last_seen_at": excluded.last_seen_at,
                # A new non-empty display name replaces the stored one; none keeps it.
                "name": case((excluded.name.is_not(None), excluded.name), else_=_CUSTOMERS.c.name),
            },
        ).returning(_CUSTOMERS.c.id)
        _UPSERT_CUSTOMER[dialect] = statement
    return statement


_CONVERSATION_FIELDS = frozenset(
    {
        "state",
        "priority",
        "handoff_reason",
        "group",
        "miss_streak",
        "last_activity_at",
        "queued_at",
        "closed_at",
        "closed_reason",
        "kb_version",
    }
)


def _update_conversation(columns: frozenset[str]) -> Any:
    """UPDATE conversations SET <columns> WHERE id = :conversation_id, one statement per column set."""
    statement = _UPDATE_CONVERSATION.get(columns)
    if statement is None:
        statement = (
            update(_CONVERSATIONS)
            .where(_CONVERSATIONS.c.id == bindparam("conversation_id"))
            .values({name: bindparam(f"set_{name}") for name in sorted(columns)})
        )
        _UPDATE_CONVERSATION[columns] = statement
    return statement


class Unit:
    """The pipeline's statements inside one unit of work, as plain (sync) calls over a `Db`.

    Sync on purpose: the whole unit runs in one trip to the database (see gateway.storage.unit), and
    `Transaction` offers the same calls to async code through SQLAlchemy's run_sync.
    """

    def __init__(self, db: Db) -> None:
        self.db = db

    def find_message(self, channel: str, account: str, channel_msg_id: str) -> MessageRow | None:
        """The stored message with this platform id, if any (the dedupe lookup)."""
        rows = self.db.rows(
            _FIND_MESSAGE, {"channel": channel, "account": account, "channel_msg_id": channel_msg_id}
        )
        return _message_from(rows[0]) if rows else None

    def replies_to(self, message_id: int) -> list[MessageRow]:
        """The outbound messages that answered one inbound message, in order."""
        return [_message_from(r) for r in self.db.rows(_REPLIES_TO, {"message_id": message_id})]

    def last_suggestions(self, conversation_id: int) -> tuple[str, ...]:
        """The suggestions of the latest outbound message of a conversation (empty when it had none)."""
        rows = self.db.rows(_LAST_SUGGESTIONS, {"conversation_id": conversation_id})
        return tuple((rows[0]["suggestions"] if rows else None) or ())

    def upsert_customer(
        self, channel: str, account: str, user_id: str, name: str | None, now: datetime
    ) -> int:
        """The customer's id, creating the row on first contact and refreshing the display name.

        One statement on both databases: INSERT … ON CONFLICT (channel, account, user_id) DO UPDATE …
        RETURNING id (SQLite ≥ 3.35, PostgreSQL), so two first messages racing cannot clash either.
        """
        values = {
            "channel": channel,
            "account": account,
            "user_id": user_id,
            "name": name or None,
            "created_at": now,
            "last_seen_at": now,
        }
        return int(self.db.rows(_upsert_customer(self.db.dialect), values)[0]["id"])

    def open_conversation(self, conversation_key: str) -> ConversationRow | None:
        """The conversation for this key that is not closed, locked for this transaction."""
        rows = self.db.rows(_OPEN_CONVERSATION, {"conversation_key": conversation_key})
        return _conversation_from(rows[0]) if rows else None

    def create_conversation(
        self,
        *,
        customer_id: int,
        channel: str,
        account: str,
        conversation_key: str,
        now: datetime,
        kb_version: str | None,
    ) -> ConversationRow:
        """Open a new bot conversation."""
        now = _utc(now)
        values: dict[str, Any] = {
            "customer_id": customer_id,
            "channel": channel,
            "account": account,
            "conversation_key": conversation_key,
            "state": ConversationState.BOT.value,
            "priority": "normal",
            "handoff_reason": None,
            "group_name": None,
            "miss_streak": 0,
            "opened_at": now,
            "last_activity_at": now,
            "queued_at": None,
            "closed_at": None,
            "closed_reason": None,
            "kb_version": kb_version,
        }
        values["id"] = self.db.insert(_INSERT_CONVERSATION, values)
        return _conversation_from(values)

    def update_conversation(self, conversation_id: int, **values: Any) -> None:
        """Change some fields of a conversation (state, priority, miss_streak, timestamps...)."""
        unknown = set(values) - _CONVERSATION_FIELDS
        if unknown:
            raise ValueError(f"not conversation fields: {', '.join(sorted(unknown))}")
        if isinstance(values.get("state"), ConversationState):
            values["state"] = values["state"].value
        if "group" in values:
            values["group_name"] = values.pop("group")
        params = {f"set_{name}": value for name, value in values.items()}
        params["conversation_id"] = conversation_id
        if self.db.run(_update_conversation(frozenset(values)), params) == 0:
            raise LookupError(f"no conversation {conversation_id}")

    def add_message(
        self,
        *,
        conversation_id: int,
        conversation_key: str,
        channel: str,
        account: str,
        direction: str,
        sender: str,
        text: str,
        created_at: datetime,
        kind: str = "text",
        sender_name: str | None = None,
        channel_msg_id: str | None = None,
        reply_to: int | None = None,
        decision: str | None = None,
        reason: str | None = None,
        entry_id: str | None = None,
        confidence: float | None = None,
        kb_version: str | None = None,
        suggestions: Sequence[str] = (),
        target: Mapping[str, Any] | None = None,
    ) -> MessageRow:
        """Store one message; raises Conflict when its channel message id is already stored."""
        created_at = _utc(created_at)
        values: dict[str, Any] = {
            "conversation_id": conversation_id,
            "conversation_key": conversation_key,
            "channel": channel,
            "account": account,
            "direction": direction,
            "sender": sender,
            "sender_name": sender_name,
            "text": text,
            "kind": kind,
            "channel_msg_id": channel_msg_id,
            "reply_to": reply_to,
            "decision": decision,
            "reason": reason,
            "entry_id": entry_id,
            "confidence": confidence,
            "kb_version": kb_version,
            "suggestions": list(suggestions) or None,
            "target": dict(target) if target else None,
            "created_at": created_at,
        }
        values["id"] = self.db.insert(_INSERT_MESSAGE, values)
        return _message_from(values)


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
    ) -> int:
        """Add an outbox row (or return the existing one for the same stored message)."""
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
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            message_id=message_id,
        )
        self._session.add(row)
        await self._flush()
        return row.id

    async def audit(self, what: str, who: str, details: Mapping[str, Any] | None = None) -> None:
        """Append to the audit log."""
        self._session.add(AuditRecord(what=what, who=who, details=dict(details or {}), created_at=utcnow()))
        await self._flush()


class Store:
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
        """Create missing tables and indexes (migrations come with Alembic once the schema settles)."""
        directory = sqlite_directory(str(self.engine.url))
        if directory is not None:
            # The default `data/kefu.db` works on a fresh checkout; mkdir is file I/O, so off the loop.
            await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        async with self.engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)

    async def dispose(self) -> None:
        """Close every pooled connection (the store reconnects on next use)."""
        if self._group_commit is not None:
            await self._group_commit.close()
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

    async def run(self, work: Callable[[Unit], T]) -> T:
        """Run a sync unit of work in its own transaction: committed when it returns, nothing kept if it raises.

        SQLite: in one trip to the driver's thread, grouped with the other units waiting (one commit for
        all). PostgreSQL: in SQLAlchemy's greenlet bridge over asyncpg, concurrently with other units.
        """
        if self._group_commit is not None:
            if self._writer is not None and self._writer is asyncio.current_task():
                # The group commit's writer would wait for this task's write lock forever.
                raise RuntimeError(
                    "Store.run inside a write transaction of the same task: use Transaction.run"
                )
            return await self._group_commit.run(lambda db: work(Unit(db)))
        try:
            async with self.engine.begin() as conn:
                return await conn.run_sync(lambda sync_conn: work(Unit(SaDb(sync_conn))))
        except IntegrityError as exc:  # from the commit itself
            raise Conflict(str(exc.orig)) from exc

    async def read(self, work: Callable[[Unit], T]) -> T:
        """Run a sync, read-only unit (no write lock; on SQLite outside any transaction)."""
        with sqlite_autocommit_read():
            async with self.engine.connect() as conn:
                return await conn.run_sync(lambda sync_conn: work(Unit(SaDb(sync_conn))))

    # --- reads for APIs and tests ---------------------------------------------------------------

    async def conversation(self, conversation_id: int) -> ConversationRow | None:
        """One conversation by id."""
        params = {"conversation_id": conversation_id}
        rows = await self.read(lambda unit: unit.db.rows(_CONVERSATION_BY_ID, params))
        return _conversation_from(rows[0]) if rows else None

    async def conversations_for_key(self, conversation_key: str) -> list[ConversationRow]:
        """Every conversation of a key, oldest first."""
        params = {"conversation_key": conversation_key}
        rows = await self.read(lambda unit: unit.db.rows(_CONVERSATIONS_FOR_KEY, params))
        return [_conversation_from(r) for r in rows]

    async def messages(self, conversation_id: int) -> list[MessageRow]:
        """Every message of a conversation, in order."""
        rows = await self.read(lambda unit: unit.db.rows(_MESSAGES_OF, {"conversation_id": conversation_id}))
        return [_message_from(r) for r in rows]

    async def message(self, message_id: int) -> MessageRow | None:
        """One message by id."""
        rows = await self.read(lambda unit: unit.db.rows(_MESSAGE_BY_ID, {"message_id": message_id}))
        return _message_from(rows[0]) if rows else None

    async def last_inbound(self, conversation_id: int) -> MessageRow | None:
        """The conversation's latest message from the customer (direction "in"), if any."""
        rows = await self.read(lambda unit: unit.db.rows(_LAST_INBOUND, {"conversation_id": conversation_id}))
        return _message_from(rows[0]) if rows else None

    async def has_message_text(self, conversation_id: int, text: str) -> bool:
        """True when some message of the conversation (either direction) has exactly this text."""
        params = {"conversation_id": conversation_id, "text": text}
        return bool(await self.read(lambda unit: unit.db.rows(_HAS_TEXT, params)))

    async def recent_messages(
        self, conversation_id: int, *, before: int | None = None, limit: int = 20
    ) -> list[MessageRow]:
        """Up to `limit` messages of a conversation with id < before (all when None), NEWEST first.

        For walking back from the end a page at a time (pass the last id seen as `before`).
        """
        params: dict[str, Any] = {"conversation_id": conversation_id, "limit": limit}
        statement = _RECENT_MESSAGES
        if before is not None:
            params["before"], statement = before, _RECENT_MESSAGES_BEFORE
        rows = await self.read(lambda unit: unit.db.rows(statement, params))
        return [_message_from(r) for r in rows]

    async def messages_for_key(
        self, conversation_key: str, *, after: int = 0, direction: str | None = None, limit: int = 100
    ) -> list[MessageRow]:
        """Messages of every conversation of a key with id > after (a polling client's cursor)."""
        params: dict[str, Any] = {"conversation_key": conversation_key, "after": after, "limit": limit}
        statement = _MESSAGES_FOR_KEY
        if direction is not None:
            params["direction"], statement = direction, _MESSAGES_FOR_KEY_ONE_WAY
        rows = await self.read(lambda unit: unit.db.rows(statement, params))
        return [_message_from(r) for r in rows]

    async def count_messages(self) -> int:
        """How many messages are stored."""
        async with self._sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(MessageRecord)) or 0)

    async def count_conversations(self, state: ConversationState | None = None) -> int:
        """How many conversations (in one state, when given)."""
        query = select(func.count()).select_from(Conversation)
        if state is not None:
            query = query.where(Conversation.state == state.value)
        async with self._sessions() as session:
            return int(await session.scalar(query) or 0)

    async def audit_entries(self, limit: int = 100) -> list[dict[str, Any]]:
        """The latest audit log entries, newest first."""
        async with self._sessions() as session:
            rows = await session.scalars(select(AuditRecord).order_by(AuditRecord.id.desc()).limit(limit))
            return [
                {"what": r.what, "who": r.who, "details": r.details, "created_at": r.created_at.isoformat()}
                for r in rows
            ]

    async def audit(self, what: str, who: str, details: Mapping[str, Any] | None = None) -> None:
        """Append to the audit log in its own transaction."""
        async with self.transaction() as tx:
            await tx.audit(what, who, details)

    # --- outbox ----------------------------------------------------------------------------------

    async def claim_outbox(self, now: datetime, *, lease: timedelta, limit: int = 20) -> list[OutboxRow]:
        """Lease due rows to this worker: pending ones whose time has come and expired `sending` leases.

        FOR UPDATE SKIP LOCKED lets several gateway processes share a PostgreSQL outbox without
        sending a row twice; SQLite has one writer at a time (BEGIN IMMEDIATE) so it needs no lock.
        """
        async with self.write_lock(), self._sessions() as session, session.begin():
            ids = list(
                await session.scalars(
                    select(OutboxRecord.id)
                    .where(
                        or_(
                            (OutboxRecord.status == "pending") & (OutboxRecord.next_attempt_at <= now),
                            (OutboxRecord.status == "sending") & (OutboxRecord.locked_until <= now),
                        )
                    )
                    .order_by(OutboxRecord.next_attempt_at, OutboxRecord.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            if not ids:
                return []
            await session.execute(
                update(OutboxRecord)
                .where(OutboxRecord.id.in_(ids))
                .values(status="sending", locked_until=now + lease, attempts=OutboxRecord.attempts + 1)
            )
            rows = await session.scalars(
                select(OutboxRecord)
                .where(OutboxRecord.id.in_(ids))
                .order_by(OutboxRecord.id)
                .execution_options(populate_existing=True)
            )
            return [_outbox(r) for r in rows]

    async def finish_outbox(
        self,
        outbox_id: int,
        *,
        status: str,
        now: datetime,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> None:
        """Record a send's outcome: sent, pending again (retry at next_attempt_at), failed or undeliverable."""
        if status not in OUTBOX_STATUSES:
            raise ValueError(f"unknown outbox status {status!r}")
        values: dict[str, Any] = {"status": status, "locked_until": None}
        if status == "sent":
            values["sent_at"] = now
            values["last_error"] = None
        if error is not None:
            values["last_error"] = error[:2000]
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        async with self.write_lock(), self._sessions() as session, session.begin():
            await session.execute(update(OutboxRecord).where(OutboxRecord.id == outbox_id).values(**values))

    async def release_outbox(self, outbox_ids: Sequence[int], next_attempt_at: datetime) -> None:
        """Hand claimed rows back unsent (their claim does not count as an attempt)."""
        if not outbox_ids:
            return
        async with self.write_lock(), self._sessions() as session, session.begin():
            await session.execute(
                update(OutboxRecord)
                .where(OutboxRecord.id.in_(list(outbox_ids)), OutboxRecord.status == "sending")
                .values(
                    status="pending",
                    locked_until=None,
                    next_attempt_at=next_attempt_at,
                    attempts=OutboxRecord.attempts - 1,
                )
            )

    async def outbox(self, outbox_id: int) -> OutboxRow | None:
        """One outbox row by id."""
        async with self._sessions() as session:
            row = await session.get(OutboxRecord, outbox_id)
            return _outbox(row) if row is not None else None

    async def list_outbox(self, status: str | None = None, *, limit: int = 100) -> list[OutboxRow]:
        """Outbox rows, newest first, optionally of one status."""
        query = select(OutboxRecord)
        if status is not None:
            query = query.where(OutboxRecord.status == status)
        async with self._sessions() as session:
            rows = await session.scalars(query.order_by(OutboxRecord.id.desc()).limit(limit))
            return [_outbox(r) for r in rows]

    async def outbox_counts(self) -> dict[str, int]:
        """How many outbox rows per status (every status present, zero when none)."""
        async with self._sessions() as session:
            result = await session.execute(
                select(OutboxRecord.status, func.count()).group_by(OutboxRecord.status)
            )
            counts = dict.fromkeys(OUTBOX_STATUSES, 0)
            for status, count in result:
                counts[status] = int(count)
            return counts

    async def next_outbox_due(self) -> datetime | None:
        """When the earliest pending row is due (the worker sleeps until then, or until woken)."""
        async with self._sessions() as session:
            return await session.scalar(
                select(func.min(OutboxRecord.next_attempt_at, type_=UTCDateTime())).where(
                    OutboxRecord.status == "pending"
                )
            )


def is_database_error(exc: BaseException) -> bool:
    """True for errors that mean the database failed (not a bug in the caller)."""
    return isinstance(exc, DBAPIError | StoreUnavailable | OSError)
