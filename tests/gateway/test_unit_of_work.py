"""Units of work (gateway.storage.unit): round trips, SQLite group commit, isolation and failures."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import bindparam, select, text

from gateway.storage import Conflict, MessageRow, Store, StoreUnavailable, Unit
from gateway.storage import unit as unit_module
from gateway.storage.schema.core import Conversation, Customer, MessageRecord
from gateway.storage.unit import SaDb

SHANGHAI = datetime(2026, 11, 24, 16, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
NOW = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)  # the same instant
KEY = "web:default:u1"
TARGET = {"openid": "o-1", "group": None, "n": 3, "ok": True, "nested": {"ids": [1, "二", 2.5]}}
TABLES = [select(t.__table__).order_by(t.__table__.c.id) for t in (Customer, Conversation, MessageRecord)]
INSERT_CONVERSATION = Conversation.__table__.insert()
WHERE = {"channel": "web", "account": "default", "conversation_key": KEY}

RunBatch = Callable[[Any, Any, list[Any]], list[Any]]


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store.from_url(f"sqlite+aiosqlite:///{tmp_path / 'kefu.db'}")
    await store.create_all()
    yield store
    await store.dispose()


def wrap_run_batch(monkeypatch: pytest.MonkeyPatch, wrapper: Callable[..., list[Any]]) -> None:
    """Wrap what GroupCommit._trip sends to aiosqlite's thread: wrapper(real, conn, dialect, works)."""
    monkeypatch.setattr(unit_module, "run_batch", partial(wrapper, unit_module.run_batch))


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of units in each SQLite group-commit trip, in order."""
    sizes: list[int] = []

    def count(real: RunBatch, conn: Any, dialect: Any, works: list[Any]) -> list[Any]:
        sizes.append(len(works))
        return real(conn, dialect, works)

    wrap_run_batch(monkeypatch, count)
    return sizes


def open_conversation(unit: Unit) -> int:
    customer = unit.upsert_customer("web", "default", "u1", None, SHANGHAI)
    return unit.create_conversation(customer_id=customer, now=SHANGHAI, kb_version=None, **WHERE).id


def add(unit: Unit, conversation_id: int, msg_id: str | None, **extra: Any) -> MessageRow:
    fields: dict[str, Any] = {"direction": "in", "sender": "customer", "text": "你好", **WHERE, **extra}
    return unit.add_message(
        conversation_id=conversation_id, channel_msg_id=msg_id, created_at=SHANGHAI, **fields
    )


async def stored_ids(store: Store, *msg_ids: str) -> set[str]:
    """Which of these platform ids are stored (read outside the group commit)."""
    return await store.read(lambda unit: {m for m in msg_ids if unit.find_message("web", "default", m)})


def reads(conversation_id: int, inbound_id: int) -> Callable[[Unit], tuple[Any, ...]]:
    return lambda unit: (
        unit.find_message("web", "default", "m1"),
        unit.open_conversation(KEY),
        unit.replies_to(inbound_id),
        unit.last_suggestions(conversation_id),
    )


async def write_sample(store: Store) -> tuple[int, int]:
    def work(unit: Unit) -> tuple[int, int]:
        conversation_id = open_conversation(unit)
        inbound = add(unit, conversation_id, "m1", target=TARGET, confidence=0.875, suggestions=["退", "换"])
        out = {"direction": "out", "sender": "bot", "suggestions": ["人工"]}
        add(unit, conversation_id, None, reply_to=inbound.id, **out)
        return conversation_id, inbound.id

    return await store.run(work)


def assert_utc(value: datetime) -> None:
    assert value == NOW and value.tzinfo is not None and value.utcoffset() == timedelta(0)


async def test_round_trip_through_unit_and_store_reads(store: Store) -> None:
    conversation_id, inbound_id = await write_sample(store)
    found, conversation, replies, suggestions = await store.run(reads(conversation_id, inbound_id))

    assert found is not None and found.id == inbound_id
    assert found.target == TARGET and type(found.target["n"]) is int and found.target["ok"] is True
    assert found.suggestions == ("退", "换")
    assert found.confidence == 0.875 and type(found.confidence) is float
    assert (found.sender_name, found.reply_to, found.decision, found.kb_version) == (None, None, None, None)
    assert_utc(found.created_at)
    assert conversation is not None and conversation.id == conversation_id
    assert (conversation.queued_at, conversation.closed_at, conversation.group) == (None, None, None)
    assert_utc(conversation.opened_at), assert_utc(conversation.last_activity_at)
    (reply,) = replies
    assert (reply.reply_to, reply.confidence, reply.target, reply.direction) == (inbound_id, None, {}, "out")
    assert suggestions == ("人工",)

    # The ORM reads and the greenlet-bridged Transaction.run see the very same rows.
    assert await store.messages(conversation_id) == [found, reply]
    assert await store.conversation(conversation_id) == conversation
    async with store.transaction() as tx:
        assert await tx.run(reads(conversation_id, inbound_id)) == (found, conversation, replies, suggestions)


async def test_sqlite_db_and_sqlalchemy_give_the_same_rows(sqlite_store: Store) -> None:
    conversation_id, inbound_id = await write_sample(sqlite_store)

    # store.run and store.read execute through SqliteDb (own compilation and type processors), on the
    # group commit's and the readers' connections; SaDb through SQLAlchemy's own execution.
    async def through_sqlalchemy(work: Callable[[Unit], Any]) -> Any:
        async with sqlite_store.engine.connect() as conn:
            return await conn.run_sync(lambda sync_conn: work(Unit(SaDb(sync_conn))))

    read = reads(conversation_id, inbound_id)
    expected = await through_sqlalchemy(read)
    assert await sqlite_store.run(read) == expected == await sqlite_store.read(read)
    for statement in TABLES:  # every column, compared with its Python type

        def rows(unit: Unit, statement: Any = statement) -> list[dict[str, Any]]:
            return [{k: (type(v), v) for k, v in row.items()} for row in unit.db.rows(statement)]

        own = await sqlite_store.run(rows)
        assert own and own == await through_sqlalchemy(rows) == await sqlite_store.read(rows)


async def test_late_rendered_sql_binds_every_value_through_its_type(store: Store) -> None:
    # Regression: SQL finished per execution (an IN list) bound its other values raw: a datetime went to
    # SQLite as Python's own text form, unlike the stored one, and matched nothing.
    conversation_id, inbound_id = await write_sample(store)
    messages = MessageRecord.__table__
    statement = select(messages.c.id).where(
        messages.c.id.in_(bindparam("ids", expanding=True)), messages.c.created_at <= bindparam("now")
    )
    params = {"ids": [inbound_id, inbound_id + 1000], "now": NOW}
    assert await store.run(lambda unit: unit.db.rows(statement, params)) == [{"id": inbound_id}]
    assert await store.read(lambda unit: unit.db.rows(statement, params)) == [{"id": inbound_id}]


async def test_sqlite_db_applies_column_defaults_like_sqlalchemy(sqlite_store: Store) -> None:
    customer = await sqlite_store.run(lambda unit: unit.upsert_customer("web", "default", "u1", None, NOW))
    values = {"customer_id": customer, "channel": "web", "account": "default", "state": "bot"}
    values |= {"opened_at": NOW, "last_activity_at": NOW}  # priority and miss_streak: default="normal", 0
    async with sqlite_store.engine.begin() as conn:
        await conn.execute(INSERT_CONVERSATION, {**values, "conversation_key": "k-sa"})
    await sqlite_store.run(
        lambda unit: unit.db.insert(INSERT_CONVERSATION, {**values, "conversation_key": "k-own"})
    )
    rows = await sqlite_store.read(lambda unit: [unit.open_conversation(k) for k in ("k-sa", "k-own")])
    assert [(r.priority, r.miss_streak) for r in rows if r is not None] == [("normal", 0)] * 2


async def test_concurrent_units_share_transactions(sqlite_store: Store, trips: list[int]) -> None:
    conversation_id = await sqlite_store.run(open_conversation)
    trips.clear()

    def unit_for(i: int) -> Callable[[Unit], tuple[int, int]]:
        return lambda unit: (i, add(unit, conversation_id, f"b{i}").id)

    results = await asyncio.gather(*(sqlite_store.run(unit_for(i)) for i in range(50)))
    assert [i for i, _ in results] == list(range(50))
    assert sum(trips) == 50 and len(trips) < 50, trips
    stored = {m.id: m.channel_msg_id for m in await sqlite_store.messages(conversation_id)}
    assert {message_id: f"b{i}" for i, message_id in results} == stored


async def test_a_failing_unit_spares_its_batch(sqlite_store: Store, trips: list[int]) -> None:
    conversation_id = await sqlite_store.run(
        lambda unit: add(unit, open_conversation(unit), "m0").conversation_id
    )
    trips.clear()

    def writes(msg_id: str, then: Callable[[Unit], Any] = lambda unit: None) -> Callable[[Unit], str]:
        return lambda unit: (add(unit, conversation_id, msg_id), then(unit), msg_id)[-1]

    def crash(unit: Unit) -> None:
        raise RuntimeError("bug in a unit")

    def duplicate(unit: Unit) -> None:
        add(unit, conversation_id, "m0")

    def bad_statement(unit: Unit) -> None:
        unit.db.rows(text("SELECT * FROM no_such_table"))

    units = [writes("ok0"), writes("crash", crash), writes("ok1"), writes("dup", duplicate)]
    units += [writes("bad-sql", bad_statement), writes("ok2")]
    outcomes = await asyncio.gather(*(sqlite_store.run(u) for u in units), return_exceptions=True)

    assert trips == [6]  # one transaction for all of them
    assert [outcomes[0], outcomes[2], outcomes[5]] == ["ok0", "ok1", "ok2"]
    assert isinstance(outcomes[1], RuntimeError)
    assert isinstance(outcomes[3], Conflict)
    assert isinstance(outcomes[4], StoreUnavailable) and "no_such_table" in str(outcomes[4])
    everything = ("m0", "ok0", "crash", "ok1", "dup", "bad-sql", "ok2")
    assert await stored_ids(sqlite_store, *everything) == {"m0", "ok0", "ok1", "ok2"}


async def test_duplicate_message_is_a_conflict_and_keeps_nothing_of_the_unit(store: Store) -> None:
    conversation_id = await store.run(lambda unit: add(unit, open_conversation(unit), "m1").conversation_id)

    def work(unit: Unit) -> None:
        add(unit, conversation_id, "m2")
        unit.update_conversation(conversation_id, miss_streak=5)
        add(unit, conversation_id, "m1")

    with pytest.raises(Conflict):
        await store.run(work)
    assert await stored_ids(store, "m1", "m2") == {"m1"}
    conversation = await store.conversation(conversation_id)
    assert conversation is not None and conversation.miss_streak == 0
    assert (await store.run(lambda unit: add(unit, conversation_id, "m3"))).channel_msg_id == "m3"


class CommitFails:
    """A sqlite3 connection whose COMMIT fails (as on a full disk); everything else goes through."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT":
            raise sqlite3.OperationalError("database or disk is full")
        return self._conn.execute(sql, *args)


