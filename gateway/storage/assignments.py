"""Conversations on the human side: the queue, 留言 tickets, claims, transfers and closes.

Claims, reassignments, transfers and closes are compare-and-set UPDATEs on the conversation's state
(and the assignee) inside one transaction: on PostgreSQL the loser of a race waits on the row lock and
then matches zero rows; on SQLite `BEGIN IMMEDIATE` (engine.py) serialises the writers. The assignment
row's primary key (conversation_id) is the second fence: a conversation can never hold two assignments.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, bindparam, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.storage.handoff_base import OPEN_HUMAN, STOP_BATCH, conversation_pk
from gateway.storage.qa_store import pend
from gateway.storage.queue import POSITION, QueueQueries
from gateway.storage.rows import utcnow
from gateway.storage.schema.core import Conversation, MessageRecord, UTCDateTime
from gateway.storage.schema.handoff import (
    AgentRecord,
    AssignmentRecord,
    CsatRecord,
    TicketRecord,
)
from gateway.storage.serving_key import key_for, ticket_after_enqueue, ticket_waiting, wait_start
from handoff.permissions import ConversationRef
from handoff.queue import Priority, QueueItem, order_queue
from handoff.state import ConversationState
from handoff.store import ClaimOutcome, ClaimResult
from handoff.wrapup import CloseReason, state_after

logger = logging.getLogger(__name__)

_CONVERSATIONS = Conversation.__table__
_TICKETS, _ASSIGNMENTS = TicketRecord.__table__, AssignmentRecord.__table__
# enqueue's statements: a bot or queued conversation joins a group's queue (queued_at kept once set).
_PRIORITY = bindparam("priority", type_=_CONVERSATIONS.c.priority.type)
_KEPT_QUEUED_AT = func.coalesce(
    _CONVERSATIONS.c.queued_at, bindparam("queued_at", type_=_CONVERSATIONS.c.queued_at.type)
)
_ENQUEUE = (
    update(_CONVERSATIONS)
    .where(
        _CONVERSATIONS.c.id == bindparam("conversation_id"),
        # Two comparisons, not IN: an expanding IN does not compile once for the group commit.
        or_(
            _CONVERSATIONS.c.state == ConversationState.BOT.value,
            _CONVERSATIONS.c.state == ConversationState.QUEUED.value,
        ),
    )
    .values(
        state=bindparam("state"),
        group_name=bindparam("group_name"),
        priority=_PRIORITY,
        queued_at=_KEPT_QUEUED_AT,
        # The serving-order key of the queued row, ticket included (the 留言 is inserted next, see enqueue).
        queue_key=key_for(
            None,
            _PRIORITY,
            ticket_after_enqueue(bindparam("is_ticket", type_=Boolean)),
            wait_start(_KEPT_QUEUED_AT),
        ),
    )
)
# A close leaves the conversation to 质检 when an agent had it (an assignment, ended or transferred away)
# and it has no score yet; once, whatever closes it again.
_QA_PENDING = {
    dialect: pend(
        _ASSIGNMENTS.c.conversation_id,
        _ASSIGNMENTS.c.conversation_id == bindparam("conversation_id"),
        dialect=dialect,
    )
    for dialect in ("sqlite", "postgresql")
}
_STATE_OF = select(_CONVERSATIONS.c.state).where(_CONVERSATIONS.c.id == bindparam("conversation_id"))
_TICKET_OF = select(_TICKETS.c.id).where(_TICKETS.c.conversation_id == bindparam("conversation_id"))
_INSERT_TICKET = _TICKETS.insert()
# A conversation with its (current or last) assignment, for get_conversation.
_CONVERSATION_REF = (
    select(
        _CONVERSATIONS.c.state,
        _CONVERSATIONS.c.group_name,
        _ASSIGNMENTS.c.agent_id,
        _ASSIGNMENTS.c.active,
    )
    .select_from(
        _CONVERSATIONS.outerjoin(_ASSIGNMENTS, _ASSIGNMENTS.c.conversation_id == _CONVERSATIONS.c.id)
    )
    .where(_CONVERSATIONS.c.id == bindparam("conversation_id"))
)
_MESSAGES = MessageRecord.__table__
# The same, found by one of its messages (the outbox's delivery reports): one trip instead of two.
_MESSAGE_CONVERSATION_REF = (
    select(
        _CONVERSATIONS.c.id,
        _CONVERSATIONS.c.state,
        _CONVERSATIONS.c.group_name,
        _ASSIGNMENTS.c.agent_id,
        _ASSIGNMENTS.c.active,
    )
    .select_from(
        _MESSAGES.join(_CONVERSATIONS, _CONVERSATIONS.c.id == _MESSAGES.c.conversation_id).outerjoin(
            _ASSIGNMENTS, _ASSIGNMENTS.c.conversation_id == _CONVERSATIONS.c.id
        )
    )
    .where(_MESSAGES.c.id == bindparam("message_id"))
)
_WAITING_TICKET = (
    select(_TICKETS.c.id)
    .select_from(_TICKETS.join(_CONVERSATIONS, _CONVERSATIONS.c.id == _TICKETS.c.conversation_id))
    .where(
        _TICKETS.c.conversation_id == bindparam("conversation_id"),
        _TICKETS.c.resolved_at.is_(None),
        _CONVERSATIONS.c.state == ConversationState.QUEUED.value,
    )
)


class AssignmentQueries(QueueQueries):
    """Mixed into HandoffDb (gateway/storage/handoff_store.py)."""

    async def get_conversation(self, conversation_id: str) -> ConversationRef | None:
        """The conversation's group, state and (current or last) assignee, or None."""
        cid = conversation_pk(conversation_id)
        if cid is None:
            return None
        # One autocommit read: asked for every customer message to a human, it must not queue for
        # SQLite's write lock as a session's BEGIN IMMEDIATE does.
        return await self.store.read(lambda unit: self.conversation_ref_read(unit, cid))

    def conversation_ref_read(self, unit: Any, conversation_id: int) -> ConversationRef | None:
        """`get_conversation` in a read unit of the caller's (with its other reads)."""
        rows = unit.db.rows(_CONVERSATION_REF, {"conversation_id": conversation_id})
        return self._ref(conversation_id, rows[0]) if rows else None

    async def conversation_of_message(self, message_id: int) -> ConversationRef | None:
        """The conversation of a stored message (as get_conversation), in one read; None if no such message."""
        rows = await self.store.read(
            lambda unit: unit.db.rows(_MESSAGE_CONVERSATION_REF, {"message_id": message_id})
        )
        return self._ref(rows[0]["id"], rows[0]) if rows else None

    def _ref(self, cid: int, row: Any) -> ConversationRef:
        state = ConversationState(row["state"])
        agent = None
        if row["agent_id"] is not None and (row["active"] or state is ConversationState.CLOSED):
            agent = str(row["agent_id"])
        return ConversationRef(str(cid), row["group_name"] or self.default_group, state, agent)

    async def enqueue(self, item: QueueItem, *, position: bool = True) -> int:
        """Put a conversation in `item.group`'s queue (a 留言 when is_ticket); its 1-based position (0 with
        `position=False`: not counted).

        One unit of work (update, ticket, position COUNT): on SQLite it joins the group commit instead of
        a write transaction of its own per handoff. The COUNT ranks the group's queue, which grows with it,
        on the one writer thread every message waits for: skipped when the caller names no place. Then
        nothing is returned that the caller waits for, so where `joins` takes the work (the handoff step's
        batch, gateway/handoff_service.py) it is stored with the step's other writes, one unit for all; a
        conversation that cannot be enqueued any more then ends that batch (`STOP_BATCH`) instead of
        raising ValueError.
        """
        work = self._enqueue_work(item, position)
        if not position and self.joins(lambda unit: work(unit, batched=True)):
            return 0
        counted = await self.store.run(work)
        return (counted or 1) if position else 0

    def _enqueue_work(self, item: QueueItem, position: bool) -> Callable[..., Any]:
        cid = int(item.conversation_id)
        params = {
            "conversation_id": cid,
            "state": ConversationState.QUEUED.value,
            "group_name": item.group,
            "priority": Priority.parse(item.priority).value,
            "queued_at": item.queued_at,
            "is_ticket": item.is_ticket,
        }

        def work(unit: Any, batched: bool = False) -> Any:
            if unit.db.run(_ENQUEUE, params) == 0:
                rows = unit.db.rows(_STATE_OF, {"conversation_id": cid})
                if not rows:
                    raise LookupError(f"no conversation {cid}")
                if batched:
                    logger.info("handoff conversation=%s was taken before it was routed", cid)
                    return STOP_BATCH
                raise ValueError(
                    f"conversation {cid} is {rows[0]['state']}; only bot or queued ones are enqueued"
                )
            if item.is_ticket and not unit.db.rows(_TICKET_OF, {"conversation_id": cid}):
                unit.db.insert(
                    _INSERT_TICKET,
                    {"conversation_id": cid, "group_name": item.group, "created_at": item.queued_at},
                )
            if not position:
                return 0
            rows = unit.db.rows(POSITION, {"conversation_id": cid, "default_group": self.default_group})
            return int(rows[0]["n"]) if rows else 0

        return work

    async def list_queue(self, groups: Collection[str] | None = None) -> Sequence[QueueItem]:
        """Every waiting conversation (tickets included), of the given groups or all."""
        query = (
            select(Conversation, TicketRecord.id)
            .outerjoin(
                TicketRecord,
                (TicketRecord.conversation_id == Conversation.id) & TicketRecord.resolved_at.is_(None),
            )
            .where(Conversation.state == ConversationState.QUEUED.value)
        )
        async with self._sessions() as s:
            rows = list(await s.execute(query))
        items = [
            QueueItem(
                str(conv.id),
                conv.group or self.default_group,
                Priority.parse(conv.priority),
                conv.queued_at or conv.opened_at,
                ticket_id is not None,
            )
            for conv, ticket_id in rows
        ]
        if groups is not None:
            wanted = set(groups)
            items = [i for i in items if i.group in wanted]
        return order_queue(items)

    async def list_tickets(self, groups: Collection[str] | None = None) -> Sequence[QueueItem]:
        """The 留言 tickets still waiting, of the given groups or all."""
        return [i for i in await self.list_queue(groups) if i.is_ticket]

    async def is_waiting_ticket(self, conversation_id: int) -> bool:
        """True when the conversation is a 留言 still waiting: queued, with an unresolved ticket.

        The same test as membership in `list_tickets`, as one lookup on the ticket's unique
        conversation_id instead of reading the whole queue.
        """
        params = {"conversation_id": conversation_id}
        return bool(await self.store.read(lambda unit: unit.db.rows(_WAITING_TICKET, params)))

    async def claim(self, conversation_id: str, agent_id: str, *, by: str | None = None) -> ClaimResult:
        """Atomically assign a queued conversation to `agent_id` (by None = the automatic assigner)."""
        cid, aid = conversation_pk(conversation_id), conversation_pk(agent_id)
        now = utcnow()
        async with self._begin() as s:
            # Lock the agent first: two claims by one agent must not both pass the capacity check.
            agent = await s.scalar(select(AgentRecord).where(AgentRecord.id == aid).with_for_update())
            conv = await s.get(Conversation, cid) if cid is not None else None
            if agent is None or conv is None:
                return ClaimResult(ClaimOutcome.NOT_FOUND)
            if conv.state == ConversationState.ASSIGNED.value:
                return ClaimResult(ClaimOutcome.TAKEN, await self._holder(s, cid))
            if conv.state != ConversationState.QUEUED.value:
                return ClaimResult(ClaimOutcome.NOT_QUEUED)
            if await self._load(s, aid) >= agent.max_chats:
                return ClaimResult(ClaimOutcome.AT_CAPACITY, None)
            won = await s.execute(
                update(Conversation)
                .where(Conversation.id == cid, Conversation.state == ConversationState.QUEUED.value)
                .values(state=ConversationState.ASSIGNED.value, queue_key=None)
                .execution_options(synchronize_session=False)
            )
            if won.rowcount != 1:  # someone committed a claim between our read and our write
                return ClaimResult(ClaimOutcome.TAKEN, await self._holder(s, cid))
            await self._assign(s, cid, aid, conv.group, now, auto=by is None, by=by)
            agent.last_assigned_at = now
        return ClaimResult(ClaimOutcome.OK, str(aid))

    async def _holder(self, s: AsyncSession, cid: int) -> str | None:
        agent_id = await s.scalar(
            select(AssignmentRecord.agent_id).where(
                AssignmentRecord.conversation_id == cid, AssignmentRecord.active.is_(True)
            )
        )
        return str(agent_id) if agent_id is not None else None

    async def _load(self, s: AsyncSession, aid: int) -> int:
        count = await s.scalar(
            select(func.count())
            .select_from(AssignmentRecord)
            .where(AssignmentRecord.agent_id == aid, AssignmentRecord.active.is_(True))
        )
        return int(count or 0)

    async def _assign(
        self,
        s: AsyncSession,
        cid: int,
        aid: int,
        group: str | None,
        now: datetime,
        *,
        auto: bool,
        by: str | None,
    ) -> None:
        # Only reached after winning the compare-and-set on the conversation, so updating the one row
        # (or inserting it, guarded by the primary key) cannot hand the conversation out twice.
        row = await s.get(AssignmentRecord, cid)
        if row is None:
            s.add(
                AssignmentRecord(
                    conversation_id=cid,
                    agent_id=aid,
                    active=True,
                    group=group,
                    auto=auto,
                    assigned_by=by,
                    assigned_at=now,
                )
            )
        else:
            row.agent_id, row.active, row.group, row.auto, row.assigned_by = aid, True, group, auto, by
            row.assigned_at, row.first_response_at, row.last_agent_at = now, None, None
            row.reminded_at, row.tags, row.ended_at = None, None, None
        await s.execute(
            update(TicketRecord)
            .where(TicketRecord.conversation_id == cid, TicketRecord.resolved_at.is_(None))
            .values(resolved_at=now)
        )
        await s.flush()

    async def _locked_conversation(self, s: AsyncSession, cid: int | None) -> Conversation | None:
        if cid is None:
            return None
        return await s.scalar(select(Conversation).where(Conversation.id == cid).with_for_update())

    async def reassign(
        self, conversation_id: str, to_agent_id: str, *, by: str, expected_agent_id: str | None
    ) -> ClaimResult:
        """Supervisor move: assign to `to_agent_id` only if the assignee is still `expected_agent_id`."""
        return await self.transfer(
            conversation_id, by=by, expected_agent_id=expected_agent_id, to_agent_id=to_agent_id
        )

    async def held_since(self, cutoff: datetime) -> list[tuple[int, str, str | None, tuple[Any, ...]]]:
        """Active assignments made before `cutoff` whose agent showed no heartbeat and sent no reply
        since: (conversation id, agent id, group, (heartbeat, assigned, last reply)). Bounded by the
        agents' capacity, whatever the history."""
        quiet = (AgentRecord.last_heartbeat_at.is_(None)) | (AgentRecord.last_heartbeat_at < cutoff)
        query = (
            select(
                AssignmentRecord.conversation_id,
                AssignmentRecord.agent_id,
                AssignmentRecord.group,
                AgentRecord.last_heartbeat_at,
                AssignmentRecord.assigned_at,
                AssignmentRecord.last_agent_at,
            )
            .join(AgentRecord, AgentRecord.id == AssignmentRecord.agent_id)
            .where(AssignmentRecord.active.is_(True), AssignmentRecord.assigned_at < cutoff, quiet)
            .order_by(AssignmentRecord.assigned_at)
        )
        async with self._sessions() as s:
            rows = await s.execute(query)
            return [(int(r[0]), str(r[1]), r[2], (r[3], r[4], r[5])) for r in rows]

    async def transfer(
        self,
        conversation_id: str,
        *,
        by: str,
        expected_agent_id: str | None,
        to_group: str | None = None,
        to_agent_id: str | None = None,
    ) -> ClaimResult:
        """Hand to another group (queued there, queued_at kept) or straight to an agent, compare-and-set."""
        if (to_group is None) == (to_agent_id is None):
            raise ValueError("transfer needs exactly one of to_group, to_agent_id")
        cid = conversation_pk(conversation_id)
        now = utcnow()
        async with self._begin() as s:
            target = None
            if to_agent_id is not None:
                target = await s.scalar(
                    select(AgentRecord)
                    .where(AgentRecord.id == conversation_pk(to_agent_id))
                    .with_for_update()
                )
                if target is None:
                    return ClaimResult(ClaimOutcome.NOT_FOUND)
            conv = await self._locked_conversation(s, cid)
            if conv is None:
                return ClaimResult(ClaimOutcome.NOT_FOUND)
            if conv.state not in OPEN_HUMAN:
                return ClaimResult(ClaimOutcome.NOT_QUEUED)
            holder = await self._holder(s, conv.id)
            if holder != expected_agent_id:
                return ClaimResult(ClaimOutcome.TAKEN, holder)
            if target is not None:
                if await self._load(s, target.id) >= target.max_chats:
                    return ClaimResult(ClaimOutcome.AT_CAPACITY, holder)
                if conv.state == ConversationState.QUEUED.value:
                    conv.queued_at = conv.queued_at or now
                conv.state = ConversationState.ASSIGNED.value
                conv.queue_key = None
                await self._assign(s, conv.id, target.id, conv.group, now, auto=False, by=by)
                target.last_assigned_at = now
                return ClaimResult(ClaimOutcome.OK, str(target.id))
            conv.state = ConversationState.QUEUED.value
            conv.group = to_group
            conv.queued_at = conv.queued_at or now  # original wait kept: requeue_for_transfer's rule
            # Its key in the new group's queue: same priority and wait; a 留言 still waiting stays one.
            conv.queue_key = key_for(
                None,
                literal(conv.priority),
                ticket_waiting(),
                wait_start(literal(conv.queued_at, UTCDateTime())),
            )
            await s.execute(
                update(AssignmentRecord)
                .where(AssignmentRecord.conversation_id == conv.id)
                .values(active=False, ended_at=now)
            )
        return ClaimResult(ClaimOutcome.OK, None)

    async def close(
        self,
        conversation_id: str,
        *,
        reason: CloseReason,
        by: str | None,
        tags: Sequence[str],
        at: datetime,
    ) -> bool:
        """End the human part (closed, or bot for BACK_TO_BOT) with wrap-up tags; False if already ended."""
        cid = conversation_pk(conversation_id)
        new_state = state_after(reason)
        async with self._begin() as s:
            values: dict[str, Any] = {"state": new_state.value, "last_activity_at": at, "queue_key": None}
            if new_state is ConversationState.CLOSED:
                values.update(closed_at=at, closed_reason=reason.value)
            else:
                values.update(miss_streak=0)
            done = await s.execute(
                update(Conversation)
                .where(Conversation.id == cid, Conversation.state.in_(OPEN_HUMAN))
                .values(**values)
                .execution_options(synchronize_session=False)
            )
            if done.rowcount != 1:
                return False
            await s.execute(
                update(AssignmentRecord)
                .where(AssignmentRecord.conversation_id == cid, AssignmentRecord.active.is_(True))
                .values(active=False, ended_at=at, tags=list(tags))
            )
            await s.execute(_QA_PENDING[s.bind.dialect.name], {"conversation_id": cid})
            await s.execute(
                update(TicketRecord)
                .where(TicketRecord.conversation_id == cid, TicketRecord.resolved_at.is_(None))
                .values(resolved_at=at)
            )
            if reason.asks_csat and new_state is ConversationState.CLOSED:
                s.add(CsatRecord(conversation_id=cid, asked_at=at))
        return True
