"""Satisfaction ratings (CSAT): the question asked at close, the answer within the window, skips."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.storage.handoff_base import HandoffTables, conversation_pk
from gateway.storage.messages import Unit
from gateway.storage.schema.core import Conversation
from gateway.storage.schema.handoff import (
    CsatRecord,
)
from handoff.state import ConversationState

# A CSAT answer only counts for this long after the question; later a "5" is just a new message.
CSAT_WINDOW = timedelta(hours=24)

_CONVERSATIONS, _CSAT = Conversation.__table__, CsatRecord.__table__
# The latest conversation of a key with its CSAT row, if any.
_LATEST_WITH_CSAT = (
    select(_CONVERSATIONS.c.id, _CONVERSATIONS.c.state, _CSAT.c.rating, _CSAT.c.skipped, _CSAT.c.asked_at)
    .select_from(_CONVERSATIONS.outerjoin(_CSAT, _CSAT.c.conversation_id == _CONVERSATIONS.c.id))
    .where(_CONVERSATIONS.c.conversation_key == bindparam("conversation_key"))
    .order_by(_CONVERSATIONS.c.id.desc())
    .limit(1)
)
_SKIP_CSAT = (
    update(_CSAT)
    # Not named like the column: an UPDATE reserves column names for its SET clause (CompileError).
    .where(_CSAT.c.conversation_id == bindparam("csat_conversation_id"), _CSAT.c.rating.is_(None))
    .values(skipped=True)
)


def pending_csat(unit: Unit, conversation_key: str, now: datetime) -> int | None:
    """The conversation of this key whose CSAT answer is awaited (latest close, within the window).

    Asked for the first message of every new conversation, so it is one statement; a key whose latest
    conversation is not closed is answered "none" from that row alone.
    """
    rows = unit.db.rows(_LATEST_WITH_CSAT, {"conversation_key": conversation_key})
    if not rows or rows[0]["state"] != ConversationState.CLOSED.value:
        return None
    row = rows[0]
    if (
        row["asked_at"] is None
        or row["rating"] is not None
        or row["skipped"]
        or now - row["asked_at"] > CSAT_WINDOW
    ):
        return None
    return int(row["id"])


def skip_csat(unit: Unit, conversation_id: int) -> None:
    """Stop waiting for a rating the customer did not give."""
    unit.db.run(_SKIP_CSAT, {"csat_conversation_id": conversation_id})


class CsatQueries(HandoffTables):
    """Mixed into HandoffDb (gateway/storage/handoff_store.py)."""

    async def awaiting_csat(self, conversation_id: str) -> bool:
        """True when the conversation was closed with the CSAT question and has no rating yet."""
        async with self._sessions() as s:
            row = await s.get(CsatRecord, conversation_pk(conversation_id))
        return row is not None and row.rating is None and not row.skipped

    async def pending_csat_for_key(self, conversation_key: str, now: datetime) -> int | None:
        """The conversation of this key whose CSAT answer is awaited (see `pending_csat`)."""
        return await self.store.read(lambda unit: pending_csat(unit, conversation_key, now))

    async def save_csat(self, conversation_id: str, rating: int, raw_text: str, at: datetime) -> bool:
        """Store the 1–5 rating and the words; False (nothing stored) if already rated."""
        async with self._begin() as s:
            return await self.save_csat_in(s, conversation_pk(conversation_id), rating, raw_text, at)

    async def save_csat_in(
        self, s: AsyncSession, cid: int | None, rating: int, raw_text: str, at: datetime
    ) -> bool:
        """save_csat inside the caller's session (the rating and its thanks commit together)."""
        done = await s.execute(
            update(CsatRecord)
            .where(CsatRecord.conversation_id == cid, CsatRecord.rating.is_(None))
            .values(rating=rating, raw_text=raw_text, answered_at=at, skipped=False)
        )
        return done.rowcount == 1

    async def skip_csat(self, conversation_id: int) -> None:
        """The customer moved on without rating: stop waiting for it."""
        await self.store.run(lambda unit: skip_csat(unit, conversation_id))

    async def csat(self, conversation_id: int) -> dict[str, Any] | None:
        """The stored CSAT row as a dict, or None."""
        async with self._sessions() as s:
            row = await s.get(CsatRecord, conversation_id)
        if row is None:
            return None
        return {
            "asked_at": row.asked_at.isoformat(),
            "rating": row.rating,
            "raw_text": row.raw_text,
            "skipped": row.skipped,
            "answered_at": row.answered_at.isoformat() if row.answered_at else None,
        }
