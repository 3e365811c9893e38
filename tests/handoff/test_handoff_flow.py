"""A whole handoff through the pure logic and an in-memory `HandoffStore`: the contract, exercised.

The fake is the reference for the gateway's SQLAlchemy store: same outcomes, same idempotency.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from handoff import notices
from handoff.agents import AgentInfo, hash_token, new_token
from handoff.csat import parse_rating
from handoff.permissions import ConversationRef, can_claim, require
from handoff.presence import Presence, presence_from_heartbeat
from handoff.queue import (
    AgentLoad,
    AssignmentPolicy,
    QueueItem,
    is_group_staffed,
    order_queue,
    plan_assignments,
    position_of,
)
from handoff.routing import RoutingRules
from handoff.state import ConversationState as S
from handoff.state import check_transition
from handoff.store import ClaimOutcome, ClaimResult, HandoffStore
from handoff.wrapup import CloseReason, state_after

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@dataclass
class _Conv:
    group: str
    state: S = S.BOT
    agent_id: str | None = None
    item: QueueItem | None = None
    awaiting_csat: bool = False
    rating: int | None = None
    followup_sent: bool = False
    position_notes: set[tuple[int, int]] = field(default_factory=set)


class MemoryStore:
    """In-memory HandoffStore; one lock stands in for the database transaction."""

    def __init__(self, agents: Sequence[AgentInfo], token_hashes: Mapping[str, str] | None = None) -> None:
        self.agents = {a.id: a for a in agents}
        self.token_hashes = dict(token_hashes or {})
        self.convs: dict[str, _Conv] = {}
        self.heartbeats: dict[str, tuple[Presence, datetime]] = {}
        self.last_at: dict[str, datetime] = {}
        self.cursor: dict[str, str] = {}
        self.now = T0
        self._lock = asyncio.Lock()

    async def get_conversation(self, conversation_id: str) -> ConversationRef | None:
        c = self.convs.get(conversation_id)
        return None if c is None else ConversationRef(conversation_id, c.group, c.state, c.agent_id)

    async def enqueue(self, item: QueueItem, *, position: bool = True) -> int:
        async with self._lock:
            c = self.convs.setdefault(item.conversation_id, _Conv(item.group))
            if c.state is not S.QUEUED:
                check_transition(c.state, S.QUEUED)
                c.state, c.group, c.item = S.QUEUED, item.group, item
            return (position_of(item.conversation_id, self._queue()) or 0) if position else 0

    def _queue(self) -> list[QueueItem]:
        return [c.item for c in self.convs.values() if c.state is S.QUEUED and c.item is not None]

    async def list_queue(self, groups: Collection[str] | None = None) -> Sequence[QueueItem]:
        return [i for i in self._queue() if groups is None or i.group in groups]

    async def list_tickets(self, groups: Collection[str] | None = None) -> Sequence[QueueItem]:
        return [i for i in await self.list_queue(groups) if i.is_ticket]

    async def queue_position(self, conversation_id: str) -> int | None:
        return position_of(conversation_id, self._queue())

    async def queue_heads(
        self, per_group: int, *, queued_before: datetime | None = None
    ) -> Sequence[QueueItem]:
        items = [i for i in self._queue() if queued_before is None or i.queued_at <= queued_before]
        return order_queue(i for i in items if (position_of(i.conversation_id, items) or 0) <= per_group)

    async def queue_length(self, groups: Collection[str] | None = None) -> int:
        return len(await self.list_queue(groups))

    async def claim_position_note(self, conversation_id: int, position: int, at: datetime) -> bool:
        c = self.convs.get(str(conversation_id))
        if c is None or c.state is not S.QUEUED or (position, id(c.item)) in c.position_notes:
            return False
        c.position_notes.add((position, id(c.item)))
        return True

    async def waiting_ticket(self, conversation_id: int) -> bool:
        c = self.convs.get(str(conversation_id))
        return c is not None and c.state is S.QUEUED and c.item is not None and c.item.is_ticket

    async def claim_ticket_followup(self, conversation_id: int, at: datetime) -> bool:
        c = self.convs.get(str(conversation_id))
        if c is None or c.state is not S.QUEUED or c.item is None or not c.item.is_ticket:
            return False
        if c.followup_sent:
            return False
        c.followup_sent = True
        return True

    async def claim(self, conversation_id: str, agent_id: str, *, by: str | None = None) -> ClaimResult:
        await asyncio.sleep(0)  # let a competing claim run up to the lock
        async with self._lock:
            c = self.convs.get(conversation_id)
            if c is None:
                return ClaimResult(ClaimOutcome.NOT_FOUND)
            if c.state is S.ASSIGNED:
                return ClaimResult(ClaimOutcome.TAKEN, c.agent_id)
            if c.state is not S.QUEUED:
                return ClaimResult(ClaimOutcome.NOT_QUEUED)
            if self._load(agent_id) >= self.agents[agent_id].max_chats:
                return ClaimResult(ClaimOutcome.AT_CAPACITY)
            check_transition(c.state, S.ASSIGNED)
            c.state, c.agent_id = S.ASSIGNED, agent_id
            self.last_at[agent_id] = self.now
            if by is None:
                self.cursor[c.group] = agent_id
            return ClaimResult(ClaimOutcome.OK, agent_id)

    async def reassign(
        self, conversation_id: str, to_agent_id: str, *, by: str, expected_agent_id: str | None
    ) -> ClaimResult:
        async with self._lock:
            c = self.convs[conversation_id]
            if c.agent_id != expected_agent_id:
                return ClaimResult(ClaimOutcome.TAKEN, c.agent_id)
            c.state, c.agent_id = S.ASSIGNED, to_agent_id
            return ClaimResult(ClaimOutcome.OK, to_agent_id)

    async def transfer(
        self,
        conversation_id: str,
        *,
        by: str,
        expected_agent_id: str | None,
        to_group: str | None = None,
        to_agent_id: str | None = None,
    ) -> ClaimResult:
        async with self._lock:
            c = self.convs[conversation_id]
            if c.agent_id != expected_agent_id:
                return ClaimResult(ClaimOutcome.TAKEN, c.agent_id)
            if to_group is not None and c.item is not None:
                check_transition(c.state, S.QUEUED)
                c.state, c.agent_id, c.group = S.QUEUED, None, to_group
                c.item = replace(c.item, group=to_group)
                return ClaimResult(ClaimOutcome.OK)
            c.agent_id = to_agent_id
            return ClaimResult(ClaimOutcome.OK, to_agent_id)

    async def close(
        self, conversation_id: str, *, reason: CloseReason, by: str | None, tags: Sequence[str], at: datetime
    ) -> bool:
        async with self._lock:
            c = self.convs[conversation_id]
            if c.state not in (S.QUEUED, S.ASSIGNED):
                return False
            c.state = state_after(reason)
            c.awaiting_csat = reason.asks_csat
            return True

    def _load(self, agent_id: str) -> int:
        return sum(1 for c in self.convs.values() if c.state is S.ASSIGNED and c.agent_id == agent_id)

    async def load_by_agent(self, agent_ids: Collection[str] | None = None) -> Mapping[str, int]:
        return {a: self._load(a) for a in (agent_ids or self.agents)}

    async def agent_loads(self, group: str | None = None) -> Sequence[AgentLoad]:
        result = []
        for agent in self.agents.values():
            if group is not None and not agent.serves(group):
                continue
            declared, at = self.heartbeats.get(agent.id, (Presence.OFFLINE, None))
            presence = presence_from_heartbeat(at, declared, self.now)
            result.append(AgentLoad(agent, presence, self._load(agent.id), self.last_at.get(agent.id)))
        return result

    async def last_assigned(self, group: str) -> str | None:
        return self.cursor.get(group)

    async def record_heartbeat(self, agent_id: str, declared: Presence, at: datetime) -> None:
        self.heartbeats[agent_id] = (declared, at)

    async def get_agent(self, agent_id: str) -> AgentInfo | None:
        return self.agents.get(agent_id)

    async def agent_by_token_hash(self, token_hash: str) -> AgentInfo | None:
        agent = self.agents.get(self.token_hashes.get(token_hash, ""))
        return agent if agent is not None and agent.enabled else None

    async def awaiting_csat(self, conversation_id: str) -> bool:
        c = self.convs[conversation_id]
        return c.awaiting_csat and c.rating is None

    async def save_csat(self, conversation_id: str, rating: int, raw_text: str, at: datetime) -> bool:
        c = self.convs[conversation_id]
        if c.rating is not None:
            return False
        c.rating = rating
        return True


ROUTING = RoutingRules.from_config(
    {"groups": [{"name": "售前"}, {"name": "售后", "intents": ["complaint"], "priority": "high"}]}
)
WANG = AgentInfo("wang", "小王", groups=frozenset({"售后"}), max_chats=1)
LI = AgentInfo("li", "小李", groups=frozenset({"售后"}), max_chats=1)


def test_the_memory_store_satisfies_the_protocol() -> None:
    assert isinstance(MemoryStore([]), HandoffStore)


async def test_a_complaint_is_queued_served_closed_and_rated() -> None:
    store = MemoryStore([WANG])
    await store.record_heartbeat("wang", Presence.ONLINE, T0)
    await store.enqueue(QueueItem("other", "售后", "normal", T0 - timedelta(minutes=5)))  # type: ignore[arg-type]

    # Customer: "我要投诉你们" → the rule intent "complaint" fired.
    route = ROUTING.route("complaint", None, "high")
    assert is_group_staffed(route.group, await store.agent_loads(route.group))
    position = await store.enqueue(QueueItem("c1", route.group, route.priority, T0))
    assert notices.queued(position) == notices.queued(1)  # a complaint jumps the normal queue

    plan = plan_assignments(
        AssignmentPolicy.LEAST_BUSY,
        await store.list_queue(),
        await store.agent_loads(),
        T0,
        {"售后": await store.last_assigned("售后") or ""},
    )
    assert plan == [("c1", "wang")]  # wang has one slot; the older normal chat keeps waiting
    for conversation_id, agent_id in plan:
        assert (await store.claim(conversation_id, agent_id)).ok
    assert "客服 小王 为您服务" in notices.agent_joined(store.agents["wang"].name)

    assert await store.close("c1", reason=CloseReason.AGENT, by="wang", tags=("投诉",), at=T0)
    assert not await store.close("c1", reason=CloseReason.AGENT, by="wang", tags=(), at=T0)  # double click
    assert await store.awaiting_csat("c1")

    rating = parse_rating("5分")
    assert rating == 5 and await store.save_csat("c1", rating, "5分", T0)
    assert not await store.awaiting_csat("c1")
    assert not await store.save_csat("c1", 1, "1", T0)


async def test_two_agents_claiming_at_once_never_both_win() -> None:
    store = MemoryStore([WANG, LI])
    await store.enqueue(QueueItem("c1", "售后", "normal", T0))  # type: ignore[arg-type]
    ref = await store.get_conversation("c1")
    assert ref is not None
    require(can_claim(WANG, ref, 0))
    require(can_claim(LI, ref, 0))
    results = await asyncio.gather(store.claim("c1", "wang", by="wang"), store.claim("c1", "li", by="li"))
    assert sorted(r.outcome for r in results) == [ClaimOutcome.OK, ClaimOutcome.TAKEN]
    winner = next(r.agent_id for r in results if r.ok)
    assert all(r.agent_id == winner for r in results)  # the loser learns who has it


async def test_nobody_online_means_a_ticket_agents_see_first() -> None:
    store = MemoryStore([WANG])  # no heartbeat: offline
    assert not is_group_staffed("售后", await store.agent_loads("售后"))
    await store.enqueue(QueueItem("live", "售后", "normal", T0))  # type: ignore[arg-type]
    await store.enqueue(QueueItem("ticket", "售后", "normal", T0 + timedelta(minutes=1), is_ticket=True))  # type: ignore[arg-type]
    assert "留言" in notices.no_agent_online()
    assert [i.conversation_id for i in await store.list_tickets()] == ["ticket"]
    assert position_of("ticket", await store.list_queue()) == 1


async def test_a_token_finds_its_agent_only_while_enabled() -> None:
    plain, stored = new_token()
    store = MemoryStore([WANG, replace(LI, enabled=False)], {stored: "wang", hash_token("x"): "li"})
    assert await store.agent_by_token_hash(hash_token(plain)) == WANG
    assert await store.agent_by_token_hash(hash_token("x")) is None
