"""The first-response timer over the real app (SQLite and PostgreSQL): a live handoff nobody answered within
the configured time gets "客服正忙，请稍候" exactly once, and supervisors see the breach."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from gateway.jobs.first_response import first_response_sweep
from gateway.message import utcnow
from handoff import notices
from handoff.sla import BUSY_NOTICE
from tests.gateway.test_handoff_flow import start, wechat_api  # noqa: F401  (fixtures)

LATER = timedelta(seconds=61)  # past the default 60 s


async def breaches(kefu: Any) -> list[Any]:
    events = await kefu.runtime.handoff.db.events_after(0, 500)
    return [e for e in events if e.type == "sla.first_response_breached"]


async def test_the_busy_notice_is_sent_exactly_once(start: Any) -> None:  # noqa: F811
    kefu = await start(assignment="manual")
    agent = await kefu.agent("小孙", "售前")
    await agent.call("POST", "/me/presence", json={"presence": "online"})
    await kefu.say("转人工")
    assert await kefu.texts(1) == [notices.queued(1)]
    service = kefu.runtime.handoff

    assert await first_response_sweep(service, now=utcnow() + timedelta(seconds=30)) == 0  # not due yet
    # Two processes' jobs at the same moment: one notice between them.
    sent = await asyncio.gather(*(first_response_sweep(service, now=utcnow() + LATER) for _ in range(3)))
    assert sum(sent) == 1
    assert await first_response_sweep(service, now=utcnow() + 2 * LATER) == 0
    assert (await kefu.texts(2))[1] == BUSY_NOTICE
    await asyncio.sleep(0.2)
    assert kefu.api.texts_to("oHandoffCustomer0000000000001").count(BUSY_NOTICE) == 1
    conv = await kefu.conversation()
    stored = [m.text for m in await kefu.runtime.store.messages(conv.id)]
    assert stored.count(BUSY_NOTICE) == 1
    (breach,) = await breaches(kefu)
    assert breach.conversation_id == conv.id and breach.agent_id is None and breach.group is None


async def test_no_notice_once_an_agent_answered(start: Any) -> None:  # noqa: F811
    kefu = await start(assignment="manual")
    agent = await kefu.agent("小李", "售前")
    await agent.call("POST", "/me/presence", json={"presence": "online"})
    await kefu.say("转人工")
    conv = await kefu.conversation()
    await agent.call("POST", f"/conversations/{conv.id}/claim")
    await agent.call("POST", f"/conversations/{conv.id}/messages", json={"text": "您好，请讲"}, expect=201)
    assert await first_response_sweep(kefu.runtime.handoff, now=utcnow() + LATER) == 0
    assert await breaches(kefu) == []


async def test_no_notice_for_a_ticket(start: Any) -> None:  # noqa: F811
    kefu = await start(assignment="manual")  # nobody online: the handoff is a 留言
    await kefu.say("转人工")
    assert await kefu.texts(1) == [notices.no_agent_online()]
    assert await first_response_sweep(kefu.runtime.handoff, now=utcnow() + LATER) == 0


async def test_the_periodic_job_sends_it_by_itself(start: Any) -> None:  # noqa: F811
    kefu = await start({"sla": {"first_response_s": 1.0}}, assignment="manual")
    agent = await kefu.agent("小周", "售前")
    await agent.call("POST", "/me/presence", json={"presence": "online"})
    await kefu.say("转人工")
    assert await kefu.texts(2) == [notices.queued(1), BUSY_NOTICE]
    await asyncio.sleep(0.5)  # the job keeps running every 0.05 s: still only one
    assert kefu.api.texts_to("oHandoffCustomer0000000000001").count(BUSY_NOTICE) == 1
