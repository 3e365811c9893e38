"""SLA bookkeeping: which live handoffs are past their first-response time, and the once-only notice mark.

`sla_notices` has one row per (conversation, handoff time, kind): inserting it is the compare-and-set
that makes "客服正忙，请稍候" go out exactly once, also with several gateway processes on PostgreSQL.
The tables are in `schema/sla.py`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, exists, select, update

from gateway.storage.errors import Conflict
from gateway.storage.schema.core import Conversation, MessageRecord
from gateway.storage.schema.handoff import TicketRecord
from gateway.storage.schema.sla import FollowUpRecord, SlaNoticeRecord
from gateway.storage.store import Store

__all__ = [
    "FIRST_RESPONSE",
    "FollowUp",
    "FollowUpRecord",
    "OverdueHandoff",
    "SlaNoticeRecord",
    "close_follow_up",
    "get_follow_up",
    "list_follow_ups",
    "mark_notice",
    "open_follow_up",
    "unanswered_handoffs",
]

FIRST_RESPONSE = "first_response"


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
    values = {"conversation_id": conversation_id, "handed_off_at": handed_off_at, "kind": kind, "sent_at": at}
    return await _insert_once(store, _INSERT_NOTICE, values)


async def _insert_once(store: Store, statement: Any, values: dict[str, Any]) -> bool:
    """Insert one row; False when a unique constraint says it is there already (a claim made once)."""
    try:
        await store.run(lambda unit: unit.db.run(statement, values))
    except Conflict:
        return False
    return True


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Built once: storage compiles each statement object once (gateway.storage.unit).
_INSERT_NOTICE = SlaNoticeRecord.__table__.insert()
_INSERT_FOLLOW_UP = FollowUpRecord.__table__.insert()


@dataclass(frozen=True, slots=True)
class FollowUp:
    """A stored follow-up ticket."""

    id: int
    conversation_id: int
    group: str | None
    created_at: datetime
    due_at: datetime
    closed_at: datetime | None
    closed_by: str | None
    note: str | None


async def open_follow_up(
    store: Store, conversation_id: int, group: str | None, created_at: datetime, due_at: datetime
) -> bool:
    """Create the conversation's follow-up ticket; False (nothing changed) when it already has one."""
    values = {
        "conversation_id": conversation_id,
        "group_name": group,
        "created_at": created_at,
        "due_at": due_at,
    }
    return await _insert_once(store, _INSERT_FOLLOW_UP, values)


async def list_follow_ups(
    store: Store, groups: Collection[str] | None = None, *, include_closed: bool = False, limit: int = 500
) -> list[FollowUp]:
    """Follow-ups of the given groups (None = all), open ones only unless asked, earliest due first."""
    t = FollowUpRecord.__table__
    query = select(t).order_by(t.c.due_at, t.c.id).limit(limit)
    if groups is not None:
        query = query.where(t.c.group_name.in_(list(groups)))
    if not include_closed:
        query = query.where(t.c.closed_at.is_(None))
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [_row_follow_up(r) for r in rows]


def _row_follow_up(r: Any) -> FollowUp:
    m = r._mapping
    return FollowUp(
        m["id"],
        m["conversation_id"],
        m["group_name"],
        _aware(m["created_at"]),
        _aware(m["due_at"]),
        _aware(m["closed_at"]) if m["closed_at"] is not None else None,
        m["closed_by"],
        m["note"],
    )


async def get_follow_up(store: Store, follow_up_id: int) -> FollowUp | None:
    """One follow-up by id."""
    async with store.engine.connect() as conn:
        t = FollowUpRecord.__table__
        row = (await conn.execute(select(t).where(t.c.id == follow_up_id))).first()
    return _row_follow_up(row) if row is not None else None


async def close_follow_up(
    store: Store, follow_up_id: int, *, by: str, note: str | None, at: datetime
) -> bool:
    """Close an open follow-up (compare-and-set); False when it is closed already or unknown."""
    async with store.write_lock(), store.engine.begin() as conn:
        done = await conn.execute(
            update(FollowUpRecord)
            .where(FollowUpRecord.id == follow_up_id, FollowUpRecord.closed_at.is_(None))
            .values(closed_at=at, closed_by=by, note=note)
        )
    return done.rowcount == 1
