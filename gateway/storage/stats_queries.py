"""Read-only queries behind the admin dashboard (`gateway.http.admin_api`): plain rows for a time range.

Bucketing by hour/day happens in Python, not SQL: date functions differ between SQLite and PostgreSQL,
and a dashboard range holds few enough rows. Every query is capped (`MAX_ROWS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import and_, or_, select

from gateway.storage.schema.core import Conversation, MessageRecord
from gateway.storage.schema.handoff import AssignmentRecord, CsatRecord
from gateway.storage.store import Store
from handoff.waiting import QUEUED_UNANSWERED

MAX_ROWS = 50_000
# How the pipeline records a question the bot could not answer: no match at all (or a handoff after
# repeated misses), or only a 您是不是想问 guess.
UNANSWERED_HANDOFF_REASONS = ("no_match", "unsure", "no_kb")


@dataclass(frozen=True, slots=True)
class InboundRow:
    """One customer message: when, which channel, and what the bot decided."""

    channel: str
    created_at: datetime
    decision: str | None


@dataclass(frozen=True, slots=True)
class ConversationStat:
    """One conversation opened in the range, with its handoff and assignment times."""

    id: int
    channel: str
    state: str
    opened_at: datetime
    handoff_reason: str | None
    queued_at: datetime | None
    assigned_at: datetime | None
    first_response_at: datetime | None


@dataclass(frozen=True, slots=True)
class UnansweredRow:
    """A customer text the bot could not answer confidently."""

    conversation_id: int
    channel: str
    text: str
    decision: str | None
    created_at: datetime


async def inbound_messages(store: Store, start: datetime, end: datetime) -> list[InboundRow]:
    """Customer messages received in [start, end)."""
    query = (
        select(MessageRecord.channel, MessageRecord.created_at, MessageRecord.decision)
        .where(
            MessageRecord.direction == "in",
            MessageRecord.created_at >= start,
            MessageRecord.created_at < end,
        )
        .order_by(MessageRecord.id)
        .limit(MAX_ROWS)
    )
    async with store.engine.connect() as conn:
        result = await conn.execute(query)
        return [InboundRow(r.channel, _aware(r.created_at), r.decision) for r in result]


async def conversations(store: Store, start: datetime, end: datetime) -> list[ConversationStat]:
    """Conversations opened in [start, end), with their (latest) assignment's times."""
    query = (
        select(
            Conversation.id,
            Conversation.channel,
            Conversation.state,
            Conversation.opened_at,
            Conversation.handoff_reason,
            Conversation.queued_at,
            AssignmentRecord.assigned_at,
            AssignmentRecord.first_response_at,
        )
        .outerjoin(AssignmentRecord, AssignmentRecord.conversation_id == Conversation.id)
        .where(Conversation.opened_at >= start, Conversation.opened_at < end)
        .order_by(Conversation.id)
        .limit(MAX_ROWS)
    )
    async with store.engine.connect() as conn:
        result = await conn.execute(query)
        return [
            ConversationStat(
                r.id,
                r.channel,
                r.state,
                _aware(r.opened_at),
                r.handoff_reason,
                _aware(r.queued_at),
                _aware(r.assigned_at),
                _aware(r.first_response_at),
            )
            for r in result
        ]


async def csat_ratings(store: Store, start: datetime, end: datetime) -> list[int]:
    """Satisfaction ratings (1–5) answered in [start, end)."""
    query = (
        select(CsatRecord.rating)
        .where(
            CsatRecord.rating.is_not(None),
            CsatRecord.answered_at >= start,
            CsatRecord.answered_at < end,
        )
        .limit(MAX_ROWS)
    )
    async with store.engine.connect() as conn:
        return [int(r) for r in await conn.scalars(query)]


async def unanswered(store: Store, start: datetime, end: datetime, limit: int = 5000) -> list[UnansweredRow]:
    """Customer texts in [start, end) the bot handed off for lack of an answer, or only guessed at."""
    query = (
        select(
            MessageRecord.conversation_id,
            MessageRecord.channel,
            MessageRecord.text,
            MessageRecord.decision,
            MessageRecord.created_at,
        )
        .where(
            MessageRecord.direction == "in",
            MessageRecord.kind == "text",
            MessageRecord.created_at >= start,
            MessageRecord.created_at < end,
            or_(
                MessageRecord.decision == "suggest",
                and_(
                    MessageRecord.decision == "handoff",
                    MessageRecord.reason.in_(UNANSWERED_HANDOFF_REASONS),
                ),
                # Asked while waiting for a human, and the bot had no answer (handoff.waiting).
                and_(MessageRecord.decision == "with_human", MessageRecord.reason == QUEUED_UNANSWERED),
            ),
        )
        .order_by(MessageRecord.id.desc())
        .limit(limit)
    )
    async with store.engine.connect() as conn:
        result = await conn.execute(query)
        return [
            UnansweredRow(r.conversation_id, r.channel, r.text, r.decision, _aware(r.created_at))
            for r in result
        ]


def _aware(value: datetime | None) -> datetime | None:
    """Aware UTC (UTCDateTime already converts; this keeps the contract explicit)."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
