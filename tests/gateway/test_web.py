"""The web chat channel over real HTTP: the webhook, signatures, polling and the reply callback."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from gateway.app import create_app
from gateway.channels.base import Outgoing
from gateway.channels.web.adapter import sign
from gateway.keys import RUNTIME
from gateway.message import Message

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


async def post_raw(client: Any, raw: bytes, signature: str | None = None) -> Any:
    """POST a raw JSON body to /web/messages, signed when a signature is given."""
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-Kefu-Signature"] = signature
    return await client.post("/web/messages", data=raw, headers=headers)


async def test_signed_requests_when_a_secret_is_set(aiohttp_client: Any, settings_factory: Any) -> None:
    client = await aiohttp_client(create_app(settings_factory(channels={"web": {"secret": SECRET}})))
    raw = json.dumps({"user_id": "s1", "text": "怎么退货"}, ensure_ascii=False).encode()

    missing = await post_raw(client, raw)
    assert missing.status == 403 and "missing X-Kefu-Signature" in (await missing.json())["error"]
    assert (await post_raw(client, raw, sign("guess", raw))).status == 403
    assert (await post_raw(client, raw, sign(SECRET, raw))).status == 200

    client.app[RUNTIME].adapters[("web", "default")].inner.clock = lambda: 1_800_000_000.0
    path = "/web/conversations/s1/messages?after=0&ts=1800000000"
    assert (await client.get(path)).status == 403
    polled = await client.get(path, headers={"X-Kefu-Signature": sign(SECRET, path.encode())})
    assert polled.status == 200 and len((await polled.json())["messages"]) == 2


async def test_signed_gets_carry_a_timestamp_within_the_window(
    aiohttp_client: Any, settings_factory: Any
) -> None:
    client = await aiohttp_client(create_app(settings_factory(channels={"web": {"secret": SECRET}})))
    client.app[RUNTIME].adapters[("web", "default")].inner.clock = lambda: 1_800_000_000.0

    async def get(path: str) -> Any:
        return await client.get(path, headers={"X-Kefu-Signature": sign(SECRET, path.encode())})

    base = "/web/conversations/s1/messages?after=0"
    no_ts = await get(base)  # signed, but replayable forever: refused
    assert no_ts.status == 403 and "ts=" in (await no_ts.json())["error"]
    for ts, status in (
        ("1800000299", 200),
        ("1799999701", 200),
        ("1800000301", 403),
        ("1", 403),
        ("-5", 403),
    ):
        assert (await get(f"{base}&ts={ts}")).status == status, ts


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


class FakeClock:
    """Seconds that move only when the test says so (swapped into the app's rate limiter)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def limited_app(settings_factory: Any, **web_settings: Any) -> tuple[web.Application, FakeClock]:
    """A gateway whose web rate limiter runs on a fake clock."""
    app = create_app(settings_factory(channels={"web": web_settings}))
    clock = FakeClock()
    limiter = app[RUNTIME].adapters[("web", "default")].rate_limit  # type: ignore[attr-defined]
    limiter.clock = clock
    return app, clock


async def test_a_visitor_posting_too_fast_gets_429_and_the_message_is_not_stored(
    aiohttp_client: Any, settings_factory: Any
) -> None:
    app, clock = limited_app(settings_factory, rate_limit_burst=2, rate_limit_per_minute=30)
    client = await aiohttp_client(app)
    for text in ("你好", "怎么退货"):
        assert (await client.post("/web/messages", json={"user_id": "fast", "text": text})).status == 200

    refused = await client.post("/web/messages", json={"user_id": "fast", "text": "在吗在吗"})
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "2"  # 30 a minute: one every 2 s
    assert await refused.json() == {
        "error": "您发送得太快了，请稍等几秒再发。",
        "code": "rate_limited",
        "retry_after": 2,
    }
    stored = await client.app[RUNTIME].store.messages_for_key("web:default:fast", direction="in")
    assert [m.text for m in stored] == ["你好", "怎么退货"]
    # Someone else is not slowed down by it, and the visitor is served again after the wait.
    assert (await client.post("/web/messages", json={"user_id": "calm", "text": "你好"})).status == 200
    clock.now += 2
    again = await client.post("/web/messages", json={"user_id": "fast", "text": "在吗在吗"})
    assert again.status == 200


async def test_a_forged_request_spends_nobodys_tokens(aiohttp_client: Any, settings_factory: Any) -> None:
    app, _clock = limited_app(settings_factory, secret=SECRET, rate_limit_burst=1)
    client = await aiohttp_client(app)
    raw = json.dumps({"user_id": "victim", "text": "你好"}, ensure_ascii=False).encode()
    for _ in range(3):
        assert (await post_raw(client, raw, sign("guess", raw))).status == 403
    assert (await post_raw(client, raw, sign(SECRET, raw))).status == 200


async def test_the_rate_limit_can_be_switched_off(aiohttp_client: Any, settings_factory: Any) -> None:
    settings = settings_factory(channels={"web": {"rate_limit_per_minute": None, "rate_limit_burst": 1}})
    client = await aiohttp_client(create_app(settings))
    for i in range(4):
        resp = await client.post("/web/messages", json={"user_id": "bulk", "text": f"第{i}条"})
        assert resp.status == 200


async def test_the_same_message_id_from_two_visitors_is_two_messages(app_client: Any) -> None:
    alice = await (
        await app_client.post(
            "/web/messages", json={"user_id": "alice", "text": "怎么退货", "message_id": "1"}
        )
    ).json()
    bob = await (
        await app_client.post(
            "/web/messages", json={"user_id": "bob", "text": "怎么开发票", "message_id": "1"}
        )
    ).json()
    assert bob["duplicate"] is False and bob["conversation_id"] != alice["conversation_id"]
    assert bob["replies"][0]["text"].startswith("您好，确认收货后")
    history = await (await app_client.get("/web/conversations/bob/messages")).json()
    assert [m["text"] for m in history["messages"] if m["sender"] == "customer"] == ["怎么开发票"]
    # A user_id with a colon cannot collide with another visitor's id + message_id.
    first = await (
        await app_client.post("/web/messages", json={"user_id": "a:b", "text": "你好", "message_id": "c"})
    ).json()
    second = await (
        await app_client.post("/web/messages", json={"user_id": "a", "text": "你好", "message_id": "b:c"})
    ).json()
    assert second["duplicate"] is False and second["conversation_id"] != first["conversation_id"]
    # Long ids still fit the stored column and still dedupe.
    long_payload = {"user_id": "u" * 128, "text": "你好", "message_id": "m" * 128}
    once = await (await app_client.post("/web/messages", json=long_payload)).json()
    again = await (await app_client.post("/web/messages", json=long_payload)).json()
    assert once["duplicate"] is False and again["duplicate"] is True
