"""A handoff and a queued customer's message cost the same SQL statements at queue 10 as at queue 1,000.

Counted around the webhook call (tests/gateway/sql_sent.py: SQLAlchemy's `before_cursor_execute`, and on
PostgreSQL asyncpg's query logger), on SQLite and PostgreSQL. On SQLite the message's own unit of work runs on the group commit's raw connection and is not
counted; everything the handoff adds (routing, enqueue, position, notices, events) goes through the engine.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, insert, select

from gateway.message import utcnow
from gateway.storage.schema.core import Conversation, Customer
from gateway.storage.schema.handoff import TicketRecord
from gateway.storage.serving_key import rekey
from handoff import notices
from tests.gateway.sql_sent import sql_sent
from tests.gateway.test_handoff_flow import Kefu, start, wechat_api  # noqa: F401 (fixtures)

_filler = itertools.count(1)
# Upper bounds of (handoff message, queued customer's next message) statements, per dialect and presence.
# SQLite counts only what runs outside the group commit (routing reads, the agents' loads, the shifts); the
# enqueue, the notices and the events ride the group commit's trip. PostgreSQL counts everything, the
# message's own unit of work included. Before the handoff work moved into units of work: SQLite (23, 9)
# nobody online, (19, 3) agent online; PostgreSQL (28, 15) and (25, 9) (the queued customer's message has
# since gained the 留言 check and, queued for an agent, an acknowledgement with its place). Then (9, 4), (7, 4),
# (24, 14), (21, 13), until the handoff stopped reading a message page no routing needed, stored its
# notices and events as one unit, and the 留言 follow-up's claim became one INSERT … SELECT; then SQLite
# measured (6, 3) and (4, 4) under bounds of (8, 3) and (6, 4), until the 留言's shifts read became a
# one-statement autocommit read (no BEGIN): (5, 3).
BOUNDS = {
    ("sqlite", False): (5, 3),
    ("sqlite", True): (4, 4),
    ("postgresql", False): (22, 12),
    ("postgresql", True): (20, 12),
}


async def fill_queue(kefu: Kefu, count: int, *, tickets: bool) -> None:
    """`count` complaints already waiting in 售后 (queued earlier, so a newcomer goes behind them)."""
    engine = kefu.runtime.store.engine
    past = utcnow() - timedelta(minutes=30)
    numbers = [next(_filler) for _ in range(count)]
    async with engine.begin() as conn:
        await conn.execute(
            insert(Customer.__table__),
            [
                {
                    "channel": "wechat",
                    "account": "shop",
                    "user_id": f"oFill{n}",
                    "created_at": past,
                    "last_seen_at": past,
                }
                for n in numbers
            ],
        )
        ids = dict(
            (
                await conn.execute(
                    select(Customer.user_id, Customer.id).where(Customer.user_id.like("oFill%"))
                )
            ).all()
        )
        rows = [
            {
                "customer_id": ids[f"oFill{n}"],
                "channel": "wechat",
                "account": "shop",
                "conversation_key": f"wechat:shop:oFill{n}",
                "state": "queued",
                "priority": "high",
                "handoff_reason": "complaint",
                "group_name": "售后",
                "miss_streak": 0,
                "opened_at": past,
                "last_activity_at": past,
                "queued_at": past + timedelta(milliseconds=n),
            }
            for n in numbers
        ]
        await conn.execute(insert(Conversation.__table__), rows)
        if tickets:
            keys = [r["conversation_key"] for r in rows]
            conv_ids = (
                await conn.execute(select(Conversation.id).where(Conversation.conversation_key.in_(keys)))
            ).scalars()
            await conn.execute(
                insert(TicketRecord),
                [{"conversation_id": c, "group_name": "售后", "created_at": past} for c in conv_ids],
            )
        # Bulk inserts bypass kefu's statements, which set the serving-order key: set it as they would.
        await conn.execute(
            rekey().where(Conversation.conversation_key.in_([r["conversation_key"] for r in rows]))
        )


@asynccontextmanager
async def counting(kefu: Kefu) -> AsyncIterator[list[str]]:
    """Statements executed (tests/gateway/sql_sent.py, transaction control left out), and a "load" entry per
    conversation built as an ORM object (reading the whole queue that way was the O(queue) cost)."""
    seen: list[str] = []

    def loaded(target: Any, context: Any) -> None:
        seen.append("load")

    event.listen(Conversation, "load", loaded)
    try:
        async with sql_sent(kefu.runtime.store) as sent:
            yield seen
        seen.extend(sent["statements"])
    finally:
        event.remove(Conversation, "load", loaded)


@contextmanager
def counting_units(kefu: Kefu) -> Iterator[list[str]]:
    """Units of work submitted to the store (on SQLite each is a place in a group-commit trip, with its
    own future and savepoint; the statement listener above does not see them), and "read" for each
    read-only trip (`Store.read`)."""
    store = kefu.runtime.store
    real = store.run
    seen: list[str] = []

    async def run(work: Any, **options: Any) -> Any:
        seen.append(getattr(getattr(work, "func", work), "__qualname__", "unit"))  # func: a partial
        return await real(work, **options)

    async def read(work: Any) -> Any:
        seen.append("read")
        return await real_read(work)

    real_read = store.read
    store.run = run  # type: ignore[method-assign]
    store.read = read  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        del store.run, store.read


async def measure(kefu: Kefu, openid: str) -> tuple[int, int]:
    """Statements (and ORM loads) of the handoff message, then of a queued customer's next message."""
    async with counting(kefu) as handoff:
        await kefu.say("我要投诉", openid)
    async with counting(kefu) as follow_up:
        assert await kefu.say("还有一件事", openid) == ""  # queued: the bot stays quiet
    return len(handoff), len(follow_up)


