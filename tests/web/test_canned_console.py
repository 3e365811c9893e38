"""Issue 17 item 3 in the agent console (Debian chromium): a canned reply's known placeholders are filled,
an unknown one is asked for in a small inline form, a text with a placeholder left in it is refused with
the reason in Chinese, and agents manage their canned replies in 管理快捷回复."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.web.conftest import Gateway, Guard, running, screenshot, sign_in, watch

DEMO_CANNED = Path(__file__).resolve().parents[2] / "config" / "canned.yaml"


@pytest.fixture
async def seeded(web_settings: Callable[..., Any]) -> AsyncIterator[Gateway]:
    """The browser tests' gateway with the demo's canned replies imported."""
    settings = web_settings(
        handoff={
            "assignment": "manual",
            "job_interval_s": 0.5,
            "default_group": "售前",
            "canned_file": str(DEMO_CANNED),
        }
    )
    async with running(settings) as gateway:
        yield gateway


async def customer_says(gateway: Gateway, user: str, text: str) -> None:
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            gateway.url + "/web/messages", json={"user_id": user, "text": text, "user_name": user}
        )
        assert resp.status == 200


async def customer_sees(gateway: Gateway, user: str) -> list[str]:
    async with aiohttp.ClientSession() as http:
        body = await (await http.get(f"{gateway.url}/web/conversations/{user}/messages")).json()
    return [m["text"] for m in body["messages"]]


async def test_placeholders_filled_asked_for_and_refused(
    seeded: Gateway, new_context: Any, guard: Guard, expect: Any
) -> None:
    gateway = seeded
    token = await gateway.add_agent("小李")
    page = watch(await (await new_context()).new_page(), guard)
    await sign_in(page, gateway, token)
    await expect(page.locator("#conn")).to_have_text("已连接")
    await customer_says(gateway, "张三", "我的快递一直没到，转人工")
    await page.locator("#queue li").filter(has_text="张三").get_by_role("button", name="接入").click()
    await expect(page.locator("#conv-title")).to_have_text("张三")

    reply = page.get_by_label("回复内容")
    # Known placeholders ({customer_name}, {agent_name}) are filled without asking.
    await reply.type("/问候")
    await reply.press("Enter")
    await expect(reply).to_have_value("张三您好，我是客服小李，很高兴为您服务，请问有什么可以帮您？")
    await reply.press("Enter")
    await expect(page.locator("#messages")).to_contain_text("我是客服小李")

    # {order_id} is not known: a small form asks for it, then the text goes in complete.
    await reply.type("/物流催件")
    await reply.press("Enter")
    form = page.get_by_role("group", name="填写快捷回复「物流催件」")
    await expect(form).to_be_visible()
    await form.get_by_label("订单号").fill("20261206001")
    await screenshot(page, "agent-canned-placeholder")
    await form.get_by_label("订单号").press("Enter")
    await expect(form).to_have_count(0)
    await expect(reply).to_have_value(
        "已为您联系快递网点催件，订单 20261206001 有新进展会第一时间通知您，给您添麻烦了，请您耐心等待。"
    )
    await reply.press("Enter")
    await expect(page.locator("#messages")).to_contain_text("订单 20261206001")

    # A placeholder typed by hand (or left in) is refused by the API, the reason shown in Chinese.
    await reply.fill("您的订单 {order_id} 已发货")
    guard_errors = len(guard.errors)
    await reply.press("Enter")
    await expect(page.locator("#reply-error")).to_contain_text("未填写的占位符：{order_id}（订单号）")
    del guard.errors[guard_errors:]  # the 422 is the point here, not a page error
    sent = await customer_sees(gateway, "张三")
    assert any("20261206001" in t for t in sent) and not any("{order_id}" in t for t in sent)
    guard.check()


async def test_agents_manage_their_canned_replies(
    seeded: Gateway, new_context: Any, guard: Guard, expect: Any
) -> None:
    gateway = seeded
    token = await gateway.add_agent("小周", groups=("售前",))
    page = watch(await (await new_context()).new_page(), guard)
    page.on("dialog", lambda d: d.accept())  # confirm() before a delete
    await sign_in(page, gateway, token)
    await page.get_by_role("button", name="快捷回复").click()
    dialog = page.get_by_role("dialog", name="管理快捷回复")
    await expect(dialog).to_be_visible()
    rows = dialog.get_by_role("list", name="快捷回复列表").locator("li")
    await expect(rows.filter(has_text="服务时间")).to_have_count(1)
    # Shared replies belong to admins: an agent gets no edit or delete buttons on them.
    await expect(rows.filter(has_text="服务时间").get_by_role("button")).to_have_count(0)

    await dialog.get_by_label("标题").fill("发货时间")
    await dialog.get_by_label("内容").fill("{customer_name}您好，您的订单 {order_id} 今天发出。")
    await dialog.get_by_role("button", name="保存").click()
    mine = rows.filter(has_text="发货时间")
    await expect(mine).to_contain_text("售前")
    await mine.get_by_role("button", name="编辑 发货时间").click()
    await dialog.get_by_label("内容").fill("{customer_name}您好，您的订单 {order_id} 明天发出。")
    await dialog.get_by_role("button", name="保存").click()
    await expect(mine).to_contain_text("明天发出")
    await screenshot(page, "agent-canned-manage")
    await mine.get_by_role("button", name="删除 发货时间").click()
    await expect(rows.filter(has_text="发货时间")).to_have_count(0)
    titles = [r.title for r in await gateway.runtime.handoff.db.canned()]  # type: ignore[union-attr]
    assert "发货时间" not in titles and "服务时间" in titles
    guard.check()
