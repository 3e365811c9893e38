"""The SQLAlchemy implementation of `handoff.store.HandoffStore`, plus what the agent API reads.

Claims, reassignments, transfers and closes are compare-and-set UPDATEs on the conversation's state
(and the assignee) inside one transaction: on PostgreSQL the loser of a race waits on the row lock and
then matches zero rows; on SQLite `BEGIN IMMEDIATE` (engine.py) serialises the writers. The assignment
row's primary key (conversation_id) is the second fence: a conversation can never hold two assignments.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.storage.handoff_models import (
    AgentEventRecord,
    AgentRecord,
    AssignmentRecord,
    CannedReplyRecord,
    CsatRecord,
    NoteRecord,
    TicketRecord,
)
from gateway.storage.models import Conversation, Customer, MessageRecord
from gateway.storage.store import Conflict, Store, Transaction, Unit, utcnow
from handoff.agents import AgentInfo, Role
from handoff.permissions import ConversationRef
from handoff.presence import DEFAULT_HEARTBEAT_TIMEOUT, Presence, presence_from_heartbeat
from handoff.queue import AgentLoad, Priority, QueueItem, order_queue, position_of
from handoff.state import ConversationState
from handoff.store import ClaimOutcome, ClaimResult
from handoff.wrapup import CloseReason, state_after

__all__ = [
    "AgentRow",
    "EventRow",
    "HandoffDb",
    "IdleCandidate",
    "NoteRow",
    "CannedRow",
    "pending_csat",
    "session_of",
    "skip_csat",
]

OPEN_HUMAN = (ConversationState.QUEUED.value, ConversationState.ASSIGNED.value)
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
_TICKETS, _ASSIGNMENTS = TicketRecord.__table__, AssignmentRecord.__table__
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
_WAITING_TICKET = (
    select(_TICKETS.c.id)
    .select_from(_TICKETS.join(_CONVERSATIONS, _CONVERSATIONS.c.id == _TICKETS.c.conversation_id))
    .where(
        _TICKETS.c.conversation_id == bindparam("conversation_id"),
        _TICKETS.c.resolved_at.is_(None),
        _CONVERSATIONS.c.state == ConversationState.QUEUED.value,
    )
)
_INSERT_EVENT = AgentEventRecord.__table__.insert()
_LOCK_EVENTS = text("LOCK TABLE agent_events IN SHARE ROW EXCLUSIVE MODE")
_SKIP_CSAT = (
    update(_CSAT)
    .where(_CSAT.c.conversation_id == bindparam("conversation_id"), _CSAT.c.rating.is_(None))
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
    unit.db.run(_SKIP_CSAT, {"conversation_id": conversation_id})


def session_of(tx: Transaction) -> AsyncSession:
    """The session behind a pipeline Transaction, so handoff writes join the same unit of work."""
    return tx._session  # same package: Transaction is storage's own wrapper


@dataclass(frozen=True, slots=True)
class AgentRow:
    """An agent as admins see it: the pure AgentInfo plus presence bookkeeping."""

    info: AgentInfo
    declared: Presence
    presence: Presence  # effective (heartbeat-aware)
    last_heartbeat_at: datetime | None
    load: int


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


@dataclass(frozen=True, slots=True)
class IdleCandidate:
    """An assigned conversation with the timestamps the idle rules read."""

    conversation_id: int
    agent_id: int
    last_customer_at: datetime | None
    last_agent_at: datetime | None
    reminded_at: datetime | None


def _info(row: AgentRecord) -> AgentInfo:
    return AgentInfo(
        id=str(row.id),
        name=row.name,
        role=Role(row.role),
        groups=frozenset(row.groups or ()),
        max_chats=row.max_chats,
        enabled=row.enabled,
    )


def _cid(conversation_id: str | int) -> int | None:
    try:
        return int(conversation_id)
    except (TypeError, ValueError):
        return None


class HandoffDb:
    """Handoff storage on the gateway's engine (implements handoff.store.HandoffStore)."""

    def __init__(
        self,
        store: Store,
        *,
        heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT,
        default_group: str = "客服",
    ) -> None:
        self.store = store
        self.heartbeat_timeout = heartbeat_timeout
        self.default_group = default_group
        self._sessions = async_sessionmaker(store.engine, expire_on_commit=False)

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncSession]:
        async with self.store.write_lock(), self._sessions() as session, session.begin():
            try:
                yield session
            except IntegrityError as exc:
                raise Conflict(str(exc.orig)) from exc

    # --- agents -----------------------------------------------------------------------------------

    async def add_agent(
        self, name: str, *, role: Role, groups: Sequence[str], max_chats: int, token_hash: str
    ) -> AgentInfo:
        """Create an agent; Conflict when the name is taken."""
        now = utcnow()
        # Validate through the pure model first, so the CLI reports the same problems as the logic.
        AgentInfo(id="new", name=name, role=role, groups=frozenset(groups), max_chats=max_chats)
        async with self._begin() as s:
            row = AgentRecord(
                name=name,
                role=Role(role).value,
                groups=sorted(set(groups)),
                max_chats=max_chats,
                enabled=True,
                token_hash=token_hash,
                presence=Presence.OFFLINE.value,
                created_at=now,
            )
            s.add(row)
            await s.flush()
            return _info(row)

    async def set_agent_enabled(self, name: str, enabled: bool) -> AgentInfo | None:
        """Enable or disable an agent by name; None when there is no such agent."""
        async with self._begin() as s:
            row = await s.scalar(select(AgentRecord).where(AgentRecord.name == name))
            if row is None:
                return None
            row.enabled = enabled
            if not enabled:
                row.presence = Presence.OFFLINE.value
            await s.flush()
            return _info(row)

    async def list_agents(self, now: datetime | None = None) -> list[AgentRow]:
        """Every agent with presence and load, by name."""
        now = now or utcnow()
        loads = await self.load_by_agent()
        async with self._sessions() as s:
            rows = list(await s.scalars(select(AgentRecord).order_by(AgentRecord.name)))
        return [self._agent_row(r, loads.get(str(r.id), 0), now) for r in rows]

    def _agent_row(self, row: AgentRecord, load: int, now: datetime) -> AgentRow:
        declared = Presence.parse(row.presence)
        presence = presence_from_heartbeat(row.last_heartbeat_at, declared, now, self.heartbeat_timeout)
        if not row.enabled:
            presence = Presence.OFFLINE
        return AgentRow(_info(row), declared, presence, row.last_heartbeat_at, load)

    async def agent_row(self, agent_id: str) -> AgentRow | None:
        """One agent with presence and load."""
        aid = _cid(agent_id)
        if aid is None:
            return None
        loads = await self.load_by_agent([agent_id])
        async with self._sessions() as s:
            row = await s.get(AgentRecord, aid)
        return self._agent_row(row, loads.get(agent_id, 0), utcnow()) if row is not None else None

    async def get_agent(self, agent_id: str) -> AgentInfo | None:
        """The agent with this id, or None."""
        aid = _cid(agent_id)
        if aid is None:
            return None
        async with self._sessions() as s:
            row = await s.get(AgentRecord, aid)
            return _info(row) if row is not None else None

    async def agent_by_name(self, name: str) -> AgentInfo | None:
        """The agent with this display name, or None."""
        async with self._sessions() as s:
            row = await s.scalar(select(AgentRecord).where(AgentRecord.name == name))
            return _info(row) if row is not None else None

    async def agent_by_token_hash(self, token_hash: str) -> AgentInfo | None:
        """The enabled agent whose API token hashes to `token_hash`, or None."""
        async with self._sessions() as s:
            row = await s.scalar(
                select(AgentRecord).where(AgentRecord.token_hash == token_hash, AgentRecord.enabled.is_(True))
            )
            return _info(row) if row is not None else None

    async def record_heartbeat(self, agent_id: str, declared: Presence, at: datetime) -> None:
        """Store the console's heartbeat and the presence the agent chose (online/away)."""
        aid = _cid(agent_id)
        async with self._begin() as s:
            await s.execute(
                update(AgentRecord)
                .where(AgentRecord.id == aid)
                .values(presence=Presence(declared).value, last_heartbeat_at=at)
            )

    async def heartbeat(self, agent_id: str, at: datetime) -> None:
        """A ping from the console: fresh heartbeat, the declared presence unchanged (offline → online)."""
        aid = _cid(agent_id)
        async with self._begin() as s:
            row = await s.get(AgentRecord, aid)
            if row is None:
                return
            row.last_heartbeat_at = at
            if row.presence == Presence.OFFLINE.value:
                row.presence = Presence.ONLINE.value

    async def go_offline(self, agent_id: str) -> None:
        """The console disconnected: offline at once instead of after the heartbeat timeout."""
        async with self._begin() as s:
            await s.execute(
                update(AgentRecord)
                .where(AgentRecord.id == _cid(agent_id))
                .values(presence=Presence.OFFLINE.value, last_heartbeat_at=None)
            )

    async def load_by_agent(self, agent_ids: Collection[str] | None = None) -> Mapping[str, int]:
        """Open (assigned) conversations per agent; agents with none are absent (= 0)."""
        query = (
            select(AssignmentRecord.agent_id, func.count())
            .where(AssignmentRecord.active.is_(True))
            .group_by(AssignmentRecord.agent_id)
        )
        if agent_ids is not None:
            query = query.where(AssignmentRecord.agent_id.in_([int(a) for a in agent_ids]))
        async with self._sessions() as s:
            return {str(agent): int(count) for agent, count in await s.execute(query)}

    async def agent_loads(self, group: str | None = None) -> Sequence[AgentLoad]:
        """Agents (of a group, or all) with effective presence, load and last assignment time."""
        now = utcnow()
        loads = await self.load_by_agent()
        async with self._sessions() as s:
            rows = list(await s.scalars(select(AgentRecord).order_by(AgentRecord.id)))
        result = []
        for row in rows:
            if group is not None and group not in (row.groups or ()):
                continue
            agent = self._agent_row(row, loads.get(str(row.id), 0), now)
            result.append(AgentLoad(agent.info, agent.presence, agent.load, row.last_assigned_at))
        return result

    async def last_assigned(self, group: str) -> str | None:
        """Id of the agent the group's latest automatic assignment went to (the round-robin cursor)."""
        async with self._sessions() as s:
            agent_id = await s.scalar(
                select(AssignmentRecord.agent_id)
                .where(AssignmentRecord.group == group, AssignmentRecord.auto.is_(True))
                .order_by(AssignmentRecord.assigned_at.desc())
                .limit(1)
            )
        return str(agent_id) if agent_id is not None else None

    # --- conversations and the queue ---------------------------------------------------------------

    async def get_conversation(self, conversation_id: str) -> ConversationRef | None:
        """The conversation's group, state and (current or last) assignee, or None."""
        cid = _cid(conversation_id)
        if cid is None:
            return None
        # One autocommit read: asked for every customer message to a human, it must not queue for
        # SQLite's write lock as a session's BEGIN IMMEDIATE does.
        rows = await self.store.read(lambda unit: unit.db.rows(_CONVERSATION_REF, {"conversation_id": cid}))
        if not rows:
            return None
        row = rows[0]
        state = ConversationState(row["state"])
        agent = None
        if row["agent_id"] is not None and (row["active"] or state is ConversationState.CLOSED):
            agent = str(row["agent_id"])
        return ConversationRef(str(cid), row["group_name"] or self.default_group, state, agent)

    async def enqueue(self, item: QueueItem) -> int:
        """Put a conversation in `item.group`'s queue (a 留言 when is_ticket); its 1-based position."""
        cid = int(item.conversation_id)
        async with self._begin() as s:
            conv = await s.get(Conversation, cid)
            if conv is None:
                raise LookupError(f"no conversation {cid}")
            if conv.state not in (ConversationState.BOT.value, ConversationState.QUEUED.value):
                raise ValueError(f"conversation {cid} is {conv.state}; only bot or queued ones are enqueued")
            conv.state = ConversationState.QUEUED.value
            conv.group = item.group
            conv.priority = Priority.parse(item.priority).value
            conv.queued_at = conv.queued_at or item.queued_at
            if item.is_ticket:
                existing = await s.scalar(select(TicketRecord).where(TicketRecord.conversation_id == cid))
                if existing is None:
                    s.add(TicketRecord(conversation_id=cid, group=item.group, created_at=item.queued_at))
        return position_of(item.conversation_id, await self.list_queue([item.group])) or 1

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
        cid, aid = _cid(conversation_id), _cid(agent_id)
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
                .values(state=ConversationState.ASSIGNED.value)
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
        cid = _cid(conversation_id)
        now = utcnow()
        async with self._begin() as s:
            target = None
            if to_agent_id is not None:
                target = await s.scalar(
                    select(AgentRecord).where(AgentRecord.id == _cid(to_agent_id)).with_for_update()
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
                await self._assign(s, conv.id, target.id, conv.group, now, auto=False, by=by)
                target.last_assigned_at = now
                return ClaimResult(ClaimOutcome.OK, str(target.id))
            conv.state = ConversationState.QUEUED.value
            conv.group = to_group
            conv.queued_at = conv.queued_at or now  # original wait kept: requeue_for_transfer's rule
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
        cid = _cid(conversation_id)
        new_state = state_after(reason)
        async with self._begin() as s:
            values: dict[str, Any] = {"state": new_state.value, "last_activity_at": at}
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
            await s.execute(
                update(TicketRecord)
                .where(TicketRecord.conversation_id == cid, TicketRecord.resolved_at.is_(None))
                .values(resolved_at=at)
            )
            if reason.asks_csat and new_state is ConversationState.CLOSED:
                s.add(CsatRecord(conversation_id=cid, asked_at=at))
        return True

    # --- CSAT ---------------------------------------------------------------------------------------

    async def awaiting_csat(self, conversation_id: str) -> bool:
        """True when the conversation was closed with the CSAT question and has no rating yet."""
        async with self._sessions() as s:
            row = await s.get(CsatRecord, _cid(conversation_id))
        return row is not None and row.rating is None and not row.skipped

    async def pending_csat_for_key(self, conversation_key: str, now: datetime) -> int | None:
        """The conversation of this key whose CSAT answer is awaited (see `pending_csat`)."""
        return await self.store.read(lambda unit: pending_csat(unit, conversation_key, now))

    async def save_csat(self, conversation_id: str, rating: int, raw_text: str, at: datetime) -> bool:
        """Store the 1–5 rating and the words; False (nothing stored) if already rated."""
        async with self._begin() as s:
            return await self.save_csat_in(s, _cid(conversation_id), rating, raw_text, at)

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
            "answered_at": row.answered_at.isoformat() if row.answered_at else None,
        }

    # --- events -------------------------------------------------------------------------------------

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
        aid = _cid(agent_id) if agent_id is not None else None
        now = utcnow()
        if session is not None:
            row = AgentEventRecord(
                type=type_,
                conversation_id=conversation_id,
                agent_id=aid,
                group=group,
                payload=dict(payload),
                created_at=now,
            )
            session.add(row)
            await session.flush()
            return row.seq
        values = {
            "type": type_,
            "conversation_id": conversation_id,
            "agent_id": aid,
            "group_name": group,
            "payload": dict(payload),
            "created_at": now,
        }

        def insert(unit: Unit) -> int:
            if unit.db.dialect == "postgresql":
                # Commit order must equal seq order, or a console could read seq 11 before seq 10 commits
                # and skip 10 for good. Events are few and short: serialising their inserts is cheap.
                unit.db.run(_LOCK_EVENTS)
            return unit.db.insert(_INSERT_EVENT, values)

        # A unit of work, not a session: on SQLite it joins the group commit of the messages being stored
        # instead of taking the write lock for a transaction of its own (one per customer message).
        return await self.store.run(insert)

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

    # --- what the console reads ---------------------------------------------------------------------

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
                .where(AssignmentRecord.agent_id == _cid(agent_id), AssignmentRecord.active.is_(True))
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

    async def set_reminded(self, conversation_id: int, at: datetime) -> None:
        """The idle reminder went out."""
        async with self._begin() as s:
            await s.execute(
                update(AssignmentRecord)
                .where(AssignmentRecord.conversation_id == conversation_id)
                .values(reminded_at=at)
            )

    async def idle_candidates(self) -> list[IdleCandidate]:
        """Assigned conversations where the agent has spoken, with the customer's last message time."""
        last_in = (
            select(MessageRecord.conversation_id, func.max(MessageRecord.created_at).label("last_in"))
            .where(MessageRecord.direction == "in")
            .group_by(MessageRecord.conversation_id)
            .subquery()
        )
        query = (
            select(AssignmentRecord, last_in.c.last_in)
            .join(Conversation, Conversation.id == AssignmentRecord.conversation_id)
            .outerjoin(last_in, last_in.c.conversation_id == AssignmentRecord.conversation_id)
            .where(
                AssignmentRecord.active.is_(True),
                AssignmentRecord.last_agent_at.is_not(None),
                Conversation.state == ConversationState.ASSIGNED.value,
            )
        )
        async with self._sessions() as s:
            rows = list(await s.execute(query))
        result = []
        for assignment, last_customer in rows:
            if last_customer is not None and last_customer.tzinfo is None:
                last_customer = last_customer.replace(tzinfo=assignment.assigned_at.tzinfo)
            result.append(
                IdleCandidate(
                    assignment.conversation_id,
                    assignment.agent_id,
                    last_customer,
                    assignment.last_agent_at,
                    assignment.reminded_at,
                )
            )
        return result

    async def add_note(self, conversation_id: int, agent_id: str, text: str) -> NoteRow:
        """Store an internal note."""
        async with self._begin() as s:
            row = NoteRecord(
                conversation_id=conversation_id, agent_id=_cid(agent_id), text=text, created_at=utcnow()
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

    async def add_canned(self, title: str, text: str, group: str | None, created_by: str) -> CannedRow:
        """Store a canned reply."""
        async with self._begin() as s:
            row = CannedReplyRecord(
                title=title, text=text, group=group, created_by=_cid(created_by), created_at=utcnow()
            )
            s.add(row)
            await s.flush()
            return CannedRow(row.id, row.title, row.text, row.group)

    async def canned(self) -> list[CannedRow]:
        """Every canned reply, by id."""
        async with self._sessions() as s:
            rows = await s.scalars(select(CannedReplyRecord).order_by(CannedReplyRecord.id))
            return [CannedRow(r.id, r.title, r.text, r.group) for r in rows]
