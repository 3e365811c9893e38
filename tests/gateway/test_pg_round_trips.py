"""Round trips of a FAQ message on PostgreSQL + Redis (the several-processes set-up), counted on the wire.

On PostgreSQL every round trip costs kefu CPU (the asyncpg protocol, SQLAlchemy's bridge, a loopback send
and the wake-up that answers it): the shape of a bot-answered message is what keeps its CPU near SQLite's.
Counted here: statements and transaction control, pool pings included (tests/gateway/sql_sent.py: asyncpg's
query logger and SQLAlchemy's `before_cursor_execute`), and Redis commands (Redis's MONITOR: what this test's clients sent, not the commands inside scripts).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis
from sqlalchemy import event, literal, select

from gateway.storage import Store
from tests.conftest import reset_postgres
from tests.fakes.wechat_api import fixture_xml, xml_dict
from tests.gateway.sql_sent import sql_sent
from tests.gateway.test_handoff_flow import Kefu, start, wechat_api  # noqa: F401 (fixtures)
from tests.waiting import eventually

pytestmark = pytest.mark.postgres

# A FAQ message in an open conversation: no transaction at all. Its unit reads, then stores its turn as one
# statement that checks the conversation is as read (gateway/storage/turns.py, Unit.optimistic), so BEGIN
# and COMMIT are not needed; no pool pings (three round trips per checkout on asyncpg: BEGIN, ";",
# ROLLBACK) and no transaction around the one-statement settle of its held reply. Before: 9 (two pings,
# two transactions), then 2 (BEGIN and COMMIT around the unit).
CONTROL_BOUND = 0
# The unit's statements: the open-conversation read, then ONE statement storing the message, the reply, the
# reply's held outbox row and the conversation's update (gateway/storage/turns.py); and the settle of the
# held row. Before: 6 (the four writes one by one), and each sent through SQLAlchemy's execution path.
STATEMENT_BOUND = 3
# The in-flight claim, the passive-speaker claim and the outcome (gateway/coord/inflight.py).
REDIS_BOUND = 3


@pytest.fixture
def db_url(postgres_database: str) -> str:
    """This module counts PostgreSQL's round trips only (SQLite's unit is one trip to its thread)."""
    asyncio.run(reset_postgres(postgres_database))
    return postgres_database


@asynccontextmanager
async def redis_commands(url: str, prefix: str) -> AsyncIterator[list[str]]:
    """The commands clients sent to Redis about this test's keys (MONITOR; script internals left out)."""
    seen: list[str] = []
    client = aioredis.Redis.from_url(url, decode_responses=True)
    ready, ended = asyncio.Event(), asyncio.Event()
    end = f"{prefix}:end"

    async def watch() -> None:
        async with client.monitor() as monitor:
            ready.set()
            while True:
                command = await monitor.next_command()
                if command.get("client_type") == "lua" or prefix not in command["command"]:
                    continue
                if end in command["command"]:
                    ended.set()
                    return
                seen.append(command["command"].split(" ", 1)[0].upper())

    task = asyncio.create_task(watch())
    await ready.wait()
    try:
        yield seen
    finally:
        await client.execute_command("ECHO", end)  # MONITOR shows commands in order: all before it are in
        await asyncio.wait_for(ended.wait(), 5)
        await task
        await client.aclose()


async def ask(kefu: Kefu, text: str, msg_id: int) -> str:
    xml = fixture_xml("text.xml", FromUserName="oRoundTrips", Content=text, MsgId=msg_id)
    status, body, _ = await kefu.push.post(xml)
    assert status == 200, body
    return xml_dict(body)["Content"]


async def test_a_faq_message_makes_few_round_trips(start: Any, redis_section: dict[str, Any]) -> None:  # noqa: F811
    kefu = await start({"redis": redis_section}, assignment="manual", job_interval_s=3600)
    await kefu.runtime.outbox.stop()  # its polling would add statements to the count
    store = kefu.runtime.store
    assert await ask(kefu, "怎么退货", 7_200_001)  # opens the conversation, prepares the statements
    async with sql_sent(store) as pg, redis_commands(redis_section["url"], redis_section["prefix"]) as redis:
        assert await ask(kefu, "多久发货", 7_200_002)
    assert len(pg["control"]) <= CONTROL_BOUND, pg["control"]  # no pool pre-ping, no BEGIN or COMMIT
    assert len(pg["statements"]) <= STATEMENT_BOUND, pg["statements"]
    # Seen on the wire, not merely absent: the turn's one statement and the settle of its held row.
    assert [s.split(None, 1)[0] for s in pg["statements"]] == ["SELECT", "WITH", "UPDATE"], pg["statements"]
    assert len(redis) <= REDIS_BOUND, redis
    rows = await store.list_outbox()
    assert [r.status for r in rows] == ["cancelled", "cancelled"]  # both carried passively, none sent


async def test_a_connection_the_server_closed_is_replaced_without_a_ping(db_url: str) -> None:
    """No pre-ping: a pooled connection the server terminated is dropped at checkout (asyncpg saw it close)."""
    import asyncpg

    store = Store.from_url(db_url)
    opened: list[int] = []
    event.listen(store.engine.sync_engine, "connect", lambda *_: opened.append(1))
    try:
        await store.create_all()
        async with store.engine.connect() as conn:  # the one pooled connection, kept for the next read
            driver = (await conn.get_raw_connection()).driver_connection
        admin = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        assert killed >= 1
        before = len(opened)

        async def noticed() -> bool:  # the event loop reads the server's goodbye on the idle socket
            return driver.is_closed()

        await eventually(noticed)
        assert await store.read(lambda unit: unit.db.rows(_SELECT_ONE)) == [{"one": 1}]
        assert len(opened) == before + 1  # replaced at checkout, not failed at the first statement
    finally:
        await store.dispose()


_SELECT_ONE = select(literal(1).label("one"))
