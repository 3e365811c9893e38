"""Several kefu processes on PostgreSQL + Redis: exactly one answer, whatever process a request reaches.

Every count is what the platform received: the passive answers our WeChat got back plus the 客服消息
the fake API accepted, per customer (each message here has a customer of its own). 0 doubled, 0 lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import pytest

from tests.multiprocess.cluster import SHORT_WAIT_S, Cluster, Delivery, WeChat, record, text_xml
from tests.multiprocess.conftest import LONG_ANSWER, LONG_QUESTION, Platform

pytestmark = pytest.mark.postgres

PAYMENT_ANSWER = "您好，我们支持微信支付、支付宝、银联云闪付和信用卡快捷支付。"
QUESTIONS = {"支持哪些支付方式": PAYMENT_ANSWER}
_msg_ids = itertools.count(9_100_000_000_000_000_000)
# Agent consoles see what another process stored within this (Redis pub/sub; the table poll is 10 s).
LIVE_S = 1.0


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def settled(cluster: Cluster, openids: list[str], within: float = 30.0) -> None:
    """Wait until no message is still in the shared inbound spool (a killed process's late messages,
    stored by the others' replay) and no reply row of these customers is held, pending or being sent."""
    keys = [f"wechat:shop:{o}" for o in openids] + [f"wechat:tok:{o}" for o in openids]
    spool = cluster.workdir / "data" / "spool"  # the processes share their work dir, so this folder
    conn = await asyncpg.connect(cluster.database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        deadline = time.monotonic() + within
        while True:
            open_rows = await conn.fetchval(
                "SELECT count(*) FROM outbox WHERE conversation_key = ANY($1::text[]) "
                "AND status IN ('held', 'pending', 'sending')",
                keys,
            )
            spooled = len(list(spool.glob("*.json"))) if spool.is_dir() else 0
            if open_rows == 0 and spooled == 0:
                return
            assert time.monotonic() < deadline, f"{open_rows} replies undelivered, {spooled} messages spooled"
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


def answers(platform: Platform, delivery: Delivery, openid: str) -> list[str]:
    """Everything this customer received: passive answers and 客服消息 (in that order)."""
    pushed = [m["text"]["content"] for m in list(platform.wechat.messages) if m.get("touser") == openid]
    return delivery.passive + pushed


async def test_processes_fetching_the_access_token_at_once_make_one_fetch(cluster, platform, http):
    wechat = WeChat(http, cluster, account="tok")
    openids = ["o-token-0", "o-token-1", "o-token-2"]
    # Too long for one passive reply: each process sends its customer's answer through 客服消息 and needs a
    # token. A process's own worker takes its rows at once; the next process gets its message 0.15 s later,
    # while the first one's token fetch (0.5 s at the fake) is still under way: all three want one together.
    sent = []
    for index, openid in enumerate(openids):
        sent.append(
            asyncio.create_task(wechat.deliver(text_xml(openid, next(_msg_ids), LONG_QUESTION), index))
        )
        await asyncio.sleep(0.15)
    deliveries = await asyncio.gather(*sent)
    assert [(d.acknowledged, d.passive) for d in deliveries] == [(True, [])] * 3
    await settled(cluster, openids)
    for openid in openids:
        pieces = [m["text"]["content"] for m in platform.tokens.messages if m["touser"] == openid]
        assert "".join(pieces).replace("\n", "") == LONG_ANSWER.replace("\n", "")
    assert platform.tokens.token_fetches == 1


async def test_the_same_msgid_at_two_processes_at_once_is_answered_once(cluster, platform, http):
    wechat = WeChat(http, cluster)
    results: dict[str, Delivery] = {}
    for i in range(6):
        openid = f"o-once-{i}"
        xml = text_xml(openid, next(_msg_ids), "支持哪些支付方式")
        pair = (i % 3, (i + 1) % 3)
        got = await asyncio.gather(*(wechat.post(index, xml) for index in pair))
        results[openid] = delivery = Delivery()
        for status_body in got:
            assert status_body is not None and status_body[0] == 200
            record(delivery, status_body[1])
    await settled(cluster, list(results))
    assert {o: answers(platform, d, o) for o, d in results.items()} == {o: [PAYMENT_ANSWER] for o in results}


async def test_a_retry_after_wechats_wait_on_another_process_is_answered_once(cluster, platform, http):
    wechat = WeChat(http, cluster)
    openid = "o-retry"
    xml = text_xml(openid, next(_msg_ids), "支持哪些支付方式")
    delivery = Delivery()
    cluster.pause(0)  # process 0 takes the request into its backlog and answers nothing
    try:
        assert (
            await wechat.post(0, xml, wait_s=SHORT_WAIT_S) is None
        )  # WeChat waited (5 s, shortened), gave up
        await wechat.deliver(xml, 1, tries=2, into=delivery)  # its retry reaches process 1
    finally:
        cluster.resume(0)  # process 0 now handles the stale request; its answer reaches nobody
    assert delivery.acknowledged
    cluster.wait_ready(cluster.processes[0])
    await asyncio.sleep(SHORT_WAIT_S)  # process 0's late handling of the first request is over
    await settled(cluster, [openid])
    assert answers(platform, delivery, openid) == [PAYMENT_ANSWER]


async def next_event(ws: aiohttp.ClientWebSocketResponse, name: str) -> dict[str, Any]:
    while True:
        frame = await ws.receive_json()
        if frame.get("type") == "event" and frame.get("event") == name:
            return frame


async def test_an_agent_on_one_process_sees_what_the_others_store_within_a_second(cluster, http):
    a, b, c = (p.url for p in cluster.processes)
    headers = {"Authorization": f"Bearer {cluster.agent_token}"}
    wechat = WeChat(http, cluster)
    async with http.ws_connect(f"{a}/api/v1/agent/ws", headers=headers) as ws:
        assert (await ws.receive_json(timeout=10))["type"] == "hello"
        delivery = await wechat.deliver(text_xml("o-agent", next(_msg_ids), "转人工"), 1, tries=1)  # on B
        assert delivery.acknowledged
        queued = await asyncio.wait_for(next_event(ws, "conversation.queued"), LIVE_S)
        cid = queued["conversation_id"]
        claim = await http.post(f"{c}/api/v1/conversations/{cid}/claim", headers=headers)
        assert claim.status == 200, await claim.text()
        delivery = await wechat.deliver(
            text_xml("o-agent", next(_msg_ids), "我的订单还没到"), 2, tries=1
        )  # on C
        assert delivery.acknowledged
        said = await asyncio.wait_for(next_event(ws, "message.customer"), LIVE_S)
        assert (said["conversation_id"], said["data"]["text"]) == (cid, "我的订单还没到")
    close = await http.post(f"{b}/api/v1/conversations/{cid}/close", headers=headers, json={})
    assert close.status == 200, await close.text()


async def test_queue_positions_and_assignments_are_the_same_on_every_process(cluster, http):
    headers = {"Authorization": f"Bearer {cluster.agent_token}"}
    wechat = WeChat(http, cluster)
    for i in range(3):
        delivery = await wechat.deliver(text_xml(f"o-queue-{i}", next(_msg_ids), "转人工"), i, tries=1)
        assert delivery.acknowledged

    async def views(path: str) -> list[Any]:
        out = []
        for process in cluster.processes:
            async with http.get(f"{process.url}/api/v1{path}", headers=headers) as resp:
                assert resp.status == 200, await resp.text()
                out.append(await resp.json())
        return out

    queues = await views("/queue")
    positions = [[(q["conversation_id"], q["position"]) for q in view["queue"]] for view in queues]
    assert len(positions[0]) >= 3 and positions[0] == positions[1] == positions[2]
    first = positions[0][0][0]
    claim = await http.post(f"{cluster.processes[1].url}/api/v1/conversations/{first}/claim", headers=headers)
    assert claim.status == 200, await claim.text()
    conversations = await views(f"/conversations/{first}")
    assert {(c["state"], c["assignment"]["agent_name"]) for c in conversations} == {("assigned", "甲")}
    after = [[(q["conversation_id"], q["position"]) for q in view["queue"]] for view in await views("/queue")]
    assert after[0] == after[1] == after[2] == [(cid, pos - 1) for cid, pos in positions[0][1:]]


async def burst(
    wechat: WeChat, tag: str, count: int, on_the_way: asyncio.Event, at: int
) -> dict[str, Delivery]:
    """`count` messages from `count` customers, 6 at a time, round robin; `on_the_way` set after `at` of them."""
    results: dict[str, Delivery] = {}
    gate = asyncio.Semaphore(6)

    async def one(i: int) -> None:
        openid = f"o-{tag}-{i}"
        results[openid] = Delivery()
        async with gate:
            if i == at:
                on_the_way.set()
            await wechat.deliver(
                text_xml(openid, next(_msg_ids), "支持哪些支付方式"), i, into=results[openid]
            )

    await asyncio.gather(*(one(i) for i in range(count)))
    return results


def tally(platform: Platform, results: dict[str, Delivery]) -> dict[str, int]:
    """How many customers got 0, 1 or more answers, among those whose message was acknowledged."""
    counts = {"lost": 0, "once": 0, "doubled": 0, "never acknowledged": 0}
    for openid, delivery in results.items():
        got = answers(platform, delivery, openid)
        assert set(got) <= {PAYMENT_ANSWER}
        if not delivery.acknowledged:
            counts["never acknowledged"] += 1
            counts["doubled"] += len(got) > 1
        else:
            counts[{0: "lost", 1: "once"}.get(len(got), "doubled")] += 1
    return counts


async def test_kill_9_of_one_process_mid_burst_loses_nothing_acknowledged(cluster, platform, http):
    wechat = WeChat(http, cluster)
    halfway = asyncio.Event()
    sending = asyncio.create_task(burst(wechat, "kill", 60, halfway, at=20))
    await halfway.wait()
    cluster.kill(2)  # started again by the rolling restart below
    results = await sending
    await settled(cluster, list(results))
    counts = tally(platform, results)
    assert counts["lost"] == counts["doubled"] == 0, counts
    assert counts["once"] >= 58, counts  # WeChat's three tries find a live process


async def test_a_rolling_restart_under_load_loses_nothing(cluster, platform, http):
    wechat = WeChat(http, cluster)
    stop = asyncio.Event()
    results: dict[str, Delivery] = {}

    async def load(worker: int) -> None:
        for n in itertools.count():
            if stop.is_set():
                return
            openid = f"o-roll-{worker}-{n}"
            results[openid] = Delivery()
            xml = text_xml(openid, next(_msg_ids), "支持哪些支付方式")
            await wechat.deliver(xml, worker + n, into=results[openid])

    workers = [asyncio.create_task(load(w)) for w in range(2)]
    try:
        # The one killed above starts first; then each running one: SIGTERM, start again, wait until healthy.
        for index in sorted(range(len(cluster.processes)), key=cluster.running):
            await asyncio.to_thread(cluster.restart, index)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.gather(*workers)
    await settled(cluster, list(results))
    counts = tally(platform, results)
    assert counts["lost"] == counts["doubled"] == counts["never acknowledged"] == 0, counts
    assert counts["once"] >= 10, counts
    assert cluster.tracebacks() == []
