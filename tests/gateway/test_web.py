"""The web chat channel over real HTTP: the webhook, signatures, polling and the reply callback."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from gateway.app import create_app
from gateway.channels.base import Outgoing
from gateway.channels.web import sign
from gateway.message import Message
from gateway.runtime import RUNTIME

SECRET = "web-shared-secret"


async def test_a_visitor_asks_and_gets_the_faq_answer(app_client: Any) -> None:
    resp = await app_client.post(
        "/web/messages", json={"user_id": "visitor-1", "text": "怎么开发票", "user_name": "小李"}
    )
    assert resp.status == 200
    body = await resp.json()
    assert body["duplicate"] is False and isinstance(body["conversation_id"], int)
    (reply,) = body["replies"]
    assert (
        reply["sender"] == "bot"
        and reply["text"].startswith("您好，确认收货后")
        and reply["suggestions"] == []
    )


async def test_a_resent_message_id_gets_the_same_replies(app_client: Any) -> None:
    payload = {"user_id": "v2", "text": "什么时候发货", "message_id": 42}
    first = await (await app_client.post("/web/messages", json=payload)).json()
    again = await (await app_client.post("/web/messages", json=payload)).json()
    assert again["duplicate"] is True
    assert again["replies"] == first["replies"] and again["message_id"] == first["message_id"]


async def test_polling_returns_the_conversation_after_a_cursor(app_client: Any) -> None:
    await app_client.post("/web/messages", json={"user_id": "v3", "text": "你好"})
    resp = await app_client.get("/web/conversations/v3/messages")
    body = await resp.json()
    assert [(m["direction"], m["sender"]) for m in body["messages"]] == [("in", "customer"), ("out", "bot")]
    cursor = body["after"]
    await app_client.post("/web/messages", json={"user_id": "v3", "text": "怎么退货"})
    newer = await (await app_client.get("/web/conversations/v3/messages", params={"after": cursor})).json()
    assert [m["text"] for m in newer["messages"]][0] == "怎么退货"
    assert all(m["id"] > cursor for m in newer["messages"])
    bad = await app_client.get("/web/conversations/v3/messages", params={"after": "x"})
    assert bad.status == 400 and "after" in (await bad.json())["error"]


async def test_signed_requests_when_a_secret_is_set(aiohttp_client: Any, settings_factory: Any) -> None:
    client = await aiohttp_client(create_app(settings_factory(channels={"web": {"secret": SECRET}})))
    raw = json.dumps({"user_id": "s1", "text": "怎么退货"}, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json"}

    missing = await client.post("/web/messages", data=raw, headers=headers)
    assert missing.status == 403 and "missing X-Kefu-Signature" in (await missing.json())["error"]
    forged = await client.post(
        "/web/messages", data=raw, headers={**headers, "X-Kefu-Signature": sign("guess", raw)}
    )
    assert forged.status == 403
    good = await client.post(
        "/web/messages", data=raw, headers={**headers, "X-Kefu-Signature": sign(SECRET, raw)}
    )
    assert good.status == 200

    path = "/web/conversations/s1/messages?after=0"
    assert (await client.get(path)).status == 403
    polled = await client.get(path, headers={"X-Kefu-Signature": sign(SECRET, path.encode())})
    assert polled.status == 200 and len((await polled.json())["messages"]) == 2


async def test_later_replies_are_posted_to_the_callback_signed(
    aiohttp_client: Any, aiohttp_server: Any, settings_factory: Any
) -> None:
    received: list[tuple[dict[str, Any], str]] = []
    arrived = asyncio.Event()

    async def callback(request: web.Request) -> web.Response:
        raw = await request.read()
        assert request.headers["X-Kefu-Signature"] == sign(SECRET, raw)
        received.append((json.loads(raw), request.headers["X-Kefu-Signature"]))
        arrived.set()
        return web.Response(status=204)

    upstream = web.Application()
    upstream.router.add_post("/kefu/callback", callback)
    server = await aiohttp_server(upstream)
    settings = settings_factory(
        channels={"web": {"secret": SECRET, "callback_url": str(server.make_url("/kefu/callback"))}}
    )
    client = await aiohttp_client(create_app(settings))
    runtime = client.app[RUNTIME]

    outbox_id = await runtime.outbox.enqueue(
        Outgoing(
            "web",
            "default",
            "web:default:cb1",
            "客服小美：您的退款已经处理好了",
            sender="agent",
            target={"user_id": "cb1"},
        )
    )
    await asyncio.wait_for(arrived.wait(), 5)
    body, _signature = received[0]
    assert body == {
        "user_id": "cb1",
        "conversation_key": "web:default:cb1",
        "text": "客服小美：您的退款已经处理好了",
        "sender": "agent",
    }
    for _ in range(50):
        row = await runtime.store.outbox(outbox_id)
        if row is not None and row.status == "sent":
            break
        await asyncio.sleep(0.02)
    assert row is not None and row.status == "sent" and row.attempts == 1


async def test_without_a_callback_pushed_replies_wait_for_the_poll(app_client: Any) -> None:
    runtime = app_client.app[RUNTIME]
    first = await (await app_client.post("/web/messages", json={"user_id": "p1", "text": "你好"})).json()
    result = await runtime.pipeline.handle(
        Message(
            channel="web", account="default", conversation_key="web:default:p1", user_id="p1", text="怎么退货"
        )
    )
    (outbox_id,) = await runtime.pipeline.push_replies(result)
    for _ in range(50):
        row = await runtime.store.outbox(outbox_id)
        if row is not None and row.status == "sent":
            break
        await asyncio.sleep(0.02)
    assert row is not None and row.status == "sent"
    polled = await (
        await app_client.get("/web/conversations/p1/messages", params={"after": first["message_id"]})
    ).json()
    assert result.replies[0].text in [m["text"] for m in polled["messages"]]
