"""Conversations and messages: the pipeline's unit-of-work statements (`Unit`) and the Store's reads.

The hot path (one inbound message) runs SQLAlchemy Core statements built once; `Unit` is what a unit of
work calls (see gateway/storage/unit.py for how it is run), `MessageReads` the reads APIs and tests use.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import String, bindparam, case, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from gateway.storage.errors import NeedsTransaction
from gateway.storage.outbox import add_outbox, outbox_for_message, outbox_values
from gateway.storage.rows import ConversationRow, MessageRow, conversation_from, message_from
from gateway.storage.schema.core import (
    Conversation,
    Customer,
    MessageRecord,
)
from gateway.storage.serving_key import key_for, ticket_waiting, wait_start
from gateway.storage.turns import store_turn
from gateway.storage.unit import Db
from handoff.state import ConversationState

T = TypeVar("T")


# The hot path (one inbound message) runs SQLAlchemy Core on the tables, not the ORM: no identity map, no
# flush bookkeeping, and the rows just written are built from the values sent, not read back.
_CUSTOMERS = Customer.__table__
_CONVERSATIONS = Conversation.__table__
_MESSAGES = MessageRecord.__table__


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
# PostgreSQL, a unit without a transaction (Unit.optimistic): the open conversation unlocked, with the row
# version it was read at (xmin: the transaction that wrote this version of the row; any UPDATE changes it).
# The turn's UPDATE then matches only that version (_VERSION_SEEN), so a change in between is noticed.
_ROW_VERSION = literal_column("conversations.xmin::text")
_OPEN_CONVERSATION_SEEN = select(_CONVERSATIONS, _ROW_VERSION.label("row_version")).where(
    _CONVERSATIONS.c.conversation_key == bindparam("conversation_key"),
    _CONVERSATIONS.c.state != literal_column("'closed'"),
)
_VERSION_SEEN = _ROW_VERSION == bindparam("seen_version", type_=String)  # noqa: SIM300 (a column, not a constant)
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
_CUSTOMER_BY_ID = select(_CUSTOMERS.c.name, _CUSTOMERS.c.user_id).where(
    _CUSTOMERS.c.id == bindparam("customer_id")
)
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
_UPDATE_CONVERSATION: dict[tuple[frozenset[str], bool, bool], Any] = {}


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


_KEY_PARTS = frozenset({"state", "priority", "queued_at"})


def _update_conversation(columns: frozenset[str], returning: bool = False, versioned: bool = False) -> Any:
    """UPDATE conversations SET <columns> WHERE id = :conversation_id [AND the row version is
    :seen_version] [RETURNING id], one statement per column set. (Built whole for each variant: a statement
    SQLAlchemy has compiled keeps memoised columns that a `.returning()` copy of it would inherit.)"""
    statement = _UPDATE_CONVERSATION.get((columns, returning, versioned))
    if statement is None:
        params = {
            name: bindparam(f"set_{name}", type_=_CONVERSATIONS.c[name].type) for name in sorted(columns)
        }
        values: dict[str, Any] = dict(params)
        if columns & _KEY_PARTS:
            # The serving-order key follows the state, priority and wait it is made of (serving_key.py).
            new = {name: params.get(name, _CONVERSATIONS.c[name]) for name in _KEY_PARTS}
            values["queue_key"] = key_for(
                new["state"], new["priority"], ticket_waiting(), wait_start(new["queued_at"])
            )
        statement = (
            update(_CONVERSATIONS).where(_CONVERSATIONS.c.id == bindparam("conversation_id")).values(values)
        )
        if versioned:
            statement = statement.where(_VERSION_SEEN)
        if returning:
            statement = statement.returning(_CONVERSATIONS.c.id)
        _UPDATE_CONVERSATION[(columns, returning, versioned)] = statement
    return statement


def message_values(
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
    attachment: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A message's column values (every column but the key)."""
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
        "attachment": dict(attachment) if attachment else None,
    }
    return values


def _conversation_update(
    conversation_id: int, changes: Mapping[str, Any], returning: bool = False, seen_version: str | None = None
) -> tuple[Any, dict[str, Any]]:
    """The UPDATE of some fields of a conversation, and its parameters."""
    values = dict(changes)
    unknown = set(values) - _CONVERSATION_FIELDS
    if unknown:
        raise ValueError(f"not conversation fields: {', '.join(sorted(unknown))}")
    if isinstance(values.get("state"), ConversationState):
        values["state"] = values["state"].value
    if "group" in values:
        values["group_name"] = values.pop("group")
    params = {f"set_{name}": value for name, value in values.items()}
    params["conversation_id"] = conversation_id
    if seen_version is not None:
        params["seen_version"] = seen_version
    return _update_conversation(frozenset(values), returning, seen_version is not None), params


