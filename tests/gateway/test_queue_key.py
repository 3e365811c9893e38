"""The queue's serving-order key (conversations.queue_key) on SQLite and PostgreSQL: positions, pages and
heads read by it agree with `handoff.queue`'s order over the whole queue, whatever wrote the queue
(pipeline update, enqueue, 留言, transfer, claim, close, hand-back); and the page, the position and the
heads read an index instead of ranking or sorting the whole queue (the plans say so)."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, text

from gateway.app import create_app
from gateway.keys import RUNTIME
from gateway.storage import Store, Unit, migrate
from gateway.storage.handoff_store import HandoffDb
from gateway.storage.queue import _HEADS, _PAGES, POSITION
from gateway.storage.schema.core import Conversation, Customer
from gateway.storage.serving_key import RANK_STEP, rekey
from handoff.agents import Role, new_token
from handoff.queue import Priority, QueueItem, queue_sort_key
from handoff.state import ConversationState
from handoff.wrapup import CloseReason
from tests.gateway.test_migrations import empty_url  # noqa: F401 (fixture)

T0 = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)


async def bot_conversation(db: HandoffDb, user: str, opened: datetime = T0) -> str:
    def create(unit: Unit) -> int:
        customer = unit.upsert_customer("web", "default", user, user, opened)
        return unit.create_conversation(
            customer_id=customer,
            channel="web",
            account="default",
            conversation_key=f"web:default:{user}",
            now=opened,
            kb_version=None,
        ).id

    return str(await db.store.run(create))


async def pipeline_handoff(db: HandoffDb, cid: str, **values: Any) -> None:
    """What the pipeline's unit writes on a handoff (before the handoff service enqueues)."""
    await db.store.run(
        lambda unit: unit.update_conversation(int(cid), state=ConversationState.QUEUED, **values)
    )


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# SQLite's strftime('%s') rounds a fraction to milliseconds first: a wait that began at .9995 s or later
# was keyed a second late (behind one that began half a second after it).
LATE_IN_A_SECOND = at(1) + timedelta(microseconds=999_800)


def epoch_micros(moment: datetime) -> int:
    return int(moment.replace(microsecond=0).timestamp()) * 10**6 + moment.microsecond


async def key_of(store: Store, conversation_id: int) -> int | None:
    async with store.engine.connect() as conn:
        return await conn.scalar(select(Conversation.queue_key).where(Conversation.id == conversation_id))


async def test_the_key_is_exact_to_the_microsecond(db: HandoffDb) -> None:
    first, second = await bot_conversation(db, "first"), await bot_conversation(db, "second")
    await pipeline_handoff(db, first, queued_at=LATE_IN_A_SECOND)
    await db.enqueue(QueueItem(second, "售前", Priority.NORMAL, LATE_IN_A_SECOND + timedelta(seconds=0.5)))
    assert await key_of(db.store, int(first)) % RANK_STEP == epoch_micros(LATE_IN_A_SECOND)
    assert [await db.queue_position(c) for c in (first, second)] == [1, 2]


async def test_keys_an_older_release_left_behind_are_repaired(db: HandoffDb) -> None:
    # A process of the release before the key (a rolling upgrade) queues without a key and closes without
    # clearing it: the first would never be served, the second would hold a head slot.
    ids = await mixed_queue(db)
    reference = served(list(await db.list_queue()))
    async with db.store.engine.begin() as conn:
        await conn.execute(
            Conversation.__table__.update()
            .where(Conversation.id == int(reference[0].conversation_id))
            .values(queue_key=None)
        )
        await conn.execute(
            Conversation.__table__.update().where(Conversation.id == int(ids["h"])).values(queue_key=1)
        )
    assert [i.conversation_id for i in await db.queue_heads(20)] != [i.conversation_id for i in reference]
    assert await db.repair_queue_keys() == 2
    assert list(await db.queue_heads(20)) == reference
    assert await db.repair_queue_keys() == 0


