"""The chat widget's socket `/web/ws` over real HTTP: a visitor typing faster than the rate limit is told
to slow down, and the extra lines are neither answered nor stored; all their tabs share one bucket."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gateway.keys import RUNTIME
from tests.gateway.test_web import limited_app

VISITOR = "vfast0123456789abcdef"
KEY = f"web:default:{VISITOR}"
SLOW_DOWN = "您发送得太快了，请稍等几秒再发。"


async def frame_where(
    ws: Any, match: Callable[[dict[str, Any]], bool], within: float = 15.0
) -> dict[str, Any]:
    """The next frame `match` accepts (pushed messages and statuses in between are skipped)."""
    async with asyncio.timeout(within):
        while not match(frame := await ws.receive_json()):
            pass
    return frame


async def say(ws: Any, client_id: str, text: str) -> dict[str, Any]:
    """Send a line; the server's answer to it: its ack, or an error naming the client id."""
    await ws.send_json({"type": "message", "client_id": client_id, "text": text})
    return await frame_where(ws, lambda f: f["type"] in ("ack", "error") and f.get("client_id") == client_id)


async def open_tab(client: Any) -> Any:
    ws = await client.ws_connect(f"/web/ws?visitor={VISITOR}")
    assert (await ws.receive_json(timeout=5))["type"] == "history"
    return ws


async def inbound(client: Any) -> list[str]:
    rows = await client.app[RUNTIME].store.messages_for_key(KEY, direction="in")
    return [r.text for r in rows]


async def test_a_visitor_typing_too_fast_is_asked_to_wait_and_the_line_is_not_stored(
    aiohttp_client: Any, settings_factory: Any
) -> None:
    app, clock = limited_app(settings_factory, rate_limit_burst=2, rate_limit_per_minute=60)
    client = await aiohttp_client(app)
    ws = await open_tab(client)
    assert (await say(ws, "c1", "你好"))["type"] == "ack"
    assert (await say(ws, "c2", "怎么退货"))["type"] == "ack"

    refused = await say(ws, "c3", "在吗")
    assert refused == {
        "type": "error",
        "code": "rate_limited",
        "client_id": "c3",
        "error": SLOW_DOWN,
        "retry_after": 1,
    }
    assert await inbound(client) == ["你好", "怎么退货"]

    # A second later the same line goes through (and pings are never limited).
    await ws.send_json({"type": "ping"})
    await frame_where(ws, lambda f: f["type"] == "pong")
    clock.now += 1
    assert (await say(ws, "c3", "在吗"))["type"] == "ack"
    assert await inbound(client) == ["你好", "怎么退货", "在吗"]
    await ws.close()


async def test_two_tabs_and_the_http_webhook_share_the_visitors_bucket(
    aiohttp_client: Any, settings_factory: Any
) -> None:
    app, _clock = limited_app(settings_factory, rate_limit_burst=2, rate_limit_per_minute=60)
    client = await aiohttp_client(app)
    first, second = await open_tab(client), await open_tab(client)
    assert (await say(first, "a1", "你好"))["type"] == "ack"
    assert (await say(second, "b1", "怎么开发票"))["type"] == "ack"
    assert (await say(second, "b2", "在吗"))["code"] == "rate_limited"
    assert (await say(first, "a2", "在吗"))["code"] == "rate_limited"
    posted = await client.post("/web/messages", json={"user_id": VISITOR, "text": "在吗"})
    assert posted.status == 429
    assert await inbound(client) == ["你好", "怎么开发票"]
    await first.close()
    await second.close()