@pytest.mark.parametrize("online", [False, True], ids=["nobody-online", "agent-online"])
async def test_handoff_statements_do_not_grow_with_the_queue(start: Any, online: bool) -> None:  # noqa: F811
    # The longest passive-reply deadline: a reply that missed it would add outbox statements to one count.
    kefu = await start(
        {"pipeline": {"wechat_reply_deadline_s": 4.9}}, assignment="manual", job_interval_s=3600
    )
    if online:
        agent = await kefu.agent("小马", "售后")
        await agent.call("POST", "/me/presence", json={"presence": "online"})
    await kefu.runtime.outbox.stop()  # its polling would add statements to the count
    await fill_queue(kefu, 10, tickets=not online)
    if online:  # a heartbeat right before each measurement: a slow machine must not let presence expire
        await agent.call("POST", "/me/presence", json={"presence": "online"})
    small = await measure(kefu, "oCount10")
    await fill_queue(kefu, 990, tickets=not online)
    if online:
        await agent.call("POST", "/me/presence", json={"presence": "online"})
    large = await measure(kefu, "oCount1000")
    assert small == large, (small, large)
    assert small[0] > 0 and small[1] > 0
    bound = BOUNDS[(kefu.runtime.store.engine.dialect.name, online)]
    assert small[0] <= bound[0] and small[1] <= bound[1], (small, bound)
    # The newcomer is behind the 1,000 earlier complaints: positions were counted, not guessed.
    assert await kefu.runtime.handoff.db.queue_length() == 1002
    conv = await kefu.conversation("oCount1000")
    assert await kefu.runtime.handoff.db.queue_position(str(conv.id)) == 1002
    texts = [m.text for m in await kefu.runtime.store.messages(conv.id) if m.sender == "system"]
    if online:
        assert notices.queued(1002) in texts
    else:
        assert texts.count(notices.ticket_followup()) == 1


async def test_the_queue_api_reads_one_page_whatever_the_queue_length(start: Any) -> None:  # noqa: F811
    kefu = await start(assignment="manual", job_interval_s=3600)
    agent = await kefu.agent("小牛", "售后")
    await kefu.runtime.outbox.stop()  # its polling would add statements to the count
    await fill_queue(kefu, 10, tickets=False)
    async with counting(kefu) as small:
        first = await agent.call("GET", "/queue?limit=4")
    await fill_queue(kefu, 990, tickets=False)
    async with counting(kefu) as large:
        page = await agent.call("GET", "/queue?limit=4")
    assert len(small) == len(large)
    assert [i["position"] for i in first["queue"]] == [1, 2, 3, 4] == [i["position"] for i in page["queue"]]
    assert [i["conversation_id"] for i in page["queue"]] == [i["conversation_id"] for i in first["queue"]]
    assert page["queue"][0]["customer"]["user_id"].startswith("oFill")
    following = await agent.call("GET", f"/queue?limit=4&cursor={page['next_cursor']}")
    assert [i["position"] for i in following["queue"]] == [5, 6, 7, 8]
    everything = await agent.call("GET", "/queue?limit=500")
    assert [i["position"] for i in everything["queue"]] == list(range(1, 501))
    assert everything["next_cursor"] is not None and everything["total"] == 1000
    for bad in ("limit=0", "limit=501", "limit=x", "cursor=nonsense"):
        await agent.call("GET", f"/queue?{bad}", expect=400)


def _units_and_reads(seen: list[str]) -> tuple[int, int]:
    reads = seen.count("read")
    return len(seen) - reads, reads