async def mixed_queue(db: HandoffDb) -> dict[str, str]:
    """Every way a conversation enters, moves in or leaves the queue; returns name -> id."""
    ids = {name: await bot_conversation(db, name) for name in "abcdefghijklm"}
    agent = (
        await db.add_agent(
            "小马", role=Role.AGENT, groups=("售后", "售前"), max_chats=9, token_hash=new_token()[1]
        )
    ).id
    # a: queued by the pipeline only, no group (= the default group 售前), normal.
    await pipeline_handoff(db, ids["a"], queued_at=at(1), priority="normal")
    # b: a high-priority 留言; c and d: a normal 留言 and a live chat queued at the same instant.
    await db.enqueue(QueueItem(ids["b"], "售后", Priority.HIGH, at(2), is_ticket=True))
    await db.enqueue(QueueItem(ids["c"], "售后", Priority.NORMAL, at(0), is_ticket=True))
    await db.enqueue(QueueItem(ids["d"], "售后", Priority.NORMAL, at(0)))
    # e: high in the default group named explicitly; j: the same instant and rank as e (ties by id).
    await db.enqueue(QueueItem(ids["e"], "售前", Priority.HIGH, at(3)))
    await db.enqueue(QueueItem(ids["j"], "售前", Priority.HIGH, at(3)))
    # f: claimed; h: closed while queued: both out of the queue.
    await db.enqueue(QueueItem(ids["f"], "售后", Priority.NORMAL, at(0.5)))
    assert (await db.claim(ids["f"], agent)).ok
    await db.enqueue(QueueItem(ids["h"], "售后", Priority.HIGH, at(0.1)))
    assert await db.close(ids["h"], reason=CloseReason.AGENT, by=None, tags=[], at=at(5))
    # g: a 留言 of 售前 transferred to 售后 while waiting: still a 留言, its wait kept.
    await db.enqueue(QueueItem(ids["g"], "售前", Priority.NORMAL, at(4), is_ticket=True))
    assert (await db.transfer(ids["g"], by=agent, expected_agent_id=None, to_group="售后")).ok
    # i: handed back to the bot, then handed off again later: the first wait is kept (enqueue's coalesce).
    await db.enqueue(QueueItem(ids["i"], "售后", Priority.NORMAL, at(0.2)))
    assert (await db.claim(ids["i"], agent)).ok
    assert await db.close(ids["i"], reason=CloseReason.BACK_TO_BOT, by=agent, tags=[], at=at(6))
    await db.enqueue(QueueItem(ids["i"], "售后", Priority.NORMAL, at(7)))
    # k: queued without queued_at (rows from before it existed): its wait starts when it opened.
    await pipeline_handoff(db, ids["k"], group="售后")
    # l: a waiting 留言 enqueued again as a high live chat: higher, and still a 留言 (its ticket waits).
    await db.enqueue(QueueItem(ids["l"], "售后", Priority.NORMAL, at(8), is_ticket=True))
    await db.enqueue(QueueItem(ids["l"], "售后", Priority.HIGH, at(9)))
    # m: assigned straight to an agent by a transfer from the queue: out.
    await db.enqueue(QueueItem(ids["m"], "售后", Priority.HIGH, at(0)))
    assert (await db.transfer(ids["m"], by=agent, expected_agent_id=None, to_agent_id=agent)).ok
    return ids


def served(items: list[QueueItem], group: str | None = None) -> list[QueueItem]:
    """handoff.queue's order, with ids compared as the numbers they are (the SQL order, before the key
    too; `queue_sort_key` compares the id strings, which differs only on an exact tie)."""
    chosen = [i for i in items if group is None or i.group == group]
    return sorted(chosen, key=lambda i: (*queue_sort_key(i)[:3], int(i.conversation_id)))


def place(cid: str, items: list[QueueItem]) -> int:
    own = next(i for i in items if i.conversation_id == cid)
    return [i.conversation_id for i in served(items, own.group)].index(cid) + 1


