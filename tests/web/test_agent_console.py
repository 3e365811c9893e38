"""The agent console beyond the happy path: several conversations at once without losing drafts,
canned replies found with "/", internal notes, and a waiting customer turning red after a minute."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.web.conftest import Gateway, Guard, screenshot, sign_in, watch


async def customer_says(gateway: Gateway, user: str, text: str) -> None:
    async with aiohttp.ClientSession() as http:
        resp = await http.post(
            gateway.url + "/web/messages", json={"user_id": user, "text": text, "user_name": user}
        )
        assert resp.status == 200


async def test_two_chats_keep_their_drafts_canned_replies_and_notes(
    gateway: Gateway, new_context: Any, guard: Guard, expect: Any
) -> None:
    token = await gateway.add_agent("小李")
    agent_info = await gateway.runtime.handoff.db.agent_by_name("小李")  # type: ignore[union-attr]
    assert agent_info is not None
    await gateway.runtime.handoff.db.add_canned(  # type: ignore[union-attr]
        "退款进度", "{customer_name}您好，退款已提交，1–3 个工作日原路到账。", None, agent_info.id
    )

    context = await new_context()
    page = watch(await context.new_page(), guard)
    await page.clock.install()
    await sign_in(page, gateway, token)
    await expect(page.locator("#conn")).to_have_text("已连接")

    await customer_says(gateway, "张三", "我要投诉，东西坏了")
    await customer_says(gateway, "李四", "转人工")
    queue = page.locator("#queue li")
    await expect(queue).to_have_count(2)
    await expect(queue.first).to_contain_text("优先")  # the complaint comes first
    await page.clock.fast_forward("01:05")
    await expect(queue.first.locator(".wait")).to_have_class("wait late")
    await screenshot(page, "agent-queue")

    await queue.filter(has_text="张三").get_by_role("button", name="接入").click()
    await expect(page.locator("#conv-title")).to_have_text("张三")
    await queue.filter(has_text="李四").get_by_role("button", name="接入").click()
    await expect(page.locator("#conv-title")).to_have_text("李四")
    mine = page.locator("#mine li")
    await expect(mine).to_have_count(2)

    reply = page.get_by_label("回复内容")
    await reply.fill("李四的草稿")
    await mine.filter(has_text="张三").click()
    await expect(page.locator("#conv-title")).to_have_text("张三")
    await expect(reply).to_have_value("")
    await expect(page.locator("#why")).to_contain_text("客户投诉")

    # "/" opens the canned replies; Enter inserts the rendered text.
    await reply.type("/退款")
    await expect(page.get_by_role("listbox", name="快捷回复").get_by_role("option")).to_contain_text(
        "退款进度"
    )
    await reply.press("Enter")
    await expect(reply).to_have_value("张三您好，退款已提交，1–3 个工作日原路到账。")

    # An internal note is kept with the conversation, never sent.
    await reply.fill("客户情绪激动，优先处理")
    await page.get_by_label("内部备注（客户看不到）").check()
    await reply.press("Enter")
    await expect(page.locator("#notes")).to_contain_text("客户情绪激动")
    async with aiohttp.ClientSession() as http:
        body = await (await http.get(gateway.url + "/web/conversations/张三/messages")).json()
    assert all("情绪激动" not in m["text"] for m in body["messages"])

    await mine.filter(has_text="李四").click()
    await expect(reply).to_have_value("李四的草稿")
    await context.close()
    guard.check()
