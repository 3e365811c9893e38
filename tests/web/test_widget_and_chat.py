"""The embed snippet on a shop's page, and the chat socket's promises (history, resend, escaping)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from gateway.rate_limit import RateLimiter
from tests.conftest import ADMIN_TOKEN
from tests.web.conftest import Gateway, Guard, screenshot, watch

VISITOR = "vtest0123456789abcdef"

SHOP = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>小店</title>
<style>body{{margin:0;font-family:"WenQuanYi Micro Hei",sans-serif;background:#fafafa;color:#333}}
header{{background:#222;color:#fff;padding:18px 32px;font-size:20px}}
main{{display:grid;grid-template-columns:repeat(3,1fr);gap:20px;padding:32px}}
.p{{background:#fff;border-radius:10px;height:220px;padding:16px;box-shadow:0 1px 4px rgba(0,0,0,.08)}}
.p b{{display:block;height:140px;background:#e8edf3;border-radius:8px;margin-bottom:12px}}</style></head>
<body><header>小店 · 秋冬上新</header><main>
<div class="p"><b></b>羊毛围巾 ¥129</div><div class="p"><b></b>加绒卫衣 ¥199</div><div class="p"><b></b>保温杯 ¥89</div>
</main>
<script src="{host}/widget.js" data-kefu-host="{host}"></script></body></html>"""


async def test_the_embed_snippet_opens_the_chat_in_a_frame_on_the_shops_page(
    gateway: Gateway, serve_page: Callable[[str], Awaitable[str]], new_context: Any, guard: Guard, expect: Any
) -> None:
    context = await new_context()
    page = watch(await context.new_page(), guard)
    # The shop is another origin: its own little server on another port of 127.0.0.1.
    await page.goto(await serve_page(SHOP.format(host=gateway.url)))
    button = page.get_by_role("button", name="在线客服")
    await button.click()
    await expect(button).to_have_attribute("aria-expanded", "true")
    chat = page.frame_locator("iframe[title='在线客服']")
    box = chat.get_by_label("输入消息")
    await box.fill("什么时候发货")
    await box.press("Enter")
    await expect(chat.locator(".msg.bot .bubble").last).to_contain_text("48小时内发货")
    await screenshot(page, "widget-embed")
    await page.keyboard.press("Escape")
    await expect(page.locator("iframe[title='在线客服']")).to_be_hidden()
    await context.close()
    guard.check()


async def test_a_returning_visitor_sees_their_history_and_customer_text_is_never_markup(
    gateway: Gateway, new_context: Any, guard: Guard, expect: Any
) -> None:
    context = await new_context(viewport={"width": 390, "height": 760})
    page = watch(await context.new_page(), guard)
    await page.goto(gateway.url + "/chat")
    box = page.get_by_label("输入消息")
    hostile = '<img src=x onerror="window.pwned=1"><b>加粗</b>'
    await box.fill(hostile)
    await box.press("Enter")
    await expect(page.locator(".msg.in .bubble").last).to_have_text(hostile)
    await expect(page.locator(".msg.out").last).to_be_visible()
    assert await page.evaluate("window.pwned") is None
    assert await page.locator(".log img").count() == 0

    # Same browser (same localStorage) later: the history comes back over the socket.
    again = watch(await context.new_page(), guard)
    await page.close()
    await again.goto(gateway.url + "/chat")
    await expect(again.locator(".msg.in .bubble").first).to_have_text(hostile)
    await context.close()
    guard.check()


async def _ws_frames(
    ws: aiohttp.ClientWebSocketResponse, until: str, within: float = 15.0
) -> list[dict[str, Any]]:
    """Frames until one of type `until` (inclusive)."""
    frames: list[dict[str, Any]] = []
    async with asyncio.timeout(within):
        while True:
            frame = json.loads((await ws.receive()).data)
            frames.append(frame)
            if frame["type"] == until:
                return frames


async def test_a_resent_message_is_stored_and_answered_once(gateway: Gateway) -> None:
    url = gateway.url + f"/web/ws?visitor={VISITOR}"
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url)
        history = await _ws_frames(ws, "history")
        assert history[-1]["messages"] == [] and history[-1]["status"]["state"] == "bot"
        await ws.send_json({"type": "message", "client_id": "c1", "text": "怎么开发票"})
        first = await _ws_frames(ws, "status")
        assert [f["type"] for f in first][:1] == ["ack"] and first[0]["duplicate"] is False
        texts = [f["message"]["text"] for f in first if f["type"] == "message"]
        assert texts[0] == "怎么开发票" and "申请开票" in texts[1]
        await ws.close()

        # The connection dropped before the ack arrived; the page resends on reconnect.
        ws = await http.ws_connect(url + "&after=0")
        history = (await _ws_frames(ws, "history"))[-1]
        assert [m["client_id"] for m in history["messages"] if m["direction"] == "in"] == ["c1"]
        await ws.send_json({"type": "message", "client_id": "c1", "text": "怎么开发票"})
        ack = (await _ws_frames(ws, "ack"))[-1]
        assert ack["duplicate"] is True and ack["message_id"] == first[0]["message_id"]
        await ws.close()

        stored = await gateway.runtime.store.messages_for_key(f"web:default:{VISITOR}")
        assert [m.text for m in stored if m.direction == "in"] == ["怎么开发票"]

        bad = await http.get(gateway.url + "/web/ws?visitor=short")
        assert bad.status == 400