async def pages(db: HandoffDb, groups: list[str] | None, limit: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = await db.queue_page(groups, limit=limit, cursor=cursor)
        for row in page.rows:
            item = db.page_item(row)
            rows.append({"item": item, "position": row["pos"]})
        if page.next_cursor is None:
            return rows
        cursor = page.next_cursor


async def test_positions_pages_and_heads_follow_the_queue_order(db: HandoffDb) -> None:
    ids = await mixed_queue(db)
    reference = served(list(await db.list_queue()))  # the whole queue read as ORM rows, ordered in Python
    assert {i.conversation_id for i in reference} == {ids[n] for n in "abcdegijkl"}
    by_id = {ids[n]: n for n in ids}
    assert [by_id[i.conversation_id] for i in served(reference, "售后")] == list("blcgdki")
    assert [by_id[i.conversation_id] for i in served(reference, "售前")] == list("eja")
    expected = [{"item": i, "position": place(i.conversation_id, reference)} for i in reference]
    for limit in (1, 2, 3, 50):
        assert await pages(db, None, limit) == expected
    for groups in (["售后"], ["售前"], ["售后", "售前"], ["无人"]):
        wanted = [e for e in expected if e["item"].group in groups]
        assert await pages(db, groups, 2) == wanted
    for item in reference:
        assert await db.queue_position(item.conversation_id) == place(item.conversation_id, reference)
    for name in "fhm":
        assert await db.queue_position(ids[name]) is None
    heads = [i for i in reference if place(i.conversation_id, reference) <= 2]
    assert list(await db.queue_heads(2)) == heads
    # The catch-up's heads: only handoffs older than a cut-off, ranked among themselves.
    older = [i for i in reference if i.queued_at <= at(1)]
    assert list(await db.queue_heads(2, queued_before=at(1))) == [
        i for i in older if place(i.conversation_id, older) <= 2
    ]
    assert list(await db.queue_heads(20)) == reference
    assert await db.queue_length() == len(reference)


async def test_a_cursor_is_ours_or_refused(db: HandoffDb) -> None:
    ids = await mixed_queue(db)
    page = await db.queue_page(None, limit=2)
    assert page.next_cursor is not None and ids
    huge = base64.urlsafe_b64encode(json.dumps([2**70, 1]).encode()).decode().rstrip("=")  # past a BIGINT
    for bad in ("nonsense", "W10", "WzEsIDJd" + "x", "WyJhIiwgMV0", huge):  # garbage, [], broken, ["a", 1]
        with pytest.raises(ValueError):
            await db.queue_page(None, limit=2, cursor=bad)


async def long_queue(db: HandoffDb, count: int) -> None:
    """`count` queued conversations in two groups (bulk inserted, then keyed as kefu's statements key)."""
    async with db.store.engine.begin() as conn:
        await conn.execute(
            insert(Customer.__table__),
            [
                {
                    "channel": "web",
                    "account": "default",
                    "user_id": f"q{n}",
                    "created_at": T0,
                    "last_seen_at": T0,
                }
                for n in range(count)
            ],
        )
        customers = (await conn.execute(select(Customer.id).order_by(Customer.id))).scalars().all()
        await conn.execute(
            insert(Conversation.__table__),
            [
                {
                    "customer_id": c,
                    "channel": "web",
                    "account": "default",
                    "conversation_key": f"web:default:q{n}",
                    "state": "queued",
                    "priority": "high" if n % 7 == 0 else "normal",
                    "group_name": "售后" if n % 2 else "售前",
                    "miss_streak": 0,
                    "opened_at": T0,
                    "last_activity_at": T0,
                    "queued_at": T0 + timedelta(seconds=n),
                }
                for n, c in enumerate(customers)
            ],
        )
        await conn.execute(rekey())
        if conn.dialect.name == "postgresql":
            await conn.execute(text("ANALYZE conversations"))


async def plan(db: HandoffDb, statement: Any, params: dict[str, Any]) -> str:
    """The database's plan of a statement, as text (SQLite: EXPLAIN QUERY PLAN; PostgreSQL: JSON)."""
    engine = db.store.engine
    compiled = statement.params(params).compile(
        dialect=engine.dialect, compile_kwargs={"literal_binds": True, "render_postcompile": True}
    )
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")
            return "\n".join(str(r[-1]) for r in rows)
        # No sequential scan where an index can serve: the plan must come from the index, not the costs
        # of a small test table.
        await conn.exec_driver_sql("SET enable_seqscan = off")
        await conn.exec_driver_sql("SET enable_bitmapscan = off")
        rows = await conn.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}")
        return json.dumps(rows.scalar())


