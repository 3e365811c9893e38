"""Learning from agents in a real browser (issue 12, item 5).

The console: a customer asks what the FAQ lacks and is handed off → an agent claims the conversation and
answers → in 教机器人 the agent searches the dropdown (pre-filled with the bot's guesses), picks the entry
and clicks "这个问题 = FAQ 条目" → the next customer asking the same thing gets the bot's answer, with no
restart. The dashboard: an unanswered group becomes a new FAQ entry from the admin's answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp

from tests.conftest import ADMIN_TOKEN
from tests.web.conftest import Gateway, Guard, screenshot, watch

QUESTION = "包裹啥时候能寄出来"  # the test FAQ has no such question
SHIPPING = "现货商品付款后48小时内发货"  # the answer of the entry shipping-time
FOLLOW_UP = "周末能不能寄出"  # asked while the agent has the conversation: one more item to learn from


async def test_an_agent_teaches_the_bot_and_the_next_customer_gets_its_answer(
    gateway: Gateway, new_context: Any, guard: Guard, expect: Any, tmp_path: Path
) -> None:
    token = await gateway.add_agent("小王")
    agent_ctx = await new_context(viewport={"width": 1280, "height": 860})
    agent = watch(await agent_ctx.new_page(), guard)
    await agent.goto(gateway.url + "/agent")
    await agent.get_by_label("客服令牌").fill(token)
    await agent.get_by_role("button", name="登录").click()
    await expect(agent.locator("#conn")).to_have_text("已连接")

    # A customer asks what the FAQ does not cover: the bot says so and hands off.
    first_ctx = await new_context()
    first = watch(await first_ctx.new_page(), guard)
    await first.goto(gateway.url + "/chat")
    await expect(first.locator("#status")).to_contain_text("智能客服在线")
    await first.get_by_label("输入消息").fill(QUESTION)
    await first.get_by_label("输入消息").press("Enter")
    await expect(first.locator("#status")).to_contain_text("排队第 1 位")
    assert SHIPPING not in await first.locator(".msg.bot .bubble").last.inner_text()

    # The agent claims it and answers.
    waiting = agent.locator("#queue li", has_text=QUESTION)
    await waiting.get_by_role("button", name="接入").click()
    reply = agent.get_by_label("回复内容")
    await reply.fill("您好，现货付款后48小时内就会发出。")
    await reply.press("Enter")
    await expect(first.locator(".msg.agent .bubble").last).to_contain_text("48小时内就会发出")

    # 教机器人: the question, the bot's guesses in the dropdown, a search to find the right entry.
    learn = agent.locator(".learn-item", has_text=QUESTION)
    await expect(learn).to_have_count(1)
    picker = learn.get_by_label("对应的 FAQ 条目：" + QUESTION)
    await expect(picker.locator("option")).not_to_have_count(0)
    await expect(picker.locator("option").first).to_contain_text("猜测")
    # Every new message refreshes the list; the agent's place in it stays (the items were taken out and put
    # back, which dropped the focus: a search typed meanwhile was never sent).
    search = learn.get_by_label("搜索 FAQ 条目")
    await search.focus()
    await first.get_by_label("输入消息").fill(FOLLOW_UP)
    await first.get_by_label("输入消息").press("Enter")
    await expect(agent.locator(".learn-item", has_text=FOLLOW_UP)).to_have_count(1)
    await expect(search).to_be_focused()
    # Wait for the search's answer (and see its status if it failed) rather than for a fixed time.
    async with agent.expect_response(lambda r: "/api/v1/faq/entries?q=" in r.url) as searched:
        await search.fill("发货")
    assert (await searched.value).status == 200
    await expect(picker.locator("option").first).not_to_contain_text("猜测")  # the search's results
    await expect(picker.locator("option", has_text="shipping-time")).to_have_count(1)
    await picker.select_option("shipping-time")
    await learn.get_by_role("button", name="这个问题 = FAQ 条目").click()
    await expect(learn.locator(".learn-status")).to_contain_text("已学会")
    await screenshot(agent, "agent-learn")

    # The next customer asking the same thing gets the bot's answer: no restart, no reload by hand.
    next_ctx = await new_context()
    second = watch(await next_ctx.new_page(), guard)
    await second.goto(gateway.url + "/chat")
    await expect(second.locator("#status")).to_contain_text("智能客服在线")
    await second.get_by_label("输入消息").fill(QUESTION)
    await second.get_by_label("输入消息").press("Enter")
    await expect(second.locator(".msg.bot .bubble").last).to_contain_text(SHIPPING)

    learned = (tmp_path / "faq" / "learned.yaml").read_text(encoding="utf-8")
    assert "shipping-time:" in learned and QUESTION in learned and "小王" in learned
    for ctx in (agent_ctx, first_ctx, next_ctx):
        await ctx.close()
    guard.check()


async def test_the_dashboard_turns_an_unanswered_group_into_a_new_entry(
    gateway: Gateway, new_context: Any, guard: Guard, expect: Any
) -> None:
    async def ask(user: str, text: str) -> str:
        async with aiohttp.ClientSession() as http:
            resp = await http.post(gateway.url + "/web/messages", json={"user_id": user, "text": text})
            assert resp.status == 200
            return str((await resp.json())["replies"][0]["text"])

    for user, text in (("u1", "你们仓库在哪个城市"), ("u2", "你们仓库在哪个城市？")):
        await ask(user, text)
    admin_ctx = await new_context(viewport={"width": 1280, "height": 860})
    admin = watch(await admin_ctx.new_page(), guard)
    await admin.goto(gateway.url + "/admin")
    await admin.get_by_label("管理令牌").fill(ADMIN_TOKEN)
    await admin.get_by_role("button", name="进入看板").click()
    row = admin.locator("#unanswered tbody tr", has_text="你们仓库在哪个城市")
    await row.get_by_role("button", name="教机器人：你们仓库在哪个城市").click()
    dialog = admin.get_by_role("dialog", name="教机器人：你们仓库在哪个城市")
    await expect(dialog).to_be_visible()
    await dialog.locator("summary", has_text="用这条回复新建 FAQ 条目").click()
    await dialog.get_by_label("新条目的答案").fill("您好，我们的仓库在浙江杭州。")
    await dialog.get_by_label("分类").select_option("物流")
    await dialog.get_by_role("button", name="用这条回复新建 FAQ 条目").click()
    await expect(dialog.locator(".learn-status")).to_contain_text("已新建 FAQ 条目")
    await screenshot(admin, "admin-learn")
    assert await ask("u3", "你们仓库在哪个城市") == "您好，我们的仓库在浙江杭州。"
    await admin_ctx.close()
    guard.check()
