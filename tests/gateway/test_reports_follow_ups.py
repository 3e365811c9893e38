"""Complaint follow-ups (回访) over the real app (SQLite and PostgreSQL): opened when a complaint's human
part ends, due `sla.follow_up_hours` later, red when overdue, closed by an agent of the group."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.storage.report_queries import conversation_records
from handoff.reports import summarize
from tests.gateway.test_handoff_flow import _assigned, start, wechat_api  # noqa: F401  (fixtures)
from tests.waiting import eventually


async def close_a_complaint(kefu: Any) -> tuple[Any, Any]:
    agent = await kefu.agent("小吴", "售后")
    await agent.call("POST", "/me/presence", json={"presence": "online"})
    await kefu.say("我要投诉，东西坏了")
    conv = await kefu.conversation()
    await eventually(lambda: _assigned(kefu, conv.id))
    await agent.call("POST", f"/conversations/{conv.id}/messages", json={"text": "非常抱歉"}, expect=201)
    await agent.call("POST", f"/conversations/{conv.id}/close", json={"tags": ["投诉"]})
    return agent, conv


async def test_a_closed_complaint_gets_a_follow_up_that_the_group_closes(start: Any) -> None:  # noqa: F811
    kefu = await start()
    agent, conv = await close_a_complaint(kefu)
    (item,) = (await agent.call("GET", "/follow-ups"))["follow_ups"]
    assert item["conversation_id"] == conv.id and item["group"] == "售后" and item["overdue"] is False
    due = datetime.fromisoformat(item["due_at"])
    assert timedelta(hours=23, minutes=59) < due - datetime.now(UTC) <= timedelta(hours=24)

    other = await kefu.agent("小郑", "售前")
    assert (await other.call("GET", "/follow-ups"))["follow_ups"] == []
    await other.call("POST", f"/follow-ups/{item['id']}/close", expect=403)

    closed = await agent.call("POST", f"/follow-ups/{item['id']}/close", json={"note": "已电话回访"})
    assert closed["closed_at"] and closed["note"] == "已电话回访" and closed["overdue"] is False
    await agent.call("POST", f"/follow-ups/{item['id']}/close", expect=409)
    assert (await agent.call("GET", "/follow-ups"))["follow_ups"] == []
    assert len((await agent.call("GET", "/follow-ups", params={"all": "1"}))["follow_ups"]) == 1
    await agent.call("POST", "/follow-ups/999999/close", expect=404)


async def test_an_overdue_follow_up_is_red_and_counted_in_the_report(start: Any) -> None:  # noqa: F811
    kefu = await start({"sla": {"follow_up_hours": 0.0001}})  # 0.36 s
    agent, conv = await close_a_complaint(kefu)
    await asyncio.sleep(0.5)
    (item,) = (await agent.call("GET", "/follow-ups"))["follow_ups"]
    assert item["overdue"] is True and item["overdue_s"] >= 0
    now = datetime.now(UTC)
    records = await conversation_records(kefu.runtime.store, now - timedelta(hours=1), now)
    assert summarize(records, now=now).follow_up_overdue == [str(conv.id)]


async def test_a_question_that_was_not_a_complaint_gets_none(start: Any) -> None:  # noqa: F811
    kefu = await start()
    agent = await kefu.agent("小王", "售前")
    await agent.call("POST", "/me/presence", json={"presence": "online"})
    await kefu.say("转人工")
    conv = await kefu.conversation()
    await eventually(lambda: _assigned(kefu, conv.id))
    await agent.call("POST", f"/conversations/{conv.id}/close", json={})
    assert (await agent.call("GET", "/follow-ups"))["follow_ups"] == []
