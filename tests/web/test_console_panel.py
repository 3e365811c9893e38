"""The agent console in a real browser: unread counts and the tab title, desktop notifications with the
customer's words, the customer panel (masked phone, history, tags), history search, and the phone layout.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import FIXTURES
from tests.fakes.action_servers import TEST_ACTIONS
from tests.web.conftest import Gateway, Guard, running, screenshot, watch

PHONE = "13812345678"
# Records what the console shows as desktop notifications (the real Notification still runs).
RECORD_NOTIFICATIONS = """
(() => {
  const Real = window.Notification;
  window.__notes = [];
  window.Notification = class extends Real {
    constructor(title, options) { super(title, options); window.__notes.push({ title, body: options && options.body }); }
  };
})();
"""


async def say(gateway: Gateway, user: str, text: str) -> int:
    body = {"user_id": user, "text": text}
    async with aiohttp.ClientSession() as http, http.post(gateway.url + "/web/messages", json=body) as resp:
        assert resp.status == 200
        return int((await resp.json())["conversation_id"])


async def claim(gateway: Gateway, token: str, cid: int) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway.url}/api/v1/conversations/{cid}/claim", headers={"Authorization": f"Bearer {token}"}
        ) as resp,
    ):
        assert resp.status == 200, await resp.text()


async def sign_in(page: Any, gateway: Gateway, token: str, expect: Any) -> None:
    await page.goto(gateway.url + "/agent")
    await page.get_by_label("客服令牌").fill(token)
    await page.get_by_role("button", name="登录").click()
    await expect(page.locator("#conn")).to_have_text("已连接")


async def test_unread_counts_title_and_a_notification_with_the_customers_words(
    gateway: Gateway, new_context: Any, guard: Guard, expect: Any
) -> None:
    token = await gateway.add_agent("小王")
    first = await say(gateway, "visitor-aaaa", "转人工")
    second = await say(gateway, PHONE, "转人工")
    await claim(gateway, token, first)
    await claim(gateway, token, second)

    context = await new_context(viewport={"width": 1280, "height": 760})
    await context.grant_permissions(["notifications"], origin=gateway.url)
    await context.add_init_script(RECORD_NOTIFICATIONS)
    page = watch(await context.new_page(), guard)
    await sign_in(page, gateway, token, expect)
    await expect(page.locator("#mine li")).to_have_count(2)
    await page.locator("#mine li").first.click()  # the agent reads one conversation
    current = int(await page.locator("#mine li[aria-current=true]").get_attribute("data-id"))
    other = second if current == first else first
    other_user = PHONE if other == second else "visitor-aaaa"

    await say(gateway, other_user, "我的快递三天没动了")
    await say(gateway, other_user, "能帮我查一下吗")
    badge = page.locator(f"#mine li[data-id='{other}'] .unread-count")
    await expect(badge).to_have_text("2")
    await expect(page).to_have_title(re.compile(r"^\(2\) 客服工作台"))
    await screenshot(page, "agent-console-unread")

    # The agent switches to another window: the next line is a desktop notification with the customer's
    # own words and a display name — not the bot's reply, not the raw visitor id.
    await page.evaluate("window.dispatchEvent(new Event('blur'))")
    await say(gateway, other_user, "订单号是 A12345678")
    await expect(badge).to_have_text("3")
    notes = await page.evaluate("window.__notes")
    assert notes and notes[-1]["body"] == "订单号是 A12345678", notes
    assert "visitor-aaaa" not in notes[-1]["title"] and PHONE not in notes[-1]["title"]
    assert notes[-1]["title"] == "客户 网站访客"

    await page.evaluate("window.dispatchEvent(new Event('focus'))")
    await page.locator(f"#mine li[data-id='{other}']").click()
    await expect(badge).to_have_count(0)
    await expect(page).to_have_title("客服工作台 · kefu")
    await context.close()
    guard.check()


async def test_customer_panel_tags_history_and_search(
    gateway: Gateway, new_context: Any, guard: Guard, expect: Any
) -> None:
    token = await gateway.add_agent("小王")
    old = await say(gateway, PHONE, "我要投诉，快递盒子压坏了")
    await claim(gateway, token, old)
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {token}"}
        async with http.post(
            f"{gateway.url}/api/v1/conversations/{old}/close", headers=auth, json={}
        ) as resp:
            assert resp.status == 200
    await say(gateway, PHONE, "5")  # the rating closes the first conversation for good
    new = await say(gateway, PHONE, "转人工")
    assert new != old
    await claim(gateway, token, new)

    context = await new_context(viewport={"width": 1280, "height": 760})
    page = watch(await context.new_page(), guard)
    await sign_in(page, gateway, token, expect)
    await page.locator(f"#mine li[data-id='{new}']").click()
    panel = page.locator("#customer")
    await expect(panel).to_contain_text("138****5678")
    await expect(panel).not_to_contain_text(PHONE)
    await expect(panel).to_contain_text("历史会话1 次")

    await page.get_by_label("添加标签").fill("老客户")
    await page.get_by_label("添加标签").press("Enter")
    await expect(page.locator("#customer-tags .tag")).to_have_text(["老客户×"])
    await screenshot(page, "agent-console-customer")
    await page.reload()  # stored, not just drawn
    await page.locator(f"#mine li[data-id='{new}']").click()
    await expect(page.locator("#customer-tags .tag")).to_have_text(["老客户×"])

    # The earlier conversation, from the panel's history and from a search.
    await page.locator("#history a", has_text=f"#{old}").click()
    await expect(page.locator("#messages")).to_contain_text("快递盒子压坏了")
    await page.get_by_label("搜索历史消息").fill("盒子")
    await page.get_by_label("搜索历史消息").press("Enter")
    result = page.locator("#search-list li", has_text="盒子")
    await expect(result).to_have_count(1)
    await expect(result.locator("mark")).to_have_text("盒子")
    await page.locator(f"#mine li[data-id='{new}']").click()
    await result.click()
    await expect(page.locator("#conv-title")).to_be_visible()
    await expect(page.locator("#messages")).to_contain_text("快递盒子压坏了")
    await context.close()
    guard.check()


async def test_on_a_phone_the_console_is_one_column(
    gateway: Gateway, new_context: Any, guard: Guard, expect: Any
) -> None:
    token = await gateway.add_agent("小王")
    cid = await say(gateway, "phone-visitor", "转人工")
    await claim(gateway, token, cid)
    context = await new_context(viewport={"width": 390, "height": 760}, is_mobile=True, has_touch=True)
    page = watch(await context.new_page(), guard)
    await sign_in(page, gateway, token, expect)
    sidebar, conversation = page.locator(".sidebar"), page.locator("#conversation")
    await expect(sidebar).to_be_visible()
    await expect(conversation).to_be_hidden()
    box = await sidebar.bounding_box()
    assert box is not None and box["x"] == 0 and box["width"] >= 380  # the whole width, no columns
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390

    await page.locator(f"#mine li[data-id='{cid}']").tap()
    await expect(conversation).to_be_visible()
    await expect(sidebar).to_be_hidden()
    reply = page.get_by_label("回复内容")
    box = await reply.bounding_box()
    assert box is not None and box["width"] >= 330
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await screenshot(page, "agent-console-phone")
    await page.get_by_role("button", name="返回会话列表").tap()
    await expect(sidebar).to_be_visible()
    await context.close()
    guard.check()


@pytest.fixture
async def shop_gateway(web_settings: Callable[..., Any], tmp_path: Path) -> AsyncIterator[Gateway]:
    """The gateway with the test actions and `actions.order_info` (the console's 查询订单信息)."""
    settings = web_settings(
        kb={"paths": [str(tmp_path / "faq"), str(FIXTURES / "faq_actions")], "watch": False},
        actions={"modules": [TEST_ACTIONS], "timeout_s": 20, "order_info": "action_order_status"},
    )
    async with running(settings) as gateway:
        yield gateway


async def test_the_agent_looks_up_the_customers_order_from_the_panel(
    shop_gateway: Gateway, new_context: Any, guard: Guard, expect: Any
) -> None:
    gateway = shop_gateway
    token = await gateway.add_agent("小王")
    await say(gateway, "buyer-7", "我的快递到哪了")
    await say(gateway, "buyer-7", "A12345678")  # the form's order number, kept as the order_id slot
    cid = await say(gateway, "buyer-7", "转人工")
    await claim(gateway, token, cid)
    context = await new_context(viewport={"width": 1280, "height": 760})
    page = watch(await context.new_page(), guard)
    await sign_in(page, gateway, token, expect)
    await page.locator(f"#mine li[data-id='{cid}']").click()
    await page.get_by_role("button", name="查询订单信息").click()
    await expect(page.locator("#order-result")).to_have_text("您的订单A12345678已到达【上海转运中心】")
    # Shown to the agent only: the conversation still has just the bot's one answer of the form.
    await page.locator(f"#mine li[data-id='{cid}']").click()
    await expect(page.locator("#messages .bubble", has_text="上海转运中心")).to_have_count(1)
    await context.close()
    guard.check()
