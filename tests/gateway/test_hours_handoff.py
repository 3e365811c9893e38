"""Business hours in the handoff (SQLite and PostgreSQL): outside hours a handoff is a 留言 and the customer
is told honestly when agents are back; inside hours it queues as before."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gateway.norms import parse_business_hours
from handoff import notices
from handoff.hours import DAY_NAMES
from tests.gateway.test_handoff_flow import start, wechat_api  # noqa: F401  (fixtures)


def closed_today() -> dict[str, Any]:
    """Open only the day after tomorrow (Shanghai), 08:30–17:30: whenever the test runs, it is closed now."""
    today = datetime.now(UTC).astimezone(parse_business_hours(None).default.timezone).weekday()
    return {"weekly": {DAY_NAMES[(today + 2) % 7]: ["08:30-12:00", "13:00-17:30"]}}


async def test_outside_hours_a_handoff_is_a_ticket_that_names_the_next_opening(start: Any) -> None:  # noqa: F811
    config = closed_today()
    kefu = await start({"business_hours": config}, assignment="manual")
    agent = await kefu.agent("小赵", "售前")
    await agent.call("POST", "/me/presence", json={"presence": "online"})  # online, but after hours

    await kefu.say("转人工")
    (notice,) = await kefu.texts(1)
    hours = parse_business_hours(config).default
    now = datetime.now(UTC)
    expected = notices.no_agent_online(
        hours.next_opening(now), now=now.astimezone(hours.timezone), service_hours=hours.describe()
    )
    assert notice == expected
    weekday = "一二三四五六日"[hours.next_opening(now).astimezone(hours.timezone).weekday()]
    assert f"后天（周{weekday}）08:30" in notice and "08:30-12:00、13:00-17:30" in notice
    queue = await agent.call("GET", "/queue")
    assert [item["ticket"] for item in queue["queue"]] == [True]


async def test_inside_hours_the_handoff_queues_as_usual(start: Any) -> None:  # noqa: F811
    kefu = await start({"business_hours": {"weekly": {"daily": "00:00-24:00"}}}, assignment="manual")
    agent = await kefu.agent("小钱", "售前")
    await agent.call("POST", "/me/presence", json={"presence": "online"})
    await kefu.say("转人工")
    assert await kefu.texts(1) == [notices.queued(1)]
    queue = await agent.call("GET", "/queue")
    assert [item["ticket"] for item in queue["queue"]] == [False]


async def test_the_configured_service_hours_text_wins(start: Any) -> None:  # noqa: F811
    kefu = await start(
        {"business_hours": closed_today()}, assignment="manual", service_hours="工作日 9:00-18:00"
    )
    await kefu.say("转人工")
    (notice,) = await kefu.texts(1)
    assert notice.endswith("人工客服服务时间：工作日 9:00-18:00。您也可以继续描述问题，我们会一并处理。")
    assert "08:30 上线后" in notice


async def test_chinese_public_holidays_load_without_blocking_the_loop(start: Any) -> None:  # noqa: F811
    hours = {"weekly": {"daily": "00:00-24:00"}, "chinese_holidays": True, "holidays": []}
    kefu = await start({"business_hours": hours}, assignment="manual")
    assert kefu.runtime.handoff.hours.default.public_calendar is not None
    await kefu.say("转人工")
    (notice,) = await kefu.texts(1)
    today = datetime.now(UTC).astimezone(kefu.runtime.handoff.hours.default.timezone).date()
    closed_today = kefu.runtime.handoff.hours.default.day_kind(today) is not None and not (
        kefu.runtime.handoff.hours.default.shifts_on(today)
    )
    # Nobody online either way: a 留言. On a statutory holiday the notice also names the next opening.
    assert notice.startswith("非常抱歉，当前暂时没有人工客服在线") and ("上线后" in notice)
    assert closed_today or "每天 00:00-24:00（法定节假日除外）" in notice
