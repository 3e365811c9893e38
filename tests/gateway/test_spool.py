"""The inbound spool (gateway/channels/spool.py): a message the database cannot take before WeChat's deadline
is acknowledged only once it is fsynced to the spool, then stored when the database is back — also after a
crash, at start-up — exactly once (issue 13, item 1: nothing lost AND nothing left unanswered).

Real faults on both databases: SQLite's write lock held by another connection, PostgreSQL's messages table
locked against writes by another session.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.app import create_app
from gateway.channels.spool import Spool, decode, encode
from gateway.keys import RUNTIME
from gateway.message import Attachment, Message
from gateway.runtime import Runtime
from tests.fakes.wechat_api import APPID, SECRET, FakeWeChatAPI, WeChatPush, fixture_xml
from tests.gateway.db_faults import failing_replies
from tests.waiting import eventually

TOKEN = "kefu-spool-token"
ANSWER = "您好，我们支持微信支付、支付宝、银联云闪付和信用卡快捷支付。"
QUESTION = "支持哪些支付方式"


@pytest.fixture
async def wechat_api(aiohttp_server: Any) -> FakeWeChatAPI:
    return await FakeWeChatAPI().start(aiohttp_server)


@pytest.fixture
def make_kefu(
    aiohttp_client: Any, settings_factory: Any, wechat_api: FakeWeChatAPI
) -> Callable[[], Awaitable[tuple[Runtime, WeChatPush, Any]]]:
    async def start() -> tuple[Runtime, WeChatPush, Any]:
        account = {
            "name": "shop",
            "token": TOKEN,
            "appid": APPID,
            "secret": SECRET,
            "api_base": wechat_api.url,
        }
        settings = settings_factory(channels={"wechat": [account]}, pipeline={"wechat_reply_deadline_s": 0.3})
        client = await aiohttp_client(create_app(settings))
        return client.app[RUNTIME], WeChatPush(client, "/wechat/shop", TOKEN), client

    return start


def text(openid: str, msg_id: int) -> str:
    return fixture_xml("text.xml", FromUserName=openid, MsgId=msg_id, Content=QUESTION)


async def inbound(runtime: Runtime, openid: str) -> list[str]:
    rows = await runtime.store.messages_for_key(f"wechat:shop:{openid}", direction="in")
    return [r.text for r in rows]


async def spooled(spool: Spool) -> list[Path]:
    return await asyncio.to_thread(lambda: sorted(spool.directory.glob("*.json")))


@contextlib.asynccontextmanager
async def writes_blocked(db_url: str) -> AsyncIterator[None]:
    """Another connection keeps the database from taking writes until the block ends."""
    if db_url.startswith("sqlite"):
        path = db_url.split(":///", 1)[1]
        locked, release = threading.Event(), threading.Event()

        def hold() -> None:
            conn = sqlite3.connect(path, timeout=30, isolation_level=None)
            try:
                conn.execute("BEGIN IMMEDIATE")
                locked.set()
                release.wait(60)
                conn.execute("ROLLBACK")
            finally:
                conn.close()

        holder = asyncio.create_task(asyncio.to_thread(hold))
        await asyncio.to_thread(locked.wait, 30)
        try:
            yield
        finally:
            release.set()
            await holder
        return
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            transaction = await conn.begin()
            # Reads go on (the test checks nothing was stored); every insert into messages waits.
            await conn.exec_driver_sql("LOCK TABLE messages IN EXCLUSIVE MODE")
            try:
                yield
            finally:
                await transaction.rollback()
    finally:
        await engine.dispose()


async def test_a_message_the_locked_database_cannot_take_is_acknowledged_from_the_spool_and_stored_later(
    make_kefu: Any, wechat_api: FakeWeChatAPI, db_url: str
) -> None:
    runtime, shop, _client = await make_kefu()
    assert runtime.spool is not None
    async with writes_blocked(db_url):
        status, body, _ = await shop.post(text("oLocked", 7_300_000_001))
        assert (status, body) == (200, "success")  # at the deadline, the message only on disk
        assert len(await spooled(runtime.spool)) == 1
        assert await inbound(runtime, "oLocked") == []
        status, body, _ = await shop.post(text("oLocked", 7_300_000_001))  # WeChat's retry
        assert (status, body) == (200, "success")
        assert len(await spooled(runtime.spool)) == 1
    # The database is back: stored once, answered once by 客服消息, the file forgotten.
    await wechat_api.wait_for_messages(1, within=15)
    await eventually(lambda: _none(runtime.spool), within=10)
    assert await inbound(runtime, "oLocked") == [QUESTION]
    assert wechat_api.texts_to("oLocked") == [ANSWER]


async def test_a_message_while_the_database_is_down_is_acknowledged_from_the_spool_not_refused(
    make_kefu: Any, wechat_api: FakeWeChatAPI, db_outage: Any
) -> None:
    # Before the spool: 503 for every try, and after WeChat's three tries the customer's message was gone.
    runtime, shop, _client = await make_kefu()
    await db_outage.down(runtime.store)
    status, body, _ = await shop.post(text("oDown", 7_300_000_201))
    assert (status, body) == (200, "success")
    assert runtime.spool is not None and len(await spooled(runtime.spool)) == 1
    await db_outage.up()
    await wechat_api.wait_for_messages(1, within=15)
    await eventually(lambda: _none(runtime.spool), within=10)
    assert await inbound(runtime, "oDown") == [QUESTION]
    assert wechat_api.texts_to("oDown") == [ANSWER]


async def test_a_database_refusing_the_message_itself_is_still_a_503(make_kefu: Any) -> None:
    # Not an outage (a trigger refuses the rows): spooling would replay it forever, so WeChat retries.
    runtime, shop, _client = await make_kefu()
    async with failing_replies(runtime.store.engine):
        status, _body, _ = await shop.post(text("oRefused", 7_300_000_301))
    assert status == 503
    assert runtime.spool is not None and await spooled(runtime.spool) == []


async def _none(spool: Spool | None) -> bool:
    assert spool is not None
    return not await spooled(spool)


async def test_messages_left_in_the_spool_by_a_crash_are_stored_at_start_up_exactly_once(
    make_kefu: Any, wechat_api: FakeWeChatAPI
) -> None:
    # A first process stored message A and answered it; it died before forgetting A's spool file, and
    # with B only in the spool (acknowledged, never stored).
    runtime, shop, client = await make_kefu()
    spool = runtime.spool
    assert spool is not None
    status, body, _ = await shop.post(text("oStoredA", 7_300_000_101))
    assert status == 200 and ANSWER in body  # answered passively
    a_b = [
        Message("wechat", "shop", f"wechat:shop:{openid}", openid, QUESTION, channel_msg_id=msg_id)
        for openid, msg_id in (("oStoredA", "7300000101"), ("oSpooledB", "7300000102"))
    ]
    for message in a_b:
        await Spool(spool.directory).write(message)
    await client.close()

    runtime, _shop, _client = await make_kefu()  # the restart, on the same database and spool
    await wechat_api.wait_for_messages(1, within=15)
    await eventually(lambda: _none(runtime.spool), within=10)
    assert await inbound(runtime, "oStoredA") == [QUESTION]
    assert await inbound(runtime, "oSpooledB") == [QUESTION]
    assert wechat_api.texts_to("oSpooledB") == [ANSWER]
    assert wechat_api.texts_to("oStoredA") == []  # its passive answer was the one


def test_a_spooled_message_reads_back_as_it_was_written() -> None:
    photo = Attachment("image", mime="image/jpeg", url="http://mmbiz.example/pic", media_id="MEDIA_1")
    picture = Message("wechat", "shop", "wechat:shop:o", "o", "", "m0", kind="image", attachment=photo)
    assert decode(encode(picture)) == picture
    message = Message(
        "onebot",
        "qq",
        "qq:qq:group:5:7",
        "7",
        "退款 \ud800 进度",
        channel_msg_id="m1",
        chat_type="group",
        group_id="5",
        segments=({"type": "text", "data": {"text": "退款"}},),
        raw={"post_type": "message", "n": 3},
    )
    assert decode(encode(message)) == message
