"""The three pages in a real browser, as the people who use them would: a customer on the chat page,
an agent in the console (a second browser context), and the shop owner on the dashboard.

One story, start to finish: FAQ answer → 您是不是想问 → a tapped suggestion → 转人工 → the agent sees the
conversation appear, claims it, inserts a suggested answer and sends it → the customer reads it → the agent
closes with a tag → the customer rates 5 → the dashboard lists the unanswered question and counts the
conversation, the handoff and the rating. Every page is blocked from reaching anything but 127.0.0.1.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.conftest import ADMIN_TOKEN
from tests.web.conftest import Gateway, Guard, screenshot, watch

PHONE = {"width": 390, "height": 760}


async def test_customer_agent_and_admin_work_one_conversation_end_to_end(
    gateway: Gateway, new_context: Any, guard: Guard, expect: Any
) -> None:
    token = await gateway.add_agent("小王")

    # The agent signs in first (online), so the handoff queues instead of leaving a 留言.
    agent_ctx = await new_context()
    agent = watch(await agent_ctx.new_page(), guard)
    sockets: list[str] = []
    agent.on("websocket", lambda ws: sockets.append(ws.url))
    await agent.goto(gateway.url + "/agent")
    await agent.get_by_label("客服令牌").fill(token)
    await agent.get_by_role("button", name="登录").click()
    await expect(agent.locator("#me")).to_have_text("小王")
    await expect(agent.locator("#conn")).to_have_text("已连接")
    # The token went in the subprotocol header, not the URL that proxies and access logs keep.
    assert sockets and all(url.endswith("/api/v1/agent/ws") for url in sockets)

    # --- the customer, on a phone -------------------------------------------------------------------
    customer_ctx = await new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    chat = watch(await customer_ctx.new_page(), guard)
    await chat.goto(gateway.url + "/chat")
    await expect(chat.locator("#status")).to_contain_text("智能客服在线")
    box = chat.get_by_label("输入消息")

    await box.fill("怎么退货")
    await box.press("Enter")
    await expect(chat.locator(".msg.bot .bubble").last).to_contain_text("申请售后")

    await box.fill("退的钱")  # close, but not sure: 您是不是想问 with buttons
    await box.press("Enter")
    suggestion = chat.locator(".msg.bot").last.get_by_role("button", name="退款多久到账")
    await expect(suggestion).to_be_visible()
    await screenshot(chat, "chat-suggestions")
    await suggestion.click()
    await expect(chat.locator(".msg.bot .bubble").last).to_contain_text("原路退回")

    await chat.get_by_role("button", name="转人工").click()
    await expect(chat.locator("#status")).to_contain_text("排队第 1 位")
    await expect(chat.locator(".msg.system .bubble").last).to_contain_text("排队第 1 位")

    # --- the agent sees it, claims it ---------------------------------------------------------------
    waiting = agent.locator("#queue li", has_text="转人工")
    await expect(waiting).to_have_count(1)
    await expect(waiting.locator(".wait")).to_contain_text("等待")
    await waiting.get_by_role("button", name="接入").click()
    await expect(agent.locator("#mine li")).to_have_count(1)
    await expect(agent.locator("#why")).to_contain_text("客户要求转人工")
    await expect(chat.locator("#status")).to_contain_text("客服 小王 正在为您服务")
    await expect(chat.locator(".msg.system .bubble").last).to_contain_text("客服 小王 为您服务")

    await box.fill("退款还没到账，我急用钱")
    await box.press("Enter")
    await expect(agent.locator("#messages .m.customer .bubble").last).to_have_text("退款还没到账，我急用钱")
    insert = agent.get_by_role("button", name="插入推荐回答：退款多久到账")
    await expect(insert).to_be_visible()
    await insert.click()
    reply = agent.get_by_label("回复内容")
    await expect(reply).to_have_value(
        "您好，退款审核通过后原路退回，微信和支付宝一般1–3个工作日到账，银行卡3–7个工作日。"
    )
    await reply.press("End")
    await reply.type("我帮您催一下财务。")
    await screenshot(agent, "agent-console")
    await reply.press("Enter")
    await expect(agent.locator("#messages .m.agent .bubble").last).to_contain_text("我帮您催一下财务")
    await expect(chat.locator(".msg.agent .bubble").last).to_contain_text("我帮您催一下财务")
    await expect(chat.locator(".msg.agent .who").last).to_contain_text("客服 小王")
    await screenshot(chat, "chat-agent")

    # --- close, rate --------------------------------------------------------------------------------
    await agent.get_by_role("button", name="结束会话").click()
    await agent.get_by_label("小结标签").fill("退款")
    await agent.locator("#close-confirm").click()
    await expect(agent.locator("#conv-sub")).to_contain_text("已结束")
    rating = chat.get_by_role("group", name="请为本次服务打分")
    await expect(rating).to_be_visible()
    await screenshot(chat, "chat-rating")
    await rating.get_by_role("button", name="5 分，非常满意").click()
    await expect(chat.locator(".msg.system .bubble").last).to_contain_text("感谢您的评价")
    await expect(rating).to_be_hidden()

    # Three more visitors through the web webhook: two ask the same thing the FAQ lacks, one is answered.
    for user, text in (("w1", "你们几点下班"), ("w2", "几点下班"), ("w3", "怎么开发票")):
        async with aiohttp.ClientSession() as http:
            resp = await http.post(gateway.url + "/web/messages", json={"user_id": user, "text": text})
            assert resp.status == 200

    # --- the dashboard ------------------------------------------------------------------------------
    admin_ctx = await new_context()
    admin = watch(await admin_ctx.new_page(), guard)
    await admin.goto(gateway.url + "/admin")
    await admin.get_by_label("管理令牌").fill(ADMIN_TOKEN)
    await admin.get_by_role("button", name="进入看板").click()
    unanswered = admin.locator("#unanswered tbody tr.cluster", has_text="退的钱")
    await expect(unanswered).to_have_count(1)
    await expect(unanswered.locator("td.num")).to_have_text("1")
    closing_time = admin.locator("#unanswered tbody tr.cluster", has_text="几点下班")
    await expect(closing_time.locator("td.num")).to_have_text("2")  # two wordings, one question
    # Drill-down: the group's messages, each with a link to its conversation in the console.
    await closing_time.click()
    drill = admin.locator("#unanswered tr.drill", has_text="你们几点下班")
    await expect(drill).to_be_visible()
    await expect(drill.get_by_role("link", name="查看会话")).to_have_count(2)
    await expect(admin.locator(".kpi", has_text="会话")).to_contain_text("4")
    await expect(admin.locator(".kpi", has_text="转人工率")).to_contain_text("75%")
    await expect(admin.locator(".kpi", has_text="机器人解决率")).to_contain_text("25%")
    await expect(admin.locator(".kpi", has_text="满意度")).to_contain_text("5 / 5")
    await expect(admin.locator("#chart-messages rect")).not_to_have_count(0)
    await expect(admin.locator("#chart-csat")).to_contain_text("共 1 个评价")
    await expect(admin.locator("#agents tbody")).to_contain_text("小王")
    await expect(admin.locator("#kb")).to_contain_text("正常")
    await admin.get_by_role("button", name="重新加载 FAQ").click()
    await expect(admin.locator("#reload-result")).to_contain_text("版本")
    await screenshot(admin, "admin-dashboard")
    await screenshot(admin, "admin-dashboard-full", full_page=True)

    for ctx in (agent_ctx, customer_ctx, admin_ctx):
        await ctx.close()
    guard.check()