@pytest.mark.parametrize("online", [False, True], ids=["nobody-online", "agent-online"])
async def test_a_handoff_stores_its_notices_and_events_in_one_unit(start: Any, online: bool) -> None:  # noqa: F811
    kefu = await start(
        {"pipeline": {"wechat_reply_deadline_s": 4.9}}, assignment="manual", job_interval_s=3600
    )
    if online:
        agent = await kefu.agent("小马", "售后")
    await kefu.runtime.outbox.stop()
    counts = []
    # (filled, the newcomer, its place: behind the earlier complaints and the first newcomer)
    for filled, openid, place in ((10, "oUnits10", 11), (990, "oUnits1000", 1002)):
        await fill_queue(kefu, filled, tickets=not online)
        if online:
            await agent.call("POST", "/me/presence", json={"presence": "online"})
        with counting_units(kefu) as handoff:
            await kefu.say("我要投诉", openid)
        with counting_units(kefu) as follow_up:
            await kefu.say("还有一件事", openid)
        counts.append(_units_and_reads(handoff) + _units_and_reads(follow_up))
        conv = await kefu.conversation(openid)
        texts = [m.text for m in await kefu.runtime.store.messages(conv.id) if m.sender == "system"]
        # The step's notice was stored (in the step's one unit), exactly once.
        if online:
            assert texts.count(notices.queued(place)) == 1, texts
        else:
            assert len(texts) == 2 and texts.count(notices.ticket_followup()) == 1, texts
    assert counts[0] == counts[1], counts
    # The handoff message: its own unit, the enqueue (with a place counted: an agent is online), ONE unit
    # with the notice and the console event (they were two more; nobody online, the 留言's enqueue too: no
    # place to count) and the settle of its held replies (the passive reply carries them: a unit that
    # rides the group commit); the queued customer's next message: its own unit, the acknowledgement with
    # its console event, and (nobody online) the once-only claim of the 留言 confirmation.
    # Read trips: the handoff's routing reads the conversation with the agents' loads in one trip, then
    # (nobody online) the next shift for its notice (three trips before the first two were folded); the
    # queued customer's next message reads the message, its conversation, whether it is a waiting 留言 and
    # (an agent online, no 留言) its place in the queue in one trip (up to four before).
    assert counts[0][0] <= (4 if online else 3) and counts[0][2] <= 3, counts
    assert counts[0][1] <= (1 if online else 2) and counts[0][3] <= 1, counts
    if not online:  # the enqueue in the batch did its part: routed to 售后 as a 留言, and the console told
        assert await kefu.runtime.handoff.db.waiting_ticket(conv.id)
        events = await kefu.runtime.handoff.db.events_after(0, 5000)
        assert [e.conversation_id for e in events if e.type == "ticket.created"].count(conv.id) == 1


async def test_a_leave_message_served_before_its_batch_is_stored_leaves_nothing_behind(
    start: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A 留言's enqueue waits in the handoff step's batch with its notice and console event. An agent who
    # claims the conversation before the batch is stored (here: while the step reads the next shift) has
    # served it: the batch stores nothing (no ticket, no "暂无客服在线" notice, no ticket.created event) and
    # nothing fails.
    kefu = await start(
        {"pipeline": {"wechat_reply_deadline_s": 4.9}}, assignment="manual", job_interval_s=3600
    )
    agent = await kefu.agent("小马", "售后")  # offline: the complaint is a 留言
    caplog.set_level(logging.INFO, logger="gateway.storage.assignments")
    service = kefu.runtime.handoff
    own = service.next_shift_start
    claimed: list[int] = []

    async def claimed_meanwhile(group: str, now: Any) -> Any:
        conv = await kefu.conversation("oServedFirst")
        await agent.call("POST", f"/conversations/{conv.id}/claim")
        claimed.append(conv.id)
        return await own(group, now)

    monkeypatch.setattr(service, "next_shift_start", claimed_meanwhile)
    with counting_units(kefu) as units:
        await kefu.say("我要投诉", "oServedFirst")
    conv = await kefu.conversation("oServedFirst")
    assert claimed == [conv.id]
    assert (await service.db.get_conversation(str(conv.id))).assigned_agent_id is not None
    assert not await service.db.waiting_ticket(conv.id)
    assert await service.db.list_tickets() == []
    texts = [m.text for m in await kefu.runtime.store.messages(conv.id) if m.sender == "system"]
    assert notices.no_agent_online() not in texts, texts
    events = await service.db.events_after(0, 500)
    assert "ticket.created" not in [e.type for e in events if e.conversation_id == conv.id]
    assert "_stored_together" in " ".join(units), units  # the batch ran (and stopped), as one unit
    assert "taken before it was routed" in caplog.text
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")], caplog.text