class Unit:
    """The pipeline's statements inside one unit of work, as plain (sync) calls over a `Db`.

    Sync on purpose: the whole unit runs in one trip to the database (see gateway.storage.unit), and
    `Transaction` offers the same calls to async code through SQLAlchemy's run_sync.

    `optimistic` (PostgreSQL, `Store.run(..., optimistic=True)`: the db is an `OptimisticDb`): no
    transaction; the unit reads, then writes once, with `add_turn`, which stores nothing if the
    conversation changed since `open_conversation` read it. Any other write raises NeedsTransaction before
    it runs, as does a changed conversation: the store then runs the unit again in a transaction, with the
    conversation locked.
    """

    def __init__(self, db: Db) -> None:
        self.db = db
        self.optimistic: bool = getattr(db, "optimistic", False)
        self._seen: dict[int, str] = {}  # optimistic: conversation id → the row version read

    def find_message(self, channel: str, account: str, channel_msg_id: str) -> MessageRow | None:
        """The stored message with this platform id, if any (the dedupe lookup)."""
        rows = self.db.rows(
            _FIND_MESSAGE, {"channel": channel, "account": account, "channel_msg_id": channel_msg_id}
        )
        return message_from(rows[0]) if rows else None

    def replies_to(self, message_id: int) -> list[MessageRow]:
        """The outbound messages that answered one inbound message, in order."""
        return [message_from(r) for r in self.db.rows(_REPLIES_TO, {"message_id": message_id})]

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
        """The conversation for this key that is not closed, locked for this transaction (optimistic: its
        row version noted instead, which the turn's update checks)."""
        if self.optimistic:
            rows = self.db.rows(_OPEN_CONVERSATION_SEEN, {"conversation_key": conversation_key})
            if rows:
                self._seen[int(rows[0]["id"])] = rows[0]["row_version"]
        else:
            rows = self.db.rows(_OPEN_CONVERSATION, {"conversation_key": conversation_key})
        return conversation_from(rows[0]) if rows else None

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
        return conversation_from(values)

    def update_conversation(self, conversation_id: int, **values: Any) -> None:
        """Change some fields of a conversation (state, priority, miss_streak, timestamps...)."""
        statement, params = _conversation_update(conversation_id, values)
        if self.db.run(statement, params) == 0:
            raise LookupError(f"no conversation {conversation_id}")

    def add_message(self, **values: Any) -> MessageRow:
        """Store one message (see `message_values`); raises Conflict when its channel message id is stored."""
        row = message_values(**values)
        row["id"] = self.db.insert(_INSERT_MESSAGE, row)
        return message_from(row)

    def add_turn(
        self,
        inbound: Mapping[str, Any],
        replies: Sequence[Mapping[str, Any]],
        outbox: Sequence[Mapping[str, Any]] | None,
        conversation: tuple[int, Mapping[str, Any]] | None = None,
    ) -> tuple[MessageRow, list[MessageRow], list[int]]:
        """A customer's message, the replies to it and (when `outbox` is given, one per reply) their outbox
        rows: keyword arguments of add_message and add_outbox, without reply_to and message_id, which come
        from the rows being stored; `conversation`: (id, changes) for update_conversation, in the same
        statement. Raises Conflict when the message's channel id is stored already."""
        rows = [message_values(**inbound), *(message_values(**r) for r in replies)]
        boxes = None if outbox is None else [outbox_values(**o, message_id=None) for o in outbox]
        pg = self.db.dialect == "postgresql"  # there the UPDATE is a CTE of the turn's one statement
        seen = None
        if self.optimistic:
            if conversation is None or conversation[0] not in self._seen:
                raise NeedsTransaction("a turn without its conversation's row version")
            seen = self._seen[conversation[0]]
        update = (
            None
            if conversation is None
            else _conversation_update(*conversation, returning=pg, seen_version=seen)
        )
        try:
            ids, box_ids = store_turn(self.db, rows[0], rows[1:], boxes, update)
        except LookupError:
            if seen is None:
                raise
            # Nothing was stored: the conversation changed (or closed) since it was read.
            raise NeedsTransaction("the conversation changed since it was read") from None
        for row, key in zip(rows, ids, strict=True):
            row["id"] = key
        for row in rows[1:]:
            row["reply_to"] = ids[0]
        messages = [message_from(row) for row in rows]
        return messages[0], messages[1:], box_ids

    def add_outbox(self, **values: Any) -> int:
        """An outbox row in this unit of work (a reply and its row commit together); see storage.outbox."""
        return add_outbox(self.db, **values)

    def outbox_for(self, message_id: int) -> tuple[int, str] | None:
        """(id, status) of a stored reply's outbox row, or None."""
        return outbox_for_message(self.db, message_id)


