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
from gateway.channels import spool as spool_module
from gateway.channels.spool import Spool, decode, encode, spool_key
from gateway.keys import RUNTIME
from gateway.message import Attachment, Message
from gateway.pipeline import Pipeline
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
    crashed = Spool(spool.directory)  # what the first process left (its locks went with it)
    for message in a_b:
        await crashed.write(message)
        crashed.disown(message)
    await client.close()

    runtime, _shop, _client = await make_kefu()  # the restart, on the same database and spool
    await wechat_api.wait_for_messages(1, within=15)
    await eventually(lambda: _none(runtime.spool), within=10)
    assert await inbound(runtime, "oStoredA") == [QUESTION]
    assert await inbound(runtime, "oSpooledB") == [QUESTION]
    assert wechat_api.texts_to("oSpooledB") == [ANSWER]
    assert wechat_api.texts_to("oStoredA") == []  # its passive answer was the one


async def test_a_retry_arriving_while_its_message_is_replayed_joins_the_replay(
    make_kefu: Any, wechat_api: FakeWeChatAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After a crash the replay handles X (slowly: a custom action, say) when WeChat's retry of X arrives.
    # The retry used to start a second pipeline run of X (the action ran twice); it now joins the replay.
    runtime, _shop, client = await make_kefu()
    assert runtime.spool is not None
    crashed = Spool(runtime.spool.directory)
    x = Message("wechat", "shop", "wechat:shop:oReplay", "oReplay", QUESTION, channel_msg_id="7300000201")
    await crashed.write(x)
    crashed.disown(x)  # the process died: its lock went with it
    await client.close()
    release, runs = asyncio.Event(), []
    original = Pipeline.handle

    async def slow(self: Pipeline, message: Message, **kwargs: Any) -> Any:
        if message.channel_msg_id == x.channel_msg_id:
            runs.append(kwargs.get("outbox"))
            await release.wait()
        return await original(self, message, **kwargs)

    monkeypatch.setattr(Pipeline, "handle", slow)
    runtime, shop, _client = await make_kefu()  # the restart: its replay takes X and waits

    async def replaying() -> bool:
        return runs == ["pending"]

    await eventually(replaying, within=10)
    status, body, _ = await shop.post(text("oReplay", 7_300_000_201))  # acknowledged at the deadline
    assert status == 200 and ANSWER not in body
    release.set()
    await wechat_api.wait_for_messages(1, within=15)
    await eventually(lambda: _none(runtime.spool), within=10)
    assert runs == ["pending"]  # one pipeline run of X
    assert await inbound(runtime, "oReplay") == [QUESTION]
    assert wechat_api.texts_to("oReplay") == [ANSWER]


async def test_a_file_another_process_is_storing_is_left_to_it(tmp_path: Path) -> None:
    # Two processes share the spool directory (--workers): B's replay must not handle what A is storing.
    a, b = Spool(tmp_path), Spool(tmp_path)
    x = Message("wechat", "shop", "wechat:shop:o1", "o1", QUESTION, channel_msg_id="m1")
    await a.write(x)
    handled: list[str] = []

    async def handle(message: Message) -> None:
        handled.append(message.channel_msg_id or "")

    assert await b.replay(handle) == 0 and handled == []
    a.disown(x)  # A's store failed: now anyone's replay takes it, once
    assert await b.replay(handle) == 1 and handled == ["m1"]
    assert await a.replay(handle) == 0 and handled == ["m1"]
    assert not await asyncio.to_thread(lambda: list(tmp_path.glob("*.json")))


async def test_a_backlog_is_replayed_a_conversation_at_a_time_side_by_side(tmp_path: Path) -> None:
    # A crash left 3 customers' messages, 2 each; customer 1's first takes long (a slow custom action).
    # The others must not wait for it (the replay went file by file: minutes for a backlog), and each
    # customer's messages go in their order.
    writer = Spool(tmp_path)
    for n in (1, 2):
        for customer in ("c1", "c2", "c3"):
            message = Message(
                "wechat",
                "shop",
                f"wechat:shop:{customer}",
                customer,
                f"{customer}-{n}",
                channel_msg_id=f"{customer}-{n}",
            )
            await writer.write(message)
            writer.disown(message)
    others_done = asyncio.Event()
    order: list[str] = []

    async def handle(message: Message) -> None:
        if message.text == "c1-1":
            await asyncio.wait_for(others_done.wait(), 10)  # file by file, this never came
        order.append(message.text)
        if {"c2-2", "c3-2"} <= set(order):
            others_done.set()

    assert await Spool(tmp_path).replay(handle) == 6
    assert [t for t in order if t.startswith("c1")] == ["c1-1", "c1-2"]
    assert order.index("c2-1") < order.index("c2-2") and order.index("c3-1") < order.index("c3-2")
    assert order.index("c3-2") < order.index("c1-1")


def _spooled_messages(*texts: str) -> list[Message]:
    return [
        Message("wechat", "shop", f"wechat:shop:{t.split('-')[0]}", t.split("-")[0], t, channel_msg_id=t)
        for t in texts
    ]


async def _crashed_with(directory: Path, messages: list[Message]) -> None:
    writer = Spool(directory)
    for message in messages:
        await writer.write(message)
        writer.disown(message)


async def test_a_conversation_whose_message_is_being_handled_waits_its_turn(tmp_path: Path) -> None:
    # c1-1 is being handled here (a WeChat retry of it): c1-2 must not be stored before it; c2 goes on.
    messages = _spooled_messages("c1-1", "c1-2", "c2-1")
    await _crashed_with(tmp_path, messages)
    spool, handled = Spool(tmp_path), []

    async def handle(message: Message) -> None:
        handled.append(message.text)

    spool.inflight[spool_key(messages[0])] = asyncio.get_running_loop().create_future()
    assert await spool.replay(handle) == 1 and handled == ["c2-1"]
    del spool.inflight[spool_key(messages[0])]
    assert await spool.replay(handle) == 2 and handled == ["c2-1", "c1-1", "c1-2"]


async def test_a_webhook_taking_a_message_up_during_the_claim_is_left_to_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (message,) = _spooled_messages("c1-1")
    await _crashed_with(tmp_path, [message])
    spool, handled = Spool(tmp_path), []
    claim = spool_module._claim
    retry = asyncio.get_running_loop().create_future()  # the task Delivery._task starts meanwhile

    def claim_while_a_retry_arrives(path: Path) -> int:
        spool.inflight[spool_key(message)] = retry
        return claim(path)

    async def handle(m: Message) -> None:
        handled.append(m.text)

    monkeypatch.setattr(spool_module, "_claim", claim_while_a_retry_arrives)
    assert await spool.replay(handle) == 0 and handled == []


async def test_a_replay_cancelled_at_shutdown_cancels_the_message_it_was_handling(tmp_path: Path) -> None:
    (message,) = _spooled_messages("c1-1")
    await _crashed_with(tmp_path, [message])
    spool, cancelled = Spool(tmp_path), asyncio.Event()

    async def handle(m: Message) -> None:
        try:
            await asyncio.Event().wait()  # a slow custom action
        except asyncio.CancelledError:
            cancelled.set()
            raise

    replay = asyncio.create_task(spool.replay(handle))

    async def handling() -> bool:
        return spool_key(message) in spool.inflight

    await eventually(handling)
    replay.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await replay
    await asyncio.wait_for(cancelled.wait(), 5)  # not left running, untracked, after the app stopped
    assert not spool.inflight and await spooled(Spool(tmp_path))  # the file stays for the next start


async def test_a_directory_without_file_locks_is_still_replayed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import errno

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(spool_module.fcntl, "flock", no_locks)
    monkeypatch.setattr(spool_module, "_LOCKING", [True])
    await _crashed_with(tmp_path, _spooled_messages("c1-1", "c1-2"))
    handled: list[str] = []

    async def handle(m: Message) -> None:
        handled.append(m.text)

    assert await Spool(tmp_path).replay(handle) == 2 and handled == ["c1-1", "c1-2"]
    assert sum("file locks unavailable" in r.getMessage() for r in caplog.records) == 1


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
