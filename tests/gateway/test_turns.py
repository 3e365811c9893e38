"""A customer's turn (gateway/storage/turns.py) keeps its rows in order: on PostgreSQL it is one statement of
chained data-modifying CTEs, whose keys must still come out question first, then the replies in order.

And a unit that reads, then stores one turn (`Store.run(..., optimistic=True)`, the pipeline's FAQ message)
runs on PostgreSQL without a transaction first: its turn stores nothing when the conversation changed since
it was read, and any other write sends it to a transaction before anything is written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import select
from sqlalchemy.util import await_

from gateway.storage import Store, Unit
from gateway.storage.schema.core import Customer
from handoff.state import ConversationState
from tests.gateway.test_storage import NOW, new_conversation

REPLIES = 6


def _asyncpg_url(store: Store) -> str:
    """The store's PostgreSQL database, for a connection of asyncpg's own beside the store's pool."""
    return store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


@asynccontextmanager
async def planner_searching_genetically(store: Store) -> AsyncIterator[None]:
    """PostgreSQL plans joins of more than `geqo_threshold` relations by a genetic search, which reads the
    turn's CTEs in no particular order; a threshold of 2 makes every turn's plan one of those."""
    if store.dialect != "postgresql":
        yield
        return
    admin = await asyncpg.connect(_asyncpg_url(store))
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


KEY = "web:default:u1"
WHERE = {"conversation_key": KEY, "channel": "web", "account": "default"}


def _turn(unit: Unit, conversation_id: int, text: str) -> int:
    inbound = {**WHERE, "conversation_id": conversation_id, "direction": "in", "sender": "customer"}
    reply = {**WHERE, "conversation_id": conversation_id, "direction": "out", "sender": "bot"}
    box = {**WHERE, "text": "答", "sender": "bot", "target": {}, "now": NOW, "status": "held"}
    question, _, _ = unit.add_turn(
        {**inbound, "text": text, "created_at": NOW},
        [{**reply, "text": "答", "created_at": NOW}],
        [{**box, "next_attempt_at": NOW}],
        (conversation_id, {"last_activity_at": NOW + timedelta(seconds=1), "miss_streak": 1}),
    )
    return question.id


async def _another_connection(store: Store, sql: str, *args: Any) -> None:
    """A write by somebody else (an agent's claim, another process) while a unit is between its statements."""
    other = await asyncpg.connect(_asyncpg_url(store))
    try:
        await other.execute(sql, *args)
    finally:
        await other.close()


async def test_a_turn_whose_conversation_changed_since_it_was_read_is_stored_once_in_a_transaction(
    store: Store,
) -> None:
    conversation_id = await new_conversation(store)
    tries: list[bool] = []

    def work(unit: Unit) -> int:
        conversation = unit.open_conversation(KEY)
        assert conversation is not None
        tries.append(unit.optimistic)
        if unit.optimistic:  # an agent takes the conversation between the read and the turn
            await_(
                _another_connection(
                    store, "UPDATE conversations SET state = 'assigned' WHERE id = $1", conversation_id
                )
            )
        return _turn(unit, conversation_id, "问")

    question = await store.run(work, optimistic=True)
    # SQLite: one trip of the group commit, no optimistic try. PostgreSQL: the optimistic try stored
    # nothing, and the unit ran again in a transaction, where it read the change.
    assert tries == ([True, False] if store.dialect == "postgresql" else [False])
    stored = await store.messages(conversation_id)
    assert [(m.id, m.text) for m in stored][:1] == [(question, "问")] and [m.text for m in stored] == [
        "问",
        "答",
    ]
    assert [r.text for r in await store.list_outbox()] == ["答"]
    conversation = await store.conversation(conversation_id)
    assert conversation is not None and conversation.miss_streak == 1
    if store.dialect == "postgresql":
        assert conversation.state is ConversationState.ASSIGNED  # the other write is kept, not overwritten


async def test_a_unit_that_writes_more_than_its_turn_runs_in_a_transaction(store: Store) -> None:
    tries: list[bool] = []

    def first_message(unit: Unit) -> int:
        tries.append(unit.optimistic)
        assert unit.open_conversation(KEY) is None
        customer = unit.upsert_customer("web", "default", "u1", "小王", NOW)  # a write before the turn
        conversation = unit.create_conversation(
            customer_id=customer,
            channel="web",
            account="default",
            conversation_key=KEY,
            now=NOW,
            kb_version=None,
        )
        _turn(unit, conversation.id, "第一句")
        return conversation.id

    conversation_id = await store.run(first_message, optimistic=True)
    assert tries == ([True, False] if store.dialect == "postgresql" else [False])
    customers = await store.read(lambda unit: unit.db.rows(select(Customer.__table__)))
    assert len(customers) == 1  # the refused optimistic try wrote nothing
    assert [m.text for m in await store.messages(conversation_id)] == ["第一句", "答"]


async def test_a_write_after_the_turn_of_a_unit_without_a_transaction_is_refused(store: Store) -> None:
    if store.dialect != "postgresql":
        pytest.skip("SQLite's units always run in the group commit's transaction")
    conversation_id = await new_conversation(store)

    def turn_then_more(unit: Unit) -> None:
        assert unit.open_conversation(KEY) is not None
        _turn(unit, conversation_id, "问")
        unit.update_conversation(conversation_id, miss_streak=5)

    with pytest.raises(RuntimeError, match="after the turn"):
        await store.run(turn_then_more, optimistic=True)
    conversation = await store.conversation(conversation_id)
    assert conversation is not None and conversation.miss_streak == 1  # the turn, and nothing after it