def conversation_and_recent_read(
    unit: Unit, conversation_id: int, limit: int
) -> tuple[ConversationRow | None, list[MessageRow]]:
    """One conversation and its newest `limit` messages (newest first), in a read unit of the caller's
    (`HandoffDb.handoff_reads`); `limit` 0: the conversation alone."""
    rows = unit.db.rows(_CONVERSATION_BY_ID, {"conversation_id": conversation_id})
    if not rows or limit <= 0:
        return (conversation_from(rows[0]) if rows else None), []
    page = unit.db.rows(_RECENT_MESSAGES, {"conversation_id": conversation_id, "limit": limit})
    return conversation_from(rows[0]), [message_from(r) for r in page]


def message_read(unit: Unit, message_id: int) -> MessageRow | None:
    """`MessageReads.message` in a read unit of the caller's."""
    rows = unit.db.rows(_MESSAGE_BY_ID, {"message_id": message_id})
    return message_from(rows[0]) if rows else None


class MessageReads:
    """Reads of conversations and messages; mixed into `Store` (its `read` runs them)."""

    if TYPE_CHECKING:

        async def read(self, work: Callable[[Unit], T]) -> T: ...

    # --- reads for APIs and tests ---------------------------------------------------------------

    async def conversation(self, conversation_id: int) -> ConversationRow | None:
        """One conversation by id."""
        params = {"conversation_id": conversation_id}
        rows = await self.read(lambda unit: unit.db.rows(_CONVERSATION_BY_ID, params))
        return conversation_from(rows[0]) if rows else None

    async def conversations_for_key(self, conversation_key: str) -> list[ConversationRow]:
        """Every conversation of a key, oldest first."""
        params = {"conversation_key": conversation_key}
        rows = await self.read(lambda unit: unit.db.rows(_CONVERSATIONS_FOR_KEY, params))
        return [conversation_from(r) for r in rows]

    async def messages(self, conversation_id: int) -> list[MessageRow]:
        """Every message of a conversation, in order."""
        rows = await self.read(lambda unit: unit.db.rows(_MESSAGES_OF, {"conversation_id": conversation_id}))
        return [message_from(r) for r in rows]

    async def message(self, message_id: int) -> MessageRow | None:
        """One message by id."""
        return await self.read(lambda unit: message_read(unit, message_id))

    async def queue_rows(
        self, conversation_ids: Sequence[int]
    ) -> dict[int, tuple[ConversationRow, Mapping[str, Any] | None, MessageRow | None]]:
        """For the queue listing: each conversation with its customer (name, user_id) and latest inbound
        message, read in ONE trip (a long queue once cost three awaited reads per row: seconds under load)."""

        def read(unit: Any) -> dict[int, tuple[ConversationRow, Mapping[str, Any] | None, MessageRow | None]]:
            out = {}
            for cid in conversation_ids:
                rows = unit.db.rows(_CONVERSATION_BY_ID, {"conversation_id": cid})
                if not rows:
                    continue
                conv = conversation_from(rows[0])
                customer = unit.db.rows(_CUSTOMER_BY_ID, {"customer_id": conv.customer_id})
                inbound = unit.db.rows(_LAST_INBOUND, {"conversation_id": cid})
                out[cid] = (
                    conv,
                    customer[0] if customer else None,
                    message_from(inbound[0]) if inbound else None,
                )
            return out

        return await self.read(read)

    async def last_inbound(self, conversation_id: int) -> MessageRow | None:
        """The conversation's latest message from the customer (direction "in"), if any."""
        rows = await self.read(lambda unit: unit.db.rows(_LAST_INBOUND, {"conversation_id": conversation_id}))
        return message_from(rows[0]) if rows else None

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
        return [message_from(r) for r in rows]

    async def messages_for_key(
        self, conversation_key: str, *, after: int = 0, direction: str | None = None, limit: int = 100
    ) -> list[MessageRow]:
        """Messages of every conversation of a key with id > after (a polling client's cursor)."""
        params: dict[str, Any] = {"conversation_key": conversation_key, "after": after, "limit": limit}
        statement = _MESSAGES_FOR_KEY
        if direction is not None:
            params["direction"], statement = direction, _MESSAGES_FOR_KEY_ONE_WAY
        rows = await self.read(lambda unit: unit.db.rows(statement, params))
        return [message_from(r) for r in rows]

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
