"""Issue 17 item 5 over the real app (SQLite and PostgreSQL): an agent who closed the console keeps their
conversations for `handoff.heartbeat_timeout_s` + `handoff.offline_grace_s`, then they go back to the
queue (or to another online agent) and the customer is told. Time comes from the sweep's `now`."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from gateway.jobs.handoff_jobs import offline_sweep
from gateway.message import utcnow
from handoff import notices
from tests.gateway.test_handoff_flow import Kefu, _assigned, start, wechat_api  # noqa: F401 (fixtures)
from tests.waiting import eventually

TIMEOUT_AND_GRACE = timedelta(seconds=60 + 30)


async def _offline(kefu: Kefu, name: str) -> bool:
    agent = await kefu.runtime.handoff.db.agent_by_name(name)
    row = await kefu.runtime.handoff.db.agent_row(agent.id)
    return row.presence.value == "offline"


async def _holder(kefu: Kefu, conversation_id: int) -> str | None:
    ref = await kefu.runtime.handoff.db.get_conversation(str(conversation_id))
    return ref.assigned_agent_id if ref and ref.state.value == "assigned" else None


async def test_a_closed_console_sends_its_chats_back_to_the_queue(start: Any) -> None:  # noqa: F811
    kefu = await start(assignment="least_busy", offline_grace_s=30)
    wang = await kefu.agent("小王", "售前")
    ws = await wang.ws()
    await wang.call("POST", "/me/presence", json={"presence": "online"})
    await kefu.say("转人工")
    conv = await kefu.conversation()
    await eventually(lambda: _assigned(kefu, conv.id))
    await ws.close()  # the agent closes the console
    await eventually(lambda: _offline(kefu, "小王"))
    service = kefu.runtime.handoff

    # Within the timeout and the grace the chats stay with the agent (a reload must not cost them).
    assert await offline_sweep(service, now=utcnow() + timedelta(seconds=60)) == 0
    assert (await kefu.conversation()).state.value == "assigned"

    assert await offline_sweep(service, now=utcnow() + TIMEOUT_AND_GRACE) == 1
    assert (await kefu.conversation()).state.value == "queued"
    texts = await kefu.texts(2)  # assigned at once (no place in the queue told): joined, then left
    assert texts == [notices.agent_joined("小王"), notices.agent_left(others_online=False)]
    assert "没有其他客服在线" in texts[1]
    assert await offline_sweep(service, now=utcnow() + TIMEOUT_AND_GRACE) == 0  # moved once
    # Back at the console, 小王 (or anyone) can take it from the queue again.
    queue = await wang.call("GET", "/queue")
    assert [item["conversation_id"] for item in queue["queue"]] == [conv.id]


async def test_another_online_agent_takes_over(start: Any) -> None:  # noqa: F811
    kefu = await start(assignment="least_busy", offline_grace_s=30)
    wang = await kefu.agent("小王", "售前")
    ws = await wang.ws()
    await wang.call("POST", "/me/presence", json={"presence": "online"})
    await kefu.say("转人工")
    conv = await kefu.conversation()
    await eventually(lambda: _assigned(kefu, conv.id))
    li = await kefu.agent("小李", "售前")
    await li.call("POST", "/me/presence", json={"presence": "online"})
    li_ws = await li.ws()
    await ws.close()
    await eventually(lambda: _offline(kefu, "小王"))

    assert await offline_sweep(kefu.runtime.handoff, now=utcnow() + TIMEOUT_AND_GRACE) == 1
    li_id = (await li.call("GET", "/me"))["id"]
    await eventually(lambda: _is(kefu, conv.id, li_id))
    texts = await kefu.texts(3)
    assert texts[1:] == [notices.agent_left(others_online=True), notices.agent_joined("小李")]
    await li_ws.close()


async def _is(kefu: Kefu, conversation_id: int, agent_id: str) -> bool:
    return await _holder(kefu, conversation_id) == agent_id
