"""What a live refresh must not take from the person at the page: the agent console redraws its lists on
every event and the admin dashboard every 30 s, while someone is tabbing through them or reading.

A list rebuilt with new nodes (replaceChildren) takes the focused element out of the document: the focus
falls to <body>, and the Enter or keys that follow go nowhere. Each check focuses something in a list,
makes a refresh happen that the user did not cause, and checks the focus (or the scroll position) stayed.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.conftest import ADMIN_TOKEN
from tests.web.conftest import Gateway, Guard, sign_in, watch


async def say(gateway: Gateway, user: str, text: str) -> int:
    body = {"user_id": user, "text": text, "user_name": user}
    async with aiohttp.ClientSession() as http, http.post(gateway.url + "/web/messages", json=body) as resp:
        assert resp.status == 200
        return int((await resp.json())["conversation_id"])


async def test_the_agents_place_in_the_queue_suggestions_and_history_survives_new_messages(
    gateway: Gateway, new_context: Any, guard: Guard, expect: Any
) -> None:
    token = await gateway.add_agent("小周")
    await say(gateway, "张三", "转人工")
    context = await new_context()
    page = watch(await context.new_page(), guard)
    await sign_in(page, gateway, token)
    await expect(page.locator("#conn")).to_have_text("已连接")
    queue = page.locator("#queue li")
    await expect(queue).to_have_count(1)

    # Tabbed to 接入 of the first customer; another customer comes into the queue meanwhile.
    claim = queue.filter(has_text="张三").get_by_role("button", name="接入")
    await claim.focus()
    await say(gateway, "李四", "转人工")
    await expect(queue).to_have_count(2)
    await expect(claim).to_be_focused()
    await page.keyboard.press("Enter")  # still the agent's: claims 张三
    await expect(page.locator("#conv-title")).to_have_text("张三")

    # A suggestion's 插入回复 in focus while the customer writes on (the suggestions reload).
    await say(gateway, "张三", "付款后多久发货")
    insert = page.get_by_role("button", name="插入推荐回答").first
    await expect(insert).to_be_visible()
    await insert.focus()
    await say(gateway, "张三", "我昨天付的款")
    await expect(page.locator("#messages")).to_contain_text("我昨天付的款")
    await expect(page.locator("#sugg-for")).to_contain_text("我昨天付的款")
    await expect(page.get_by_role("button", name="插入推荐回答").first).to_be_focused()

    # Reading back in the history: a new message does not pull the agent to the end.
    await say(gateway, "张三", "补充说明：\n" + "\n".join(f"第 {n} 条" for n in range(40)))
    box = page.locator("#messages")
    await expect(box).to_contain_text("第 39 条")
    assert await box.evaluate("b => b.scrollHeight > b.clientHeight + 100")
    await box.evaluate("b => { b.scrollTop = 0; }")
    await say(gateway, "张三", "还在吗")
    await expect(box).to_contain_text("还在吗")
    assert await box.evaluate("b => b.scrollTop") < 50
    await context.close()
    guard.check()


async def dashboard(
    gateway: Gateway, new_context: Any, guard: Guard, *, clock: bool = True
) -> tuple[Any, Any]:
    """A signed-in admin dashboard, and its context; `clock`: on a clock the test moves (its 30-s refresh)."""
    context = await new_context(viewport={"width": 1280, "height": 860})
    admin = watch(await context.new_page(), guard)
    if clock:
        await admin.clock.install()
    await admin.goto(gateway.url + "/admin")
    await admin.get_by_label("管理令牌").fill(ADMIN_TOKEN)
    await admin.get_by_role("button", name="进入看板").click()
    return context, admin


async def test_the_admins_place_in_the_unanswered_table_survives_the_30_s_refresh(
    gateway: Gateway, new_context: Any, guard: Guard, expect: Any
) -> None:
    await say(gateway, "u1", "你们仓库在哪个城市")
    context, admin = await dashboard(gateway, new_context, guard)
    teach = admin.get_by_role("button", name="教机器人：你们仓库在哪个城市")
    await teach.focus()
    await say(gateway, "u2", "你们的吉祥物是什么动物")  # one more group: the table changes
    await admin.clock.fast_forward(30_000)
    await expect(admin.locator("#unanswered tbody tr.cluster")).to_have_count(2)
    await expect(admin.locator(".learn-open")).to_have_count(2)
    await expect(teach).to_be_focused()
    await context.close()
    guard.check()


async def test_closing_the_teach_dialog_gives_the_focus_back_after_its_group_was_redrawn(
    gateway: Gateway, new_context: Any, guard: Guard, expect: Any
) -> None:
    # Regression: the dialog's opener was redrawn by the 30-s refresh while the dialog was open (its group
    # got another message); on closing, the browser had no element to give the focus back to: <body>.
    await say(gateway, "u1", "你们仓库在哪个城市")
    context, admin = await dashboard(gateway, new_context, guard)
    teach = admin.get_by_role("button", name="教机器人：你们仓库在哪个城市")
    for close in ("关闭", "Escape"):
        opener = await teach.element_handle()
        await teach.click()
        dialog = admin.get_by_role("dialog", name="教机器人：你们仓库在哪个城市")
        await expect(dialog).to_be_visible()
        await say(gateway, f"u-{close}", "你们仓库在哪个城市")  # the same group, one more message
        await admin.clock.fast_forward(30_000)
        await admin.wait_for_function("b => !b.isConnected", arg=opener)  # the group was redrawn
        if close == "Escape":
            await admin.keyboard.press("Escape")
        else:
            await dialog.get_by_role("button", name="关闭").click()
        await expect(dialog).to_have_count(0)
        await expect(teach).to_be_focused()
    await context.close()
    guard.check()


async def test_closing_the_teach_dialog_after_its_group_left_the_table_focuses_the_table(
    gateway: Gateway, new_context: Any, guard: Guard, expect: Any
) -> None:
    # The fallback of the test above: the refresh while the dialog was open no longer lists its group (the
    # day moved past the question's window), so there is no new 教机器人 to give the focus to: the table
    # takes it, not <body>.
    await say(gateway, "u1", "你们仓库在哪个城市")
    context, admin = await dashboard(gateway, new_context, guard)
    teach = admin.get_by_role("button", name="教机器人：你们仓库在哪个城市")
    await teach.click()
    dialog = admin.get_by_role("dialog", name="教机器人：你们仓库在哪个城市")
    await expect(dialog).to_be_visible()
    await admin.clock.fast_forward(25 * 3600 * 1000)  # the 24-hour range now starts after the question
    await expect(admin.locator(".learn-open")).to_have_count(0)
    await dialog.get_by_role("button", name="关闭").click()
    await expect(dialog).to_have_count(0)
    await expect(admin.locator("#unanswered")).to_be_focused()
    await context.close()
    guard.check()


async def test_groups_ticked_for_a_new_agent_stay_ticked_while_another_agent_is_changed(
    gateway: Gateway, new_context: Any, guard: Guard, expect: Any
) -> None:
    await gateway.add_agent("小吴")
    context, admin = await dashboard(gateway, new_context, guard, clock=False)
    await admin.get_by_role("button", name="客服管理").click()
    await admin.get_by_label("姓名", exact=True).fill("小林")
    await admin.locator("#agent-groups").get_by_label("售后").check()
    async with admin.expect_response(lambda r: "/admin/api/agents" in r.url and r.request.method == "GET"):
        await admin.get_by_label("小吴 的角色").select_option("supervisor")
    await expect(admin.get_by_label("小吴 的角色")).to_have_value("supervisor")
    await expect(admin.locator("#agent-groups").get_by_label("售后")).to_be_checked()
    await context.close()
    guard.check()
