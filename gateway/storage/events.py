"""The agent event log (`agent_events`, numbered: the agent WebSocket's replay log)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.storage.handoff_base import HandoffTables, conversation_pk
from gateway.storage.messages import Unit
from gateway.storage.rows import utcnow
from gateway.storage.schema.handoff import (
    AgentEventRecord,
)

_INSERT_EVENT = AgentEventRecord.__table__.insert()
_LOCK_EVENTS = text("LOCK TABLE agent_events IN SHARE ROW EXCLUSIVE MODE")


@dataclass(frozen=True, slots=True)
class EventRow:
    """One stored console event."""

    seq: int
    type: str
    conversation_id: int | None
    agent_id: int | None
    group: str | None
    payload: Mapping[str, Any]
    created_at: datetime

    def as_json(self) -> dict[str, Any]:
        """The wire form pushed on the WebSocket."""
        return {
            "seq": self.seq,
            "event": self.type,
            "conversation_id": self.conversation_id,
            "group": self.group,
            "data": dict(self.payload),
            "at": self.created_at.isoformat(),
        }


class EventQueries(HandoffTables):
    """Mixed into HandoffDb (gateway/storage/handoff_store.py)."""

    async def add_event(
        self,
        type_: str,
        payload: Mapping[str, Any],
        *,
        conversation_id: int | None = None,
        agent_id: str | None = None,
        group: str | None = None,
        session: AsyncSession | None = None,
    ) -> int:
        """Append a console event; returns its sequence number."""
        if session is None:
            # A unit of work, not a session: on SQLite it joins the group commit of the messages being
            # stored instead of taking the write lock for a transaction of its own (one per customer message).
            return await self.store.run(
                self.event_work(
                    type_, payload, conversation_id=conversation_id, agent_id=agent_id, group=group
                )
            )
        row = AgentEventRecord(
            type=type_,
            conversation_id=conversation_id,
            agent_id=conversation_pk(agent_id) if agent_id is not None else None,
            group=group,
            payload=dict(payload),
            created_at=utcnow(),
        )
        session.add(row)
        await session.flush()
        return row.seq

    def event_work(
        self,
        type_: str,
        payload: Mapping[str, Any],
        *,
        conversation_id: int | None = None,
        agent_id: str | None = None,
        group: str | None = None,
    ) -> Callable[[Unit], int]:
        """The unit of work that appends a console event (alone, or inside a larger unit); its seq."""
        values = {
            "type": type_,
            "conversation_id": conversation_id,
            "agent_id": conversation_pk(agent_id) if agent_id is not None else None,
            "group_name": group,
            "payload": dict(payload),
            "created_at": utcnow(),
        }

        def insert(unit: Unit) -> int:
            if unit.db.dialect == "postgresql":
                # Commit order must equal seq order, or a console could read seq 11 before seq 10 commits
                # and skip 10 for good. Events are few and short: serialising their inserts is cheap.
                unit.db.run(_LOCK_EVENTS)
            return unit.db.insert(_INSERT_EVENT, values)

        return insert

    async def events_after(self, after: int, limit: int = 500) -> list[EventRow]:
        """Stored events with seq > after, oldest first."""
        async with self._sessions() as s:
            rows = await s.scalars(
                select(AgentEventRecord)
                .where(AgentEventRecord.seq > after)
                .order_by(AgentEventRecord.seq)
                .limit(limit)
            )
            return [
                EventRow(r.seq, r.type, r.conversation_id, r.agent_id, r.group, r.payload or {}, r.created_at)
                for r in rows
            ]

    async def last_seq(self) -> int:
        """The newest event's sequence number (0 when none)."""
        async with self._sessions() as s:
            return int(await s.scalar(select(func.max(AgentEventRecord.seq))) or 0)
