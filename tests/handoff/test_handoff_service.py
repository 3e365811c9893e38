"""handoff.service.HandoffFlow over the in-memory store, a recording notifier and event log, a fake clock."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from handoff import notices, waiting
from handoff.agents import AgentInfo
from handoff.hours import BusinessHours, GroupHours
from handoff.presence import Presence
from handoff.queue import AssignmentPolicy
from handoff.service import CATCH_UP_GRACE, NOTICE_DELAY, POSITION_WINDOW, HandoffFlow
from handoff.state import ConversationState
from handoff.store import QueuedConversation
from tests.handoff.test_handoff_flow import ROUTING, T0, WANG, MemoryStore


@dataclass
class FakeClock:
    at: datetime = T0

    def now(self) -> datetime:
        return self.at

    def advance(self, by: timedelta) -> None:
        self.at += by


@dataclass
class Told:
    """Notifier and EventLog: what the customer was told (with the delay) and what the consoles saw."""

    texts: list[tuple[int, str, timedelta | None]] = field(default_factory=list)
    events: list[tuple[str, int | None]] = field(default_factory=list)
    while_queued: set[str] = field(default_factory=set)  # texts to be stored only while still queued

    async def notify(
        self, conversation_id: int, text: str, *, delay: timedelta | None = None, while_queued: bool = False
    ) -> int:
        self.texts.append((conversation_id, text, delay))
        if while_queued:
            self.while_queued.add(text)
        return len(self.texts)

    async def publish(
        self,
        type_: str,
        payload: Mapping[str, Any],
        *,
        conversation_id: int | None = None,
        agent_id: str | None = None,
        group: str | None = None,
    ) -> int:
        self.events.append((type_, conversation_id))
        return len(self.events)

    def to(self, conversation_id: int) -> list[str]:
        return [text for cid, text, _ in self.texts if cid == conversation_id]


def flow(store: MemoryStore, told: Told, clock: FakeClock, policy: AssignmentPolicy) -> HandoffFlow:
    return HandoffFlow(
        store,
        told,
        told,
        clock,
        rules=ROUTING,
        policy=policy,
        hours=GroupHours(BusinessHours.always_open()),
        groups_configured=True,
    )


def complaint(cid: int, at: datetime) -> QueuedConversation:
    return QueuedConversation(cid, ConversationState.QUEUED, "complaint", None, "high", at)


async def test_nobody_online_makes_a_ticket_and_confirms_additions_once() -> None:
    store, told, clock = MemoryStore([WANG]), Told(), FakeClock()
    handoff = flow(store, told, clock, AssignmentPolicy.LEAST_BUSY)
    assert await handoff.on_queued(complaint(1, clock.now())) == 0  # a 留言: no place counted
    assert told.to(1) == [notices.no_agent_online(now=clock.now())]
    assert told.texts[0][2] == NOTICE_DELAY  # due after the bot's own reply, not slept for
    assert told.while_queued == {notices.no_agent_online(now=clock.now())}  # not after an assignment
    await asyncio.gather(
        *(handoff.on_customer_message(1, {"text": f"补充 {n}", "message_id": n}) for n in range(3))
    )
    # Every addition is acknowledged; the full confirmation only once, however the messages race.
    acks = told.to(1)[1:]
    assert len(acks) == 3 and acks.count(notices.ticket_followup()) == 1
    assert set(acks) - {notices.ticket_followup()} <= {waiting.ticket_ack(n) for n in range(3)}
    await handoff.on_customer_message(1, {"text": "怎么开发票", "message_id": 9}, answered=True)
    assert len(told.to(1)) == 4  # the bot answered it: no acknowledgement on top
    assert [e for e, _ in told.events].count("message.customer") == 4


async def test_an_online_agent_gets_the_head_of_the_queue_and_positions_move() -> None:
    store, told, clock = MemoryStore([WANG]), Told(), FakeClock()
    handoff = flow(store, told, clock, AssignmentPolicy.MANUAL)
    await store.record_heartbeat(WANG.id, Presence.ONLINE, clock.now())
    for cid in (1, 2, 3):
        clock.advance(timedelta(seconds=1))
        assert await handoff.on_queued(complaint(cid, clock.now())) == cid
    assert told.to(3) == [notices.queued(3)]
    before = await handoff.snapshot()
    await store.claim("1", WANG.id, by=WANG.id)
    await handoff.update_positions(before)
    assert told.to(2)[-1] == notices.position_update(1)
    assert told.to(3)[-1] == notices.position_update(2)
    # A place in the queue is told only while the conversation is still queued when it is stored: an
    # assignment made elsewhere meanwhile (another request's assigner) makes it wrong.
    assert {notices.queued(3), notices.position_update(1), notices.position_update(2)} <= told.while_queued


async def test_the_catch_up_leaves_young_handoffs_to_their_own_routing() -> None:
    store, told, clock = MemoryStore([WANG]), Told(), FakeClock()
    manual = flow(store, told, clock, AssignmentPolicy.MANUAL)
    await store.record_heartbeat(WANG.id, Presence.ONLINE, clock.now())
    await manual.on_queued(complaint(7, clock.now()))
    auto = flow(store, told, clock, AssignmentPolicy.LEAST_BUSY)
    assert await auto.assign_waiting(catch_up=True) == 0  # queued just now: its on_queued assigns it
    clock.advance(CATCH_UP_GRACE)
    await store.record_heartbeat(WANG.id, Presence.ONLINE, clock.now())
    assert await auto.assign_waiting(catch_up=True) == 1
    assert told.to(7)[-1] == notices.agent_joined(WANG.name)


async def test_only_the_front_of_a_long_queue_hears_that_it_moved() -> None:
    agent = AgentInfo("zhou", "小周", groups=frozenset({"售后"}), max_chats=50)
    store, told, clock = MemoryStore([agent]), Told(), FakeClock()
    handoff = flow(store, told, clock, AssignmentPolicy.MANUAL)
    await store.record_heartbeat(agent.id, Presence.ONLINE, clock.now())
    count = POSITION_WINDOW + 5
    for cid in range(1, count + 1):
        clock.advance(timedelta(seconds=1))
        await handoff.on_queued(complaint(cid, clock.now()))
    before = await handoff.snapshot()
    assert len(before) == POSITION_WINDOW
    await store.claim("1", agent.id, by=agent.id)
    told.texts.clear()
    await handoff.update_positions(before)
    assert sorted(cid for cid, _, _ in told.texts) == list(range(2, POSITION_WINDOW + 1))