async def test_pages_are_utf8_with_a_strict_content_security_policy(gateway: Gateway) -> None:
    async with aiohttp.ClientSession() as http:
        for path in ("/chat", "/agent", "/admin"):
            resp = await http.get(gateway.url + path)
            assert resp.status == 200
            assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
            policy = resp.headers["Content-Security-Policy"]
            assert policy.startswith("default-src 'self'")
            body = await resp.text()
            assert "http://" not in body and "https://" not in body  # nothing from elsewhere
            assert " on" not in body.split("<body", 1)[1].split("<script", 1)[0].replace(" one", "")
        assert (
            "frame-ancestors 'none'"
            in (await http.get(gateway.url + "/agent")).headers["Content-Security-Policy"]
        )
        widget = await http.get(gateway.url + "/widget.js")
        assert widget.headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert (await http.get(gateway.url + "/static/..%2Fpages.py")).status == 404


async def test_the_stats_api_wants_an_admin(gateway: Gateway) -> None:
    agent_token = await gateway.add_agent("普通客服")
    async with aiohttp.ClientSession() as http:
        url = gateway.url + "/admin/api/stats"
        assert (await http.get(url)).status == 401
        assert (await http.get(url, headers={"Authorization": f"Bearer {agent_token}"})).status == 403
        ok = await http.get(url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert ok.status == 200 and (await ok.json())["bucket"] == "hour"
        week = await http.get(
            url + "?from=2026-11-01&to=2026-11-08", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        )
        assert len((await week.json())["buckets"]) == 7
        bad = await http.get(url + "?from=yesterday", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert bad.status == 400 and "ISO 8601" in (await bad.json())["error"]


async def test_an_agent_reply_to_an_offline_visitor_waits_in_their_history(gateway: Gateway) -> None:
    token = await gateway.add_agent("小赵")
    auth = {"Authorization": f"Bearer {token}"}
    url = gateway.url + f"/web/ws?visitor={VISITOR}"
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(url)
        await _ws_frames(ws, "history")
        await ws.send_json({"type": "message", "client_id": "h1", "text": "转人工"})
        frames = await _ws_frames(ws, "status")
        seen = max(f["message"]["id"] for f in frames if f["type"] == "message")
        await ws.close()  # the visitor leaves

        queue = await (await http.get(gateway.url + "/api/v1/queue", headers=auth)).json()
        cid = queue["queue"][0]["conversation_id"]
        assert (
            await http.post(gateway.url + f"/api/v1/conversations/{cid}/claim", headers=auth)
        ).status == 200
        sent = await http.post(
            gateway.url + f"/api/v1/conversations/{cid}/messages",
            json={"text": "您好，我来帮您"},
            headers=auth,
        )
        assert sent.status == 201
        for _ in range(100):  # the outbox delivers (nobody listening is not a failure)
            counts = await gateway.runtime.store.outbox_counts()
            if counts["pending"] == counts["sending"] == 0:
                break
            await asyncio.sleep(0.05)
        assert counts["failed"] == counts["undeliverable"] == 0

        ws = await http.ws_connect(url + f"&after={seen}")
        history = (await _ws_frames(ws, "history"))[-1]
        agent_lines = [m for m in history["messages"] if m["sender"] == "agent"]
        assert [(m["text"], m["sender_name"]) for m in agent_lines] == [("您好，我来帮您", "小赵")]
        assert history["status"] == {
            "state": "assigned",
            "position": None,
            "agent_name": "小赵",
            "csat_pending": False,
        }
        await ws.close()


async def test_a_visitor_typing_too_fast_sees_a_notice_and_can_send_the_line_again(
    gateway: Gateway, new_context: Any, guard: Guard, expect: Any
) -> None:
    clock = FakeClock()
    hub = gateway.runtime.adapters[("web", "default")]
    hub.rate_limit = RateLimiter(per_minute=60, burst=2, clock=clock)  # type: ignore[attr-defined]
    context = await new_context(viewport={"width": 390, "height": 760})
    page = watch(await context.new_page(), guard)
    await page.goto(gateway.url + "/chat")
    await expect(page.locator("#status")).to_contain_text("智能客服在线")
    box = page.get_by_label("输入消息")
    for text in ("你好", "怎么退货", "在吗在吗"):
        await box.fill(text)
        await box.press("Enter")

    refused = page.locator(".msg.in.failed")
    await expect(refused.locator(".bubble")).to_have_text("在吗在吗")
    await expect(refused.locator(".meta")).to_contain_text("您发送得太快了，请稍等几秒再发。")
    await screenshot(page, "chat-rate-limited")
    visitor = await page.evaluate("localStorage.getItem('kefu.visitor')")
    key = f"web:default:{visitor}"
    stored = await gateway.runtime.store.messages_for_key(key, direction="in")
    assert [m.text for m in stored] == ["你好", "怎么退货"]

    clock.now += 1  # a second later
    await refused.get_by_role("button", name="重发").click()
    await expect(page.locator(".msg.failed")).to_have_count(0)
    await expect(page.locator(".msg.pending")).to_have_count(0)
    await expect(page.locator(".msg.in .bubble")).to_have_text(["你好", "怎么退货", "在吗在吗"])
    stored = await gateway.runtime.store.messages_for_key(key, direction="in")
    assert [m.text for m in stored] == ["你好", "怎么退货", "在吗在吗"]
    await context.close()
    guard.check()


class FakeClock:
    """Seconds that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now
