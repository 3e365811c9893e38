"""A customer's turn (gateway/storage/turns.py) keeps its rows in order: on PostgreSQL it is one statement of
chained data-modifying CTEs, whose keys must still come out question first, then the replies in order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from gateway.storage import Store, Unit
from tests.gateway.test_storage import NOW, new_conversation

REPLIES = 6


@asynccontextmanager
async def planner_searching_genetically(store: Store) -> AsyncIterator[None]:
    """PostgreSQL plans joins of more than `geqo_threshold` relations by a genetic search, which reads the
    turn's CTEs in no particular order; a threshold of 2 makes every turn's plan one of those."""
    if store.dialect != "postgresql":
        yield
        return
    url = store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(url)
    try:
        name = await admin.fetchval("SELECT current_database()")
        await admin.execute(f'ALTER DATABASE "{name}" SET geqo_threshold = 2')
        await store.dispose()  # new connections take the setting
        try:
            yield
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" RESET geqo_threshold')
            await store.dispose()
    finally:
        await admin.close()


async def test_a_turns_keys_keep_the_question_and_its_replies_in_order(store: Store) -> None:
    conversation_id = await new_conversation(store)
    where = {"conversation_id": conversation_id, "conversation_key": "web:default:u1"}
    where |= {"channel": "web", "account": "default"}
    inbound = {**where, "direction": "in", "sender": "customer", "text": "问", "created_at": NOW}
    replies = [
        {**where, "direction": "out", "sender": "bot", "text": f"答{i}", "created_at": NOW}
        for i in range(REPLIES)
    ]
    boxes = [
        {
            "channel": "web",
            "account": "default",
            "conversation_key": "web:default:u1",
            "text": f"答{i}",
            "sender": "bot",
            "target": {},
            "now": NOW,
            "status": "held",
            "next_attempt_at": NOW,
        }
        for i in range(REPLIES)
    ]

    def turn(unit: Unit) -> tuple[int, list[int], list[int]]:
        question, answers, box_ids = unit.add_turn(
            inbound, replies, boxes, (conversation_id, {"last_activity_at": NOW, "miss_streak": 0})
        )
        return question.id, [a.id for a in answers], box_ids

    async with planner_searching_genetically(store):
        question, answers, box_ids = await store.run(turn)
    assert [question, *answers] == sorted([question, *answers]) and len({question, *answers}) == REPLIES + 1
    assert box_ids == sorted(box_ids) and len(set(box_ids)) == REPLIES
    stored = await store.messages(conversation_id)
    assert [m.text for m in stored] == ["问", *(f"答{i}" for i in range(REPLIES))]
    assert [m.reply_to for m in stored] == [None, *[question] * REPLIES]
    rows = sorted(await store.list_outbox(), key=lambda r: r.id)
    assert [r.text for r in rows] == [f"答{i}" for i in range(REPLIES)]
    assert [r.message_id for r in rows] == answers
