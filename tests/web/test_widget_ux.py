"""The widget as a shop's visitor meets it, in real chromium: the title from the embed snippet, a welcome with
common questions, suggestions shown once, a close button, unread replies counted on the launcher, full
screen on a phone without the page scrolling behind it, and one rating bar of five labelled buttons."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from tests.web.conftest import Gateway, Guard, screenshot, watch

SHOP = """<!doctype html><html lang="zh-CN"><head><meta charset="utf-8"><title>小店</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{margin:0;font-family:"WenQuanYi Micro Hei",sans-serif;background:#fafafa;color:#333}}
header{{background:#222;color:#fff;padding:18px 32px;font-size:20px}}
main{{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:20px;padding:32px}}
.p{{background:#fff;border-radius:10px;height:220px;padding:16px;box-shadow:0 1px 4px rgba(0,0,0,.08)}}
.p b{{display:block;height:140px;background:#e8edf3;border-radius:8px;margin-bottom:12px}}</style></head>
<body><header>小店 · 秋冬上新</header><main>
<div class="p"><b></b>羊毛围巾 ¥129</div><div class="p"><b></b>加绒卫衣 ¥199</div><div class="p"><b></b>保温杯 ¥89</div>
<div class="p"><b></b>羊绒手套 ¥69</div><div class="p"><b></b>雪地靴 ¥259</div><div class="p"><b></b>毛线帽 ¥49</div>
</main>
<script src="{host}/widget.js" data-kefu-host="{host}" data-kefu-title="联系客服"></script></body></html>"""
PHONE = {"width": 390, "height": 760}


@pytest.fixture
async def shop(gateway: Gateway, serve_page: Callable[[str], Awaitable[str]]) -> str:
    """A shop on another origin (another port of 127.0.0.1) with the embed snippet."""
    return await serve_page(SHOP.format(host=gateway.url))


async def agent_call(gateway: Gateway, token: str, method: str, path: str, **kw: Any) -> Any:
    async with aiohttp.ClientSession() as http:
        resp = await http.request(
            method, gateway.url + "/api/v1" + path, headers={"Authorization": f"Bearer {token}"}, **kw
        )
        assert resp.status < 300, await resp.text()
        return await resp.json()


async def test_on_a_desktop_the_widget_greets_counts_unread_replies_and_closes(
    gateway: Gateway, shop: str, new_context: Any, guard: Guard, expect: Any
) -> None:
    context = await new_context(viewport={"width": 1100, "height": 760})
    page = watch(await context.new_page(), guard)
    await page.goto(shop)
    launcher = page.get_by_role("button", name="联系客服")  # data-kefu-title
    await launcher.click()
    chat = page.frame_locator("iframe[title='联系客服']")
    await expect(chat.get_by_role("heading", name="联系客服")).to_be_visible()

    # The welcome and the common questions, before anything was typed; a question is one tap.
    welcome = chat.get_by_label("欢迎语")
    await expect(welcome).to_contain_text("欢迎")
    common = chat.get_by_role("group", name="常见问题").get_by_role("button")
    await expect(common).to_have_count(4)
    await common.filter(has_text="什么时候发货").click()
    await expect(chat.locator(".msg.bot .bubble").last).to_contain_text("48小时内发货")

    # Suggestions once: buttons, and no numbered copy of them in the bubble.
    box = chat.get_by_label("输入消息")
    await box.fill("退的钱")
    await box.press("Enter")
    last = chat.locator(".msg.bot").last
    await expect(last.get_by_role("button", name="退款多久到账")).to_be_visible()
    assert "1." not in await last.locator(".bubble").inner_text()
    await screenshot(page, "widget-desktop")

    # 转人工, then the close button; an agent's two replies show as 2 on the launcher.
    await chat.get_by_role("button", name="转人工").click()
    await expect(chat.locator("#status")).to_contain_text("排队")
    # The 留言 notice (stored by the handoff's step after the answer) is read before the window closes.
    await expect(chat.locator(".msg").last).to_contain_text("留言")
    await chat.get_by_role("button", name="关闭聊天窗口").click()
    await expect(page.locator("iframe[title='联系客服']")).to_be_hidden()
    token = await gateway.add_agent("小王")
    queue = await agent_call(gateway, token, "GET", "/queue")
    cid = queue["queue"][0]["conversation_id"]
    await agent_call(gateway, token, "POST", f"/conversations/{cid}/claim")
    await agent_call(
        gateway, token, "POST", f"/conversations/{cid}/messages", json={"text": "您好，我是小王"}
    )
    await expect(page.get_by_role("button", name="联系客服，2 条未读消息")).to_be_visible()
    await expect(page.locator("[data-kefu=unread]")).to_have_text("2")
    await screenshot(page, "widget-unread")
    await page.locator("[data-kefu=launcher]").click()
    await expect(chat.locator(".msg.agent .bubble").last).to_have_text("您好，我是小王")
    await expect(page.locator("[data-kefu=unread]")).to_be_hidden()
    await context.close()
    guard.check()


async def test_on_a_phone_the_widget_is_full_screen_and_rating_is_one_bar(
    gateway: Gateway, shop: str, new_context: Any, guard: Guard, expect: Any
) -> None:
    context = await new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = watch(await context.new_page(), guard)
    await page.goto(shop)
    launcher = page.locator("[data-kefu=launcher]")
    await launcher.click()
    frame = page.locator("iframe[title='联系客服']")
    await expect(frame).to_be_visible()
    box = await frame.bounding_box()
    assert box == {"x": 0, "y": 0, "width": PHONE["width"], "height": PHONE["height"]}
    await expect(launcher).to_be_hidden()  # nothing of the shop peeks over the chat
    assert await page.evaluate("document.documentElement.style.overflow") == "hidden"
    chat = page.frame_locator("iframe[title='联系客服']")
    await expect(chat.get_by_role("group", name="常见问题")).to_be_visible()
    await screenshot(page, "widget-phone")

    # Rating: five labelled buttons, nothing else.
    await chat.get_by_role("button", name="转人工").click()
    # Queued once the chat says so: the click only sent the message (the queue was read too early, once).
    await expect(chat.locator("#status")).to_contain_text("排队")
    token = await gateway.add_agent("小王")
    queue = await agent_call(gateway, token, "GET", "/queue")
    cid = queue["queue"][0]["conversation_id"]
    await agent_call(gateway, token, "POST", f"/conversations/{cid}/claim")
    await agent_call(gateway, token, "POST", f"/conversations/{cid}/close", json={"tags": []})
    rating = chat.get_by_role("group", name="请为本次服务打分")
    await expect(rating).to_be_visible()
    buttons = rating.get_by_role("button")
    await expect(buttons).to_have_text(["★非常不满意", "★★不满意", "★★★一般", "★★★★满意", "★★★★★非常满意"])
    await screenshot(page, "widget-phone-rating")
    await rating.get_by_role("button", name="4 分，满意").click()
    await expect(chat.locator(".msg.system .bubble").last).to_contain_text("感谢您的评价")

    await chat.get_by_role("button", name="关闭聊天窗口").click()
    await expect(frame).to_be_hidden()
    await expect(launcher).to_be_visible()
    assert await page.evaluate("document.documentElement.style.overflow") == ""
    await context.close()
    guard.check()
