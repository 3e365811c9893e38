"""SLA bookkeeping: which live handoffs are past their first-response time, and the once-only notice mark.

`sla_notices` has one row per (conversation, handoff time, kind): inserting it is the compare-and-set
that makes "客服正忙，请稍候" go out exactly once, also with several gateway processes on PostgreSQL.
A new table, so `create_all` adds it to an existing database without a migration.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import String, and_, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from gateway.storage.handoff_models import TicketRecord
from gateway.storage.models import Base, Conversation, MessageRecord, UTCDateTime
from gateway.storage.store import Store

__all__ = ["FIRST_RESPONSE", "OverdueHandoff", "SlaNoticeRecord", "mark_notice", "unanswered_handoffs"]

FIRST_RESPONSE = "first_response"


class SlaNoticeRecord(Base):
    """An automatic SLA notice that was sent (or is being sent) for one handoff of a conversation."""

    __tablename__ = "sla_notices"

    conversation_id: Mapped[int] = mapped_column(primary_key=True)
    handed_off_at: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())


@dataclass(frozen=True, slots=True)
class OverdueHandoff:
    """A live handoff with no agent reply yet, handed off before the cut-off."""

    conversation_id: int
    group: str | None
    handed_off_at: datetime


async def unanswered_handoffs(
    store: Store, handed_off_before: datetime, *, limit: int = 200
) -> list[OverdueHandoff]:
    """Queued/assigned conversations (not 留言) without an agent message since the handoff and no notice yet."""
    c = Conversation
    agent_replied = exists().where(
        MessageRecord.conversation_id == c.id,
        MessageRecord.sender == "agent",
        MessageRecord.created_at >= c.queued_at,
    )
    is_ticket = exists().where(TicketRecord.conversation_id == c.id)
    noticed = exists().where(
        and_(
            SlaNoticeRecord.conversation_id == c.id,
            SlaNoticeRecord.handed_off_at == c.queued_at,
            SlaNoticeRecord.kind == FIRST_RESPONSE,
        )
    )
    query = (
        select(c.id, c.group.label("conversation_group"), c.queued_at)
        .where(
            c.state.in_(("queued", "assigned")),
            c.queued_at.is_not(None),
            c.queued_at <= handed_off_before,
            ~agent_replied,
            ~is_ticket,
            ~noticed,
        )
        .order_by(c.queued_at)
        .limit(limit)
    )
    async with store.engine.connect() as conn:
        rows = list(await conn.execute(query))
    return [OverdueHandoff(r.id, r.conversation_group, _aware(r.queued_at)) for r in rows]


async def mark_notice(
    store: Store, conversation_id: int, handed_off_at: datetime, kind: str, at: datetime
) -> bool:
    """Claim the notice: True for the one caller that inserted the mark, False when it already existed."""
    try:
        async with store.engine.begin() as conn:
            await conn.execute(
                SlaNoticeRecord.__table__.insert().values(
                    conversation_id=conversation_id, handed_off_at=handed_off_at, kind=kind, sent_at=at
                )
            )
    except IntegrityError:
        return False
    return True


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