async def test_a_failed_commit_fails_the_batch(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    conversation_id = await sqlite_store.run(open_conversation)
    connections: list[sqlite3.Connection] = []

    def fail_first(real: RunBatch, conn: sqlite3.Connection, dialect: Any, works: list[Any]) -> list[Any]:
        connections.append(conn)
        return real(CommitFails(conn) if len(connections) == 1 else conn, dialect, works)

    wrap_run_batch(monkeypatch, fail_first)
    outcomes = await asyncio.gather(
        *(sqlite_store.run(lambda unit, m=m: add(unit, conversation_id, m)) for m in ("a", "b", "c")),
        return_exceptions=True,
    )
    assert all(isinstance(o, StoreUnavailable) and "disk is full" in str(o) for o in outcomes), outcomes
    assert await stored_ids(sqlite_store, "a", "b", "c") == set()  # rolled back, not half committed

    assert (await sqlite_store.run(lambda unit: add(unit, conversation_id, "d"))).channel_msg_id == "d"
    assert len(connections) == 2  # released after the failure (back to the pool), checked out anew
    assert await stored_ids(sqlite_store, "a", "b", "c", "d") == {"d"}


async def test_a_broken_connection_is_replaced(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    conversation_id = await sqlite_store.run(open_conversation)

    def then_close(real: RunBatch, conn: sqlite3.Connection, dialect: Any, works: list[Any]) -> list[Any]:
        try:
            return real(conn, dialect, works)
        finally:
            conn.close()  # on the driver's thread, after this trip committed

    wrap_run_batch(monkeypatch, then_close)
    assert (await sqlite_store.run(lambda unit: add(unit, conversation_id, "a"))).channel_msg_id == "a"
    monkeypatch.undo()
    with pytest.raises(StoreUnavailable):
        await sqlite_store.run(lambda unit: add(unit, conversation_id, "b"))
    assert (await sqlite_store.run(lambda unit: add(unit, conversation_id, "c"))).channel_msg_id == "c"
    assert await stored_ids(sqlite_store, "a", "b", "c") == {"a", "c"}


async def test_run_works_again_after_dispose(store: Store) -> None:
    conversation_id = await store.run(open_conversation)
    await store.dispose()
    await store.run(lambda unit: add(unit, conversation_id, "after"))
    await store.dispose()
    assert await stored_ids(store, "after") == {"after"}


async def test_a_unit_that_raises_leaves_nothing(store: Store) -> None:
    def work(unit: Unit) -> None:
        add(unit, open_conversation(unit), "m1")
        raise RuntimeError("crash before commit")

    with pytest.raises(RuntimeError, match="crash before commit"):
        await store.run(work)
    assert await store.read(lambda unit: unit.open_conversation(KEY)) is None
    assert await store.conversations_for_key(KEY) == []
    assert await stored_ids(store, "m1") == set()


async def test_a_missing_parameter_is_refused_not_bound_as_null(sqlite_store: Store) -> None:
    from gateway.storage.messages import _FIND_MESSAGE

    with pytest.raises(ValueError, match="channel_msg_id"):
        await sqlite_store.run(
            lambda unit: unit.db.rows(_FIND_MESSAGE, {"channel": "web", "account": "default"})
        )


async def test_cancelling_the_writer_cancels_its_waiting_callers(sqlite_store: Store) -> None:
    await sqlite_store.run(lambda unit: None)  # the dedicated connection is open
    group_commit = sqlite_store._group_commit
    assert group_commit is not None
    callers = [asyncio.ensure_future(sqlite_store.run(lambda unit: None)) for _ in range(3)]
    await asyncio.sleep(0)  # the callers queued their units and started the writer
    drainer = group_commit._drainer
    assert drainer is not None
    drainer.cancel()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results), results
    assert await sqlite_store.run(lambda unit: 42) == 42  # a new writer takes over


async def test_a_unit_whose_caller_gave_up_before_its_trip_is_left_out(sqlite_store: Store) -> None:
    # Regression: a claim of the outbox worker, cancelled as the worker stopped, still leased its rows for a
    # minute, and their next claim counted them as possibly sent twice.
    await sqlite_store.run(lambda unit: None)  # the dedicated connection is open
    ran: list[str] = []
    async with sqlite_store.write_lock():  # the next trip waits for the lock
        gave_up = asyncio.ensure_future(sqlite_store.run(lambda unit: ran.append("gave up")))
        kept = asyncio.ensure_future(sqlite_store.run(lambda unit: ran.append("kept")))
        await asyncio.sleep(0)  # both queued, the writer waits for the lock
        gave_up.cancel()
    await kept
    assert ran == ["kept"]
    with pytest.raises(asyncio.CancelledError):
        await gave_up


async def test_a_unit_inside_a_write_transaction_is_refused_not_deadlocked(sqlite_store: Store) -> None:
    async with sqlite_store.transaction() as tx:
        with pytest.raises(RuntimeError, match="Transaction.run"):
            async with asyncio.timeout(5):  # same task (wait_for would run it in another one)
                await sqlite_store.run(lambda unit: None)
        assert await tx.run(lambda unit: 7) == 7  # the same unit, inside the transaction


async def test_statements_built_per_call_do_not_grow_the_compiled_cache(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import literal, select

    from gateway.storage import unit as unit_module

    monkeypatch.setattr(unit_module, "COMPILED_MAX", 5)
    for i in range(12):  # a new statement object each time, as a careless caller would build them
        value = await sqlite_store.run(lambda unit, i=i: unit.db.rows(select(literal(i).label("n")))[0]["n"])
        assert value == i
        assert len(unit_module._COMPILED) <= 5


async def test_units_in_sequence_do_not_wait_for_company(sqlite_store: Store) -> None:
    from gateway.storage.unit import LINGER_PROBE_EVERY

    commit = sqlite_store._group_commit
    assert commit is not None
    for i in range(48):
        assert await sqlite_store.run(lambda unit, i=i: i) == i
    assert commit.lingered <= 48 // LINGER_PROBE_EVERY  # the probes only: none of them caught anything


async def test_a_steady_stream_of_units_shares_trips(
    sqlite_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two callers, the second a few loop turns behind the first (concurrent messages): once the probes
    # found that waiting catches company, each pair goes in one trip, in order.
    commit = sqlite_store._group_commit
    assert commit is not None
    commit.linger_s = 0.05  # room for the second caller, however slow the machine; not a timing
    trips: list[int] = []
    real_trip = commit._trip

    async def counted(works: list[Any]) -> list[Any]:
        trips.append(len(works))
        return await real_trip(works)

    monkeypatch.setattr(commit, "_trip", counted)
    done: list[int] = []
    for i in range(48):
        first = asyncio.ensure_future(sqlite_store.run(lambda unit, i=i: done.append(2 * i)))
        for _ in range(3):
            await asyncio.sleep(0)
        second = asyncio.ensure_future(sqlite_store.run(lambda unit, i=i: done.append(2 * i + 1)))
        await asyncio.gather(first, second)
    assert done == list(range(96))
    assert trips[-10:] == [2] * 10
