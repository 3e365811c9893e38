"""The tables (SQLAlchemy 2 declarative). Timestamps are stored and returned timezone-aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both databases (SQLite stores no zone, so naive values read back as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime passed to the database; use datetime.now(UTC)")
        return value.astimezone(UTC)

    def bind_processor(self, dialect: Any) -> Any:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        # SQLite's text of a datetime, as SQLAlchemy's own DATETIME writes it ("YYYY-MM-DD HH:MM:SS.ffffff"),
        # in one call: a message's rows bind a dozen timestamps, and its %-format of seven fields cost more.
        def process(value: datetime | None) -> str | None:
            utc = self.process_bind_param(value, dialect)
            return None if utc is None else utc.isoformat(" ", "microseconds")[:26]

        return process

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """The metadata every gateway table is registered on."""


class Customer(Base):
    """One person on one channel account (the platform's user id)."""

    __tablename__ = "customers"
    __table_args__ = (UniqueConstraint("channel", "account", "user_id", name="uq_customers_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str] = mapped_column(String(128))
    name: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # Refreshed when a conversation opens or a display name arrives, not on every message (the pipeline
    # skips the write); conversations.last_activity_at is the exact one.
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Conversation(Base):
    """One customer's thread on one channel account, from first message to close."""

    __tablename__ = "conversations"
    __table_args__ = (
        # At most one open conversation per key: two first messages racing cannot open two.
        Index(
            "uq_conversations_open_key",
            "conversation_key",
            unique=True,
            sqlite_where=text("state != 'closed'"),
            postgresql_where=text("state != 'closed'"),
        ),
        Index("ix_conversations_key_opened", "conversation_key", "opened_at"),
        Index("ix_conversations_state", "state", "priority", "queued_at"),
        # The 受理记录 and the dashboard select a period by opened_at (migration 0002).
        Index("ix_conversations_opened", "opened_at"),
        # The queue in serving order (gateway/storage/serving_key.py, migration 0005): a page is a range of
        # the first, a position an indexed COUNT on the second. Only queued rows have a key, so both stay
        # as small as the queue whatever the history.
        Index(
            "ix_conversations_queue_key",
            "queue_key",
            "id",
            sqlite_where=text("queue_key IS NOT NULL"),
            postgresql_where=text("queue_key IS NOT NULL"),
        ),
        Index(
            "ix_conversations_group_queue_key",
            "group_name",
            "queue_key",
            "id",
            sqlite_where=text("queue_key IS NOT NULL"),
            postgresql_where=text("queue_key IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    channel: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(64))
    conversation_key: Mapped[str] = mapped_column(String(255))
    state: Mapped[str] = mapped_column(String(16))
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    handoff_reason: Mapped[str | None] = mapped_column(String(64))
    group: Mapped[str | None] = mapped_column("group_name", String(64))
    miss_streak: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_activity_at: Mapped[datetime] = mapped_column(UTCDateTime())
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_reason: Mapped[str | None] = mapped_column(String(64))
    kb_version: Mapped[str | None] = mapped_column(String(64))
    # Serving-order key while queued (priority, 留言, FIFO: handoff.queue.queue_sort_key; the id breaks
    # ties), NULL otherwise. Written by every statement that changes what it is made of.
    queue_key: Mapped[int | None] = mapped_column(BigInteger)


class MessageRecord(Base):
    """Every message in and out, with how the bot decided on the inbound ones."""

    __tablename__ = "messages"
    __table_args__ = (
        # The dedupe key: a platform retry of the same message is stored once (NULL ids never clash).
        UniqueConstraint("channel", "account", "channel_msg_id", name="uq_messages_channel_msg"),
        Index("ix_messages_conversation", "conversation_id", "id"),
        Index("ix_messages_reply_to", "reply_to"),
        Index("ix_messages_key", "conversation_key", "id"),
        # The dashboard's and 绩效's period reads (created_at ranges), not the whole history (migration 0002).
        Index("ix_messages_created", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    conversation_key: Mapped[str] = mapped_column(String(255))
    channel: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(3))  # in | out
    sender: Mapped[str] = mapped_column(String(16))  # customer | bot | agent | system
    sender_name: Mapped[str | None] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16), default="text")
    channel_msg_id: Mapped[str | None] = mapped_column(String(128))
    reply_to: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    decision: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(32))
    entry_id: Mapped[str | None] = mapped_column(String(128))
    confidence: Mapped[float | None] = mapped_column(Float)
    kb_version: Mapped[str | None] = mapped_column(String(64))
    suggestions: Mapped[list[str] | None] = mapped_column(JSON)
    # Addressing the adapter needs to push later (openid, group id, platform msg id...).
    target: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # An image or file (gateway.message.Attachment.as_json): kind, mime, name, size, key / url / media_id.
    attachment: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# The outbox rows still to be sent, or that may still be: what ix_outbox_live_conversation holds.
OUTBOX_LIVE_SQL = "status IN ('pending', 'held', 'sending', 'failed')"


class OutboxRecord(Base):
    """An asynchronous send and its delivery state."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        # Per-conversation order: the claim looks for an earlier undelivered row of the same conversation,
        # for every due row. Only live rows (OUTBOX_LIVE_SQL) are in it, so that look-up reads the rows still to
        # send, not the conversation's delivered history (migration 0006).
        Index(
            "ix_outbox_live_conversation",
            "conversation_key",
            "id",
            sqlite_where=text(OUTBOX_LIVE_SQL),
            postgresql_where=text(OUTBOX_LIVE_SQL),
        ),
        # One delivery per stored reply: pushing the same result twice enqueues it once.
        UniqueConstraint("message_id", name="uq_outbox_message"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[str] = mapped_column(String(32))
    account: Mapped[str] = mapped_column(String(64))
    conversation_key: Mapped[str] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    sender: Mapped[str] = mapped_column(String(16), default="bot")
    target: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(
        String(16)
    )  # held|pending|sending|sent|failed|undeliverable|cancelled
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime())
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    # The image or file to deliver with (or instead of) the text; its stored copy is read at send time.
    attachment: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class AuditRecord(Base):
    """Who did what (reloads, admin actions), append-only."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_created", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    what: Mapped[str] = mapped_column(String(64))
    who: Mapped[str] = mapped_column(String(128))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
