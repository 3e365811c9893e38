"""The SQLAlchemy implementation of `handoff.store.HandoffStore`, plus what the agent API reads.

One class over one module per aggregate: agents (agents.py), the queue and assignments
(assignments.py), CSAT (csat.py) and the event log (events.py); the console's reads are here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.storage.agents import AgentQueries, LoadRows, loads_read
from gateway.storage.assignments import AssignmentQueries
from gateway.storage.csat import CsatQueries
from gateway.storage.events import EventQueries
from gateway.storage.handoff_base import HandoffTables, conversation_pk
from gateway.storage.messages import conversation_and_recent_read, message_read
from gateway.storage.queue import position_read, waiting_ticket_read
from gateway.storage.rows import ConversationRow, MessageRow, utcnow
from gateway.storage.schema.core import Conversation, Customer
from gateway.storage.schema.handoff import (
    AgentRecord,
    AssignmentRecord,
    CannedReplyRecord,
    NoteRecord,
)
from gateway.storage.store import Transaction
from handoff.queue import AgentLoad
from handoff.state import ConversationState
from handoff.store import CustomerMessageRead

__all__ = ["CannedRow", "HandoffDb", "IdleCandidate", "NoteRow", "session_of"]


def session_of(tx: Transaction) -> AsyncSession:
    """The session behind a pipeline Transaction, so handoff writes join the same unit of work."""
    return tx._session  # same package: Transaction is storage's own wrapper


@dataclass(frozen=True, slots=True)
class NoteRow:
    """An internal note."""

    id: int
    conversation_id: int
    agent_id: int
    agent_name: str
    text: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class CannedRow:
    """A stored canned reply."""

    id: int
    title: str
    text: str
    group: str | None
    created_by: str | None = None  # the agent who added it (None: seeded from handoff.canned_file)


@dataclass(frozen=True, slots=True)
class IdleCandidate:
    """An assigned conversation with the timestamps the idle rules read."""

    conversation_id: int
    agent_id: int
    last_customer_at: datetime | None
    last_agent_at: datetime | None
    reminded_at: datetime | None


class HandoffDb(AgentQueries, AssignmentQueries, CsatQueries, EventQueries, HandoffTables):
    """Handoff storage on the gateway's engine (implements handoff.store.HandoffStore)."""

    async def handoff_reads(
        self, conversation_id: int, recent: int
    ) -> tuple[ConversationRow | None, list[MessageRow], list[AgentLoad]]:
        """What a fresh handoff's routing reads, in one trip: the conversation, its newest `recent` messages
        (newest first) and every agent's load (`agent_loads()`; is_group_staffed picks the group's)."""

        def read(unit: Any) -> tuple[tuple[ConversationRow | None, list[MessageRow]], LoadRows]:
            return conversation_and_recent_read(unit, conversation_id, recent), loads_read(unit)

        (conv, messages), loads = await self.store.read(read)
        return conv, messages, self.loads_from(loads)

    async def customer_message_reads(
        self, conversation_id: int, message_id: int, *, place: bool = True
    ) -> tuple[MessageRow | None, CustomerMessageRead]:
        """What a message to a conversation on the human side reads, in one trip: the message, and for
        `HandoffFlow.on_customer_message` the conversation (`get_conversation`), whether it is a waiting
        留言 (asked when queued) and its place (one COUNT: when queued, not a 留言, and `place`)."""

        def read(unit: Any) -> tuple[MessageRow | None, CustomerMessageRead]:
            ref = self.conversation_ref_read(unit, conversation_id)
            queued = ref is not None and ref.state is ConversationState.QUEUED
            ticket = queued and waiting_ticket_read(unit, conversation_id)
            counted = place and queued and not ticket
            position = position_read(unit, conversation_id, self.default_group) if counted else None
            return message_read(unit, message_id), CustomerMessageRead(ref, ticket, position)

        return await self.store.read(read)

    async def customer(self, customer_id: int) -> dict[str, Any] | None:
        """A customer as the console shows them."""
        async with self._sessions() as s:
            row = await s.get(Customer, customer_id)
        if row is None:
            return None
        return {
            "id": row.id,
            "channel": row.channel,
            "account": row.account,
            "user_id": row.user_id,
            "name": row.name,
            "first_seen_at": row.created_at.isoformat(),
        }

    async def customer_conversations(self, customer_id: int) -> list[Conversation]:
        """Every conversation of a customer, newest first (detached ORM rows, read-only)."""
        async with self._sessions() as s:
            return list(
                await s.scalars(
                    select(Conversation)
                    .where(Conversation.customer_id == customer_id)
                    .order_by(Conversation.id.desc())
                )
            )

    async def assignment(self, conversation_id: int) -> AssignmentRecord | None:
        """The conversation's assignment row (active or the last one), detached."""
        async with self._sessions() as s:
            return await s.get(AssignmentRecord, conversation_id)

    async def conversations_of(self, agent_id: str) -> list[int]:
        """Ids of the conversations an agent holds now."""
        async with self._sessions() as s:
            rows = await s.scalars(
                select(AssignmentRecord.conversation_id)
                .where(
                    AssignmentRecord.agent_id == conversation_pk(agent_id), AssignmentRecord.active.is_(True)
                )
                .order_by(AssignmentRecord.assigned_at)
            )
            return list(rows)

    async def all_assigned(self) -> list[int]:
        """Ids of every assigned conversation (supervisors' view)."""
        async with self._sessions() as s:
            rows = await s.scalars(
                select(AssignmentRecord.conversation_id)
                .where(AssignmentRecord.active.is_(True))
                .order_by(AssignmentRecord.assigned_at)
            )
            return list(rows)

    async def agent_spoke(self, s: AsyncSession, conversation_id: int, at: datetime) -> None:
        """Record an agent message's time (first response, idle clock) in the caller's session."""
        row = await s.get(AssignmentRecord, conversation_id)
        if row is None:
            return
        row.last_agent_at = at
        if row.first_response_at is None:
            row.first_response_at = at

    async def set_reminded(self, conversation_id: int, at: datetime, *, previous: datetime | None) -> bool:
        """Claim the idle reminder: True for the one caller that moved `reminded_at` from `previous` (what
        it read) to `at`; False when another process's sweep claimed it first (it sends the reminder)."""
        row = AssignmentRecord
        was = row.reminded_at.is_(None) if previous is None else row.reminded_at == previous
        async with self._begin() as s:
            result = await s.execute(
                update(row)
                .where(row.conversation_id == conversation_id, row.active.is_(True), was)
                .values(reminded_at=at)
            )
            return result.rowcount == 1

    async def idle_candidates(self) -> list[IdleCandidate]:
        """Assigned conversations where the agent has spoken, with the customer's last message time.

        Driven by the conversations' state index and `last_activity_at` (which every inbound message
        updates in its unit of work): the cost follows the assigned conversations, not the message history.
        """
        query = (
            select(
                AssignmentRecord.conversation_id,
                AssignmentRecord.agent_id,
                Conversation.last_activity_at,
                AssignmentRecord.last_agent_at,
                AssignmentRecord.reminded_at,
            )
            .join(Conversation, Conversation.id == AssignmentRecord.conversation_id)
            .where(
                Conversation.state == ConversationState.ASSIGNED.value,
                AssignmentRecord.active.is_(True),
                AssignmentRecord.last_agent_at.is_not(None),
            )
        )
        async with self._sessions() as s:
            rows = list(await s.execute(query))
        return [IdleCandidate(*row) for row in rows]

    async def add_note(self, conversation_id: int, agent_id: str, text: str) -> NoteRow:
        """Store an internal note."""
        async with self._begin() as s:
            row = NoteRecord(
                conversation_id=conversation_id,
                agent_id=conversation_pk(agent_id),
                text=text,
                created_at=utcnow(),
            )
            s.add(row)
            await s.flush()
            agent = await s.get(AgentRecord, row.agent_id)
            return NoteRow(
                row.id, conversation_id, row.agent_id, agent.name if agent else "", text, row.created_at
            )

    async def notes(self, conversation_id: int) -> list[NoteRow]:
        """A conversation's notes, oldest first."""
        async with self._sessions() as s:
            rows = await s.execute(
                select(NoteRecord, AgentRecord.name)
                .join(AgentRecord, AgentRecord.id == NoteRecord.agent_id)
                .where(NoteRecord.conversation_id == conversation_id)
                .order_by(NoteRecord.id)
            )
            return [
                NoteRow(n.id, n.conversation_id, n.agent_id, name, n.text, n.created_at) for n, name in rows
            ]

    async def add_canned(self, title: str, text: str, group: str | None, created_by: str | None) -> CannedRow:
        """Store a canned reply (`created_by` None: seeded by the deployment)."""
        async with self._begin() as s:
            row = CannedReplyRecord(
                title=title,
                text=text,
                group=group,
                created_by=conversation_pk(created_by) if created_by is not None else None,
                created_at=utcnow(),
            )
            s.add(row)
            await s.flush()
            return _canned(row)

    async def canned(self) -> list[CannedRow]:
        """Every canned reply, by id."""
        async with self._sessions() as s:
            rows = await s.scalars(select(CannedReplyRecord).order_by(CannedReplyRecord.id))
            return [_canned(r) for r in rows]

    async def update_canned(
        self, canned_id: int, *, title: str, text: str, group: str | None
    ) -> CannedRow | None:
        """Change a canned reply; None when there is no such reply."""
        async with self._begin() as s:
            row = await s.get(CannedReplyRecord, canned_id)
            if row is None:
                return None
            row.title, row.text, row.group = title, text, group
            return _canned(row)

    async def delete_canned(self, canned_id: int) -> bool:
        """Delete a canned reply; False when there was none."""
        async with self._begin() as s:
            row = await s.get(CannedReplyRecord, canned_id)
            if row is None:
                return False
            await s.delete(row)
            return True


def _canned(row: CannedReplyRecord) -> CannedRow:
    created_by = str(row.created_by) if row.created_by is not None else None
    return CannedRow(row.id, row.title, row.text, row.group, created_by)
