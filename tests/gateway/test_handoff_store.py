"""The handoff storage on real databases (SQLite and PostgreSQL): atomic claims, transfers, closes, CSAT."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from gateway.storage import Unit
from gateway.storage.handoff_store import HandoffDb
from handoff.agents import Role, new_token
from handoff.presence import Presence
from handoff.queue import Priority, QueueItem
from handoff.state import ConversationState
from handoff.store import ClaimOutcome, HandoffStore
from handoff.wrapup import CloseReason


async def queued_conversation(
    db: HandoffDb, user: str, *, group: str = "售后", priority: str = "normal"
) -> str:
    now = datetime.now(UTC)

    def create(unit: Unit) -> int:
        customer = unit.upsert_customer("web", "default", user, user, now)
        conv = unit.create_conversation(
            customer_id=customer,
            channel="web",
            account="default",
            conversation_key=f"web:default:{user}",
            now=now,
            kb_version=None,
        )
        unit.update_conversation(
            conv.id, state=ConversationState.QUEUED, queued_at=now, group=group, priority=priority
        )
        return conv.id

    return str(await db.store.run(create))


async def agent(
    db: HandoffDb, name: str, groups: tuple[str, ...] = ("售后",), max_chats: int = 5, role: Role = Role.AGENT
) -> str:
    info = await db.add_agent(name, role=role, groups=groups, max_chats=max_chats, token_hash=new_token()[1])
    return info.id


async def test_it_is_a_handoff_store(db: HandoffDb) -> None:
    assert isinstance(db, HandoffStore)


async def test_of_many_simultaneous_claims_exactly_one_wins(db: HandoffDb) -> None:
    cid = await queued_conversation(db, "u1")
    agents = [await agent(db, f"a{i}") for i in range(8)]
    results = await asyncio.gather(*(db.claim(cid, a, by=a) for a in agents))
    winners = [r for r in results if r.ok]
    assert len(winners) == 1
    assert all(
        r.outcome is ClaimOutcome.TAKEN and r.agent_id == winners[0].agent_id for r in results if not r.ok
    )
    ref = await db.get_conversation(cid)
    assert (
        ref is not None
        and ref.state is ConversationState.ASSIGNED
        and ref.assigned_agent_id == winners[0].agent_id
    )
    assert await db.load_by_agent() == {winners[0].agent_id: 1}


async def test_one_agent_claiming_many_at_once_stays_within_capacity(db: HandoffDb) -> None:
    cids = [await queued_conversation(db, f"c{i}") for i in range(5)]
    a = await agent(db, "busy", max_chats=2)
    results = await asyncio.gather(*(db.claim(c, a, by=a) for c in cids))
    assert sum(r.ok for r in results) == 2
    assert {r.outcome for r in results if not r.ok} == {ClaimOutcome.AT_CAPACITY}


async def test_transfer_to_a_group_requeues_with_the_original_wait(db: HandoffDb) -> None:
    cid = await queued_conversation(db, "t1")
    before = (await db.list_queue())[0].queued_at
    a = await agent(db, "x")
    assert (await db.claim(cid, a)).ok
    # A stale expectation (somebody else holds it) is refused: compare-and-set.
    assert (
        await db.transfer(cid, by=a, expected_agent_id="999", to_group="售前")
    ).outcome is ClaimOutcome.TAKEN
    assert (await db.transfer(cid, by=a, expected_agent_id=a, to_group="售前")).ok
    (item,) = await db.list_queue(["售前"])
    assert item.conversation_id == cid and item.queued_at == before
    assert await db.load_by_agent() == {}


async def test_close_is_idempotent_and_asks_csat_once(db: HandoffDb) -> None:
    cid = await queued_conversation(db, "z1")
    a = await agent(db, "y")
    await db.claim(cid, a)
    now = datetime.now(UTC)
    assert await db.close(cid, reason=CloseReason.AGENT, by=a, tags=["退货"], at=now) is True
    assert await db.close(cid, reason=CloseReason.AGENT, by=a, tags=[], at=now) is False
    assert await db.awaiting_csat(cid)
    assert await db.pending_csat_for_key("web:default:z1", now) == int(cid)
    assert await db.save_csat(cid, 5, "5", now) is True
    assert await db.save_csat(cid, 1, "1", now) is False
    assert (await db.csat(int(cid)))["rating"] == 5  # type: ignore[index]
    assert not await db.awaiting_csat(cid)


async def test_tickets_come_first_and_are_resolved_by_a_claim(db: HandoffDb) -> None:
    live = await queued_conversation(db, "live")
    ticket = await queued_conversation(db, "ticket")
    await db.enqueue(QueueItem(ticket, "售后", Priority.NORMAL, datetime.now(UTC), is_ticket=True))
    assert [i.conversation_id for i in await db.list_queue()] == [ticket, live]
    a = await agent(db, "t")
    assert (await db.claim(ticket, a)).ok
    assert await db.list_tickets() == []


async def test_a_waiting_ticket_is_found_by_its_conversation(db: HandoffDb) -> None:
    live = await queued_conversation(db, "live2")
    ticket = await queued_conversation(db, "ticket2")
    await db.enqueue(QueueItem(ticket, "售后", Priority.NORMAL, datetime.now(UTC), is_ticket=True))
    assert not await db.is_waiting_ticket(int(live))  # queued, but someone was online: not a 留言
    assert await db.is_waiting_ticket(int(ticket))
    assert await db.is_waiting_ticket(999_999) is False
    a = await agent(db, "t2")
    assert (await db.claim(ticket, a)).ok  # a claim resolves the ticket
    assert not await db.is_waiting_ticket(int(ticket))
    assert [i.conversation_id for i in await db.list_tickets()] == []


async def test_presence_follows_the_heartbeat(db: HandoffDb) -> None:
    a = await agent(db, "p")
    (load,) = await db.agent_loads("售后")
    assert load.presence is Presence.OFFLINE
    await db.record_heartbeat(a, Presence.ONLINE, datetime.now(UTC))
    (load,) = await db.agent_loads("售后")
    assert load.presence is Presence.ONLINE
    await db.record_heartbeat(a, Presence.ONLINE, datetime.now(UTC) - timedelta(minutes=5))
    (load,) = await db.agent_loads("售后")
    assert load.presence is Presence.OFFLINE


async def test_events_are_numbered_in_order(db: HandoffDb) -> None:
    first = await db.add_event("conversation.queued", {"a": 1}, group="售后")
    second = await db.add_event("message.customer", {"b": 2}, agent_id="1")
    assert second > first
    assert [e.seq for e in await db.events_after(first)] == [second]
    assert await db.last_seq() == second


async def test_events_keep_their_audience_and_payload(db: HandoffDb) -> None:
    cid = int(await queued_conversation(db, "ev"))
    before = datetime.now(UTC)
    seqs = await asyncio.gather(
        *(
            db.add_event("message.customer", {"text": f"第{i}条"}, conversation_id=cid, group="售后")
            for i in range(5)
        )
    )
    assert len(set(seqs)) == 5
    to_agent = await db.add_event(
        "conversation.assigned", {"agent_id": "7"}, conversation_id=cid, agent_id="7"
    )
    events = await db.events_after(0)
    assert [e.seq for e in events] == sorted(seqs) + [to_agent]
    assert sorted(e.payload["text"] for e in events[:5]) == [f"第{i}条" for i in range(5)]
    last = events[-1]
    assert (last.type, last.conversation_id, last.agent_id, last.group) == (
        "conversation.assigned",
        cid,
        7,
        None,
    )
    assert dict(last.payload) == {"agent_id": "7"}
    assert last.created_at >= before and last.created_at.tzinfo is not None


async def test_the_ticket_followup_is_claimed_once_per_waiting_ticket(db: HandoffDb) -> None:
    live = await queued_conversation(db, "live3")
    ticket = await queued_conversation(db, "ticket3")
    await db.enqueue(QueueItem(ticket, "售后", Priority.NORMAL, datetime.now(UTC), is_ticket=True))
    now = datetime.now(UTC)
    assert await db.claim_ticket_followup(int(live), now) is False  # no 留言 waits there
    assert await db.claim_ticket_followup(999_999, now) is False
    claims = await asyncio.gather(*(db.claim_ticket_followup(int(ticket), now) for _ in range(4)))
    assert sorted(claims) == [False, False, False, True]  # however they race: one confirmation
    assert await db.claim_ticket_followup(int(ticket), now) is False
    a = await agent(db, "t3")
    assert (await db.claim(ticket, a)).ok
    assert await db.claim_ticket_followup(int(ticket), now) is False  # resolved: nothing to confirm