def nodes(plan_json: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        out.append(node)
        for child in node.get("Plans", []):
            walk(child)

    walk(json.loads(plan_json)[0]["Plan"])
    return out


async def test_the_page_position_and_heads_read_an_index_not_the_whole_queue(db: HandoffDb) -> None:
    await long_queue(db, 2000)
    page = await plan(db, _PAGES[(False, False)], {"limit": 51, "default_group": "售前"})
    groups = await plan(db, _PAGES[(True, False)], {"limit": 51, "default_group": "售前", "groups": ["售后"]})
    position = await plan(db, POSITION, {"conversation_id": 1500, "default_group": "售前"})
    heads = await plan(db, _HEADS, {"per_group": 20, "per_group_offset": 19, "default_group": "售前"})
    if db.store.engine.dialect.name == "sqlite":
        for shown in (page, groups):
            # The page's rows come off the key index in order: no sort of the queue, no window over it.
            assert "ix_conversations_queue_key" in shown, shown
            assert "USE TEMP B-TREE FOR ORDER BY" not in shown.split("SCAN page")[0], shown
        # The heads: every read of the conversations a search of an index, none a scan of the queue.
        assert "ix_conversations_group_queue_key" in heads, heads
        assert not re.search(r"SCAN (conversations|head)\b", heads), heads
        for (
            line
        ) in heads.splitlines():  # each lookup bounded by a group (or a rowid), never the whole key range
            if re.search(r"(SEARCH|SCAN) (conversations|head) ", line):
                assert "group_name" in line or "INTEGER PRIMARY KEY" in line, heads
        # Two COUNTs (the group's rows, its rows without a group), each a range of the covering index.
        assert position.count("COVERING INDEX ix_conversations_group_queue_key (group_name=?") == 2, position
    else:
        for shown in (page, groups):
            limited = [n for n in nodes(shown) if n["Node Type"] == "Limit"]
            assert limited, shown
            # Under the page's LIMIT: the index, read in order, and no Sort or WindowAgg of the queue.
            below = nodes(json.dumps([{"Plan": limited[0]}]))
            kinds = {n["Node Type"] for n in below}
            assert "Sort" not in kinds and "WindowAgg" not in kinds, shown
            assert any(n.get("Index Name") == "ix_conversations_queue_key" for n in below), shown
        # Two COUNTs, each a range of a key index bounded by the conversation's own key (the planner picks
        # which index by its costs); nothing sorted or ranked.
        ranges = [
            n
            for n in nodes(position)
            if n.get("Index Name") in ("ix_conversations_queue_key", "ix_conversations_group_queue_key")
            and "ROW(queue_key, id) <= ROW(" in n.get("Index Cond", "")
        ]
        assert len(ranges) == 2, position
        assert not {"Sort", "WindowAgg", "Seq Scan"} & {n["Node Type"] for n in nodes(position)}, position
        heads_nodes = nodes(heads)
        assert "Seq Scan" not in {n["Node Type"] for n in heads_nodes}, heads
        assert any(n.get("Index Name") == "ix_conversations_group_queue_key" for n in heads_nodes), heads
    rows = await db.store.read(
        lambda unit: unit.db.rows(POSITION, {"conversation_id": 1500, "default_group": "售前"})
    )
    assert rows[0]["n"] == place("1500", served(list(await db.list_queue())))


async def test_migration_0005_keys_the_conversations_already_queued(empty_url: str) -> None:  # noqa: F811
    store = Store.from_url(empty_url)
    try:
        await migrate.upgrade(store.engine, "0004")
        async with store.engine.begin() as conn:
            await conn.execute(
                insert(Customer.__table__),
                [
                    {
                        "channel": "web",
                        "account": "d",
                        "user_id": f"u{n}",
                        "created_at": T0,
                        "last_seen_at": T0,
                    }
                    for n in range(5)
                ],
            )
            rows = [
                ("queued", "normal", "售后", LATE_IN_A_SECOND),
                ("queued", "high", "售后", at(3)),
                ("queued", "normal", None, None),  # no group, no queued_at: the default group, since opened
                ("bot", "normal", None, None),
                ("queued", "normal", "售后", at(2)),  # a 留言 below
            ]
            await conn.execute(
                insert(Conversation.__table__),
                [
                    {
                        "id": n + 1,
                        "customer_id": n + 1,
                        "channel": "web",
                        "account": "d",
                        "conversation_key": f"web:d:u{n}",
                        "state": state,
                        "priority": priority,
                        "group_name": group,
                        "miss_streak": 0,
                        "opened_at": T0,
                        "last_activity_at": T0,
                        "queued_at": queued_at,
                    }
                    for n, (state, priority, group, queued_at) in enumerate(rows)
                ],
            )
            await conn.execute(
                text("INSERT INTO tickets (conversation_id, group_name, created_at) VALUES (5, '售后', :t)"),
                {"t": at(2)},
            )
        await store.create_all()  # the next start-up: 0004 -> head
        db = HandoffDb(store, default_group="售前")
        reference = served(list(await db.list_queue()))
        assert [i.conversation_id for i in reference] == ["2", "5", "3", "1"]
        assert [e["item"] for e in await pages(db, None, 2)] == reference
        assert [await db.queue_position(i.conversation_id) for i in reference] == [1, 2, 1, 3]
        assert await db.queue_position("4") is None
        assert await key_of(store, 1) % RANK_STEP == epoch_micros(LATE_IN_A_SECOND)
    finally:
        await store.dispose()


async def test_the_gateway_repairs_left_behind_keys_when_it_starts(
    aiohttp_client: Any, settings_factory: Any
) -> None:
    settings = settings_factory()
    store = Store.from_url(settings.database.url)
    await store.create_all()
    db = HandoffDb(store, default_group="售前")
    cid = await bot_conversation(db, "old-release")
    async with store.engine.begin() as conn:  # queued by a process of the release before the key
        await conn.execute(
            Conversation.__table__.update()
            .where(Conversation.id == int(cid))
            .values(state="queued", queued_at=T0, queue_key=None)
        )
    await store.dispose()
    client = await aiohttp_client(create_app(settings))
    runtime = client.app[RUNTIME]
    assert await runtime.handoff.db.queue_position(cid) == 1
