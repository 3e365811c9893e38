"""The supervisor's day in chromium (issue 19's "done when"): next week's 排班 for two groups with a coverage
gap, two swaps approved and a third in the same month refused, yesterday's KPI table exported as XLSX, and
the conversation where an agent answered "不知道" found among the flagged ones and confirmed with a note.
Also the agent console's draft check: the phrase underlined with a better wording, a `block` rule refusing
to send."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aiohttp import web
from sqlalchemy import update

from gateway.app import create_app
from gateway.jobs.qa_scoring import score_pending
from gateway.keys import QA, RUNTIME
from gateway.storage.schema.core import Conversation
from handoff.agents import Role
from tests.web.conftest import Gateway, Guard, screenshot, serving, sign_in, watch

REPO = Path(__file__).resolve().parents[2]
TZ = ZoneInfo("Asia/Shanghai")


@dataclass
class AppGateway(Gateway):
    """The running gateway and its app (for the 质检 service)."""

    app: web.Application


@pytest.fixture
async def gateway(web_settings: Callable[..., Any]) -> AsyncIterator[AppGateway]:
    """The gateway with business hours on Mondays only (售后 until 22:00) and 质检 scored by the test."""
    settings = web_settings(
        business_hours={
            "timezone": "Asia/Shanghai",
            "weekly": {"mon": ["09:00-18:00"]},
            "groups": {"售后": {"weekly": {"mon": ["09:00-22:00"]}}},
        },
        # Next Monday may be less than 3 days away; the story is about the monthly limit.
        shifts={"swap_notice_days": 0, "max_swaps_per_month": 2},
        qa={"path": str(REPO / "config" / "qa.yaml"), "job_interval_s": 3600},
    )
    app = create_app(settings)
    async with serving(app) as url:
        yield AppGateway(url, app[RUNTIME], app)


async def call(gateway: Gateway, method: str, path: str, token: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        resp = await http.request(
            method, gateway.url + path, headers={"Authorization": f"Bearer {token}"}, **kwargs
        )
        return resp.status, await resp.json()


async def customer_says(gateway: Gateway, user: str, text: str) -> int:
    async with aiohttp.ClientSession() as http:
        resp = await http.post(gateway.url + "/web/messages", json={"user_id": user, "text": text})
        assert resp.status == 200
        return int((await resp.json())["conversation_id"])


def next_monday() -> str:
    today = datetime.now(UTC).astimezone(TZ).date()
    return (today + timedelta(days=7 - today.weekday())).isoformat()


async def test_the_supervisors_day(gateway: AppGateway, new_context: Any, guard: Guard, expect: Any) -> None:
    boss = await gateway.add_agent("主管", ("售前", "售后"), role=Role.SUPERVISOR)
    wang = await gateway.add_agent("小王", ("售后",))
    await gateway.add_agent("小李", ("售后",))
    await gateway.add_agent("小赵", ("售前",))

    # Yesterday 小王 served a complaint and answered "不知道" (the conversation's start is moved back a day:
    # the gateway stamps real time, the report counts by start).
    cid = await customer_says(gateway, "顾客甲", "我要投诉，快递一直不到")
    assert (await call(gateway, "POST", f"/api/v1/conversations/{cid}/claim", wang))[0] == 200
    for text in ("您好", "不知道", "感谢您的耐心，再见"):
        status, _ = await call(
            gateway, "POST", f"/api/v1/conversations/{cid}/messages", wang, json={"text": text}
        )
        assert status == 201
    assert (await call(gateway, "POST", f"/api/v1/conversations/{cid}/close", wang, json={"tags": []}))[
        0
    ] == 200
    store = gateway.runtime.store
    async with store.engine.begin() as conn:
        await conn.execute(
            update(Conversation)
            .where(Conversation.id == cid)
            .values(opened_at=datetime.now(UTC) - timedelta(days=1))
        )
    assert await score_pending(store, gateway.app[QA]) == 1

    # A supervisor's browser in China: the page plans "next week" by the browser's own calendar, which on a
    # machine running in UTC is a day behind Shanghai's from 16:00 UTC (the test's dates are Shanghai's).
    context = await new_context(timezone_id=TZ.key)
    page = watch(await context.new_page(), guard)
    await page.goto(gateway.url + "/supervisor")
    await page.get_by_label("令牌").fill(boss)
    await page.get_by_label("令牌").press("Enter")
    await expect(page.locator("#week-label")).to_contain_text(next_monday())

    # 排班: next week, two groups, through the form.
    async def add(agent: str, group: str, start: str, end: str) -> None:
        await page.get_by_label("客服", exact=True).fill(agent)
        await page.get_by_label("技能组").fill(group)
        await page.get_by_label("日期").fill(next_monday())
        await page.get_by_label("开始", exact=True).fill(start)
        await page.get_by_label("结束（早于开始即为次日）").fill(end)
        await page.get_by_role("button", name="添加", exact=True).click()
        await expect(page.locator("#shifts tbody")).to_contain_text(f"{start}–{end}")

    await add("小赵", "售前", "09:00", "18:00")
    for start, end in (("09:00", "12:00"), ("12:00", "16:00"), ("16:00", "21:00")):
        await add("小王", "售后", start, end)
    await expect(page.locator("#gaps")).to_have_text("周一 21:00–22:00 售后组无人值班")
    await screenshot(page, "supervisor-shifts")

    # Swaps: 小王 asks 小李 to take two shifts; the supervisor approves both; a third in the month is refused.
    status, listed = await call(
        gateway, "GET", f"/api/v1/shifts?from={next_monday()}&to={next_monday()}", wang
    )
    mine = [s["id"] for s in listed["shifts"] if s["agent"] == "小王"]
    assert len(mine) == 3
    for shift_id in mine[:2]:
        status, body = await call(
            gateway, "POST", "/api/v1/shifts/swaps", wang, json={"shift_id": shift_id, "with_agent": "小李"}
        )
        assert status == 201, body
    await page.get_by_role("button", name="下一周").click()
    await page.get_by_role("button", name="上一周").click()
    swaps = page.locator("#swaps li.swap")
    await expect(swaps).to_have_count(2)
    await swaps.first.get_by_role("button", name="批准").click()
    await expect(swaps).to_have_count(1)
    await swaps.first.get_by_role("button", name="批准").click()
    await expect(swaps).to_have_count(0)
    await expect(page.locator("#shifts tbody")).to_contain_text("小李")
    status, body = await call(
        gateway, "POST", "/api/v1/shifts/swaps", wang, json={"shift_id": mine[2], "with_agent": "小李"}
    )
    assert status == 422 and body["error"].startswith("每月最多允许调班 2 次")

    # 绩效: yesterday's table (the default), sortable, drill-down, exported as XLSX.
    await page.get_by_role("tab", name="绩效").click()
    table = page.locator("#kpis-table")
    await expect(table.locator("tbody tr")).to_have_count(4)
    await table.get_by_role("columnheader", name="接待会话").click()
    await expect(table.locator("tbody tr").first).to_contain_text("小王")
    await table.get_by_role("button", name="小王").click()
    await expect(page.locator("#drill")).to_contain_text("接待会话1 个")
    async with page.expect_download() as info:
        await page.get_by_role("button", name="导出 Excel").click()
    download = await info.value
    assert download.suggested_filename.endswith(".xlsx")
    from openpyxl import load_workbook

    data = await asyncio.to_thread(Path(await download.path()).read_bytes)
    sheet = load_workbook(io.BytesIO(data))["客服绩效"]
    assert {row[0] for row in sheet.iter_rows(min_row=2, values_only=True)} == {
        "主管",
        "小王",
        "小李",
        "小赵",
    }
    await screenshot(page, "supervisor-kpis")

    # 质检: the "不知道" conversation is among the flagged ones; confirmed with a note.
    await page.get_by_role("tab", name="质检").click()
    row = page.locator("#qa-table tbody tr", has_text=f"#{cid}")
    await expect(row).to_contain_text("直接回答不知道")
    await row.get_by_role("button", name=f"#{cid}").click()
    await expect(page.locator("#qa-messages mark.qa-hit")).to_have_text("不知道")
    await page.get_by_label("复核意见").fill("已辅导：先说“我帮您确认一下”")
    await page.get_by_role("button", name="确认问题").click()
    await expect(page.locator("#qa-detail-title")).to_contain_text("已确认")
    await screenshot(page, "supervisor-qa")
    await context.close()
    guard.check()


async def test_the_agent_console_checks_the_draft_as_it_is_typed(
    gateway: Gateway, new_context: Any, guard: Guard, expect: Any
) -> None:
    token = await gateway.add_agent("小王", ("售后",))
    await customer_says(gateway, "顾客乙", "我要投诉")
    context = await new_context()
    page = watch(await context.new_page(), guard)
    await sign_in(page, gateway, token)
    await page.locator("#queue li").filter(has_text="顾客乙").get_by_role("button", name="接入").click()
    reply = page.get_by_label("回复内容")
    await reply.fill("您好，这个我不知道")
    hints = page.locator("#qa-hints")
    await expect(hints.locator("mark.qa-hit")).to_have_text("不知道")
    await expect(hints).to_contain_text("建议：这个问题我帮您确认一下")
    await screenshot(page, "agent-draft-check")
    # A warning does not stop the send.
    await reply.press("Enter")
    await expect(page.locator("#messages")).to_contain_text("您好，这个我不知道")
    # A block rule (a raw template field) does.
    await reply.fill("{name}您好，已为您处理")
    await expect(hints).to_contain_text("禁止发送")
    await reply.press("Enter")
    await expect(page.locator("#reply-error")).to_contain_text("禁止发送")
    await expect(reply).to_have_value("{name}您好，已为您处理")
    await context.close()
    guard.check()
