"""Issue 17 item 1, over real HTTP on SQLite and PostgreSQL: while a WeChat customer waits for a human
the bot still answers what it is sure of (and says where they stand), acknowledges everything else, sends
the questions it could not answer to the admin's unanswered list, and falls silent once an agent has them.
"""

from __future__ import annotations

from typing import Any

from handoff import notices, waiting
from tests.conftest import ADMIN_TOKEN
from tests.gateway.test_handoff_flow import Kefu, start, wechat_api  # noqa: F401 (fixtures)

INVOICE_ANSWER_START = "您好，确认收货后"


async def _ids_of(kefu: Kefu, conversation_id: int) -> dict[str, int]:
    """Customer text → its message id (the acknowledgement's wording turns on it)."""
    return {m.text: m.id for m in await kefu.runtime.store.messages(conversation_id) if m.direction == "in"}


async def test_queued_the_bot_answers_what_it_knows_and_acknowledges_the_rest(
    start: Any,  # noqa: F811
) -> None:
    kefu = await start(assignment="manual")
    agent = await kefu.agent("小王", "售前")
    await agent.call("POST", "/me/presence", json={"presence": "online"})  # online: a live queue, no 留言
    await kefu.say("转人工", "oAhead")  # someone is already waiting
    await kefu.say("转人工")
    conv = await kefu.conversation()
    assert await kefu.texts(1) == [notices.queued(2)]

    # A question the FAQ answers confidently: answered at once, then where they stand.
    answer = await kefu.say("怎么开发票")
    assert answer.startswith(INVOICE_ANSWER_START)
    assert (await kefu.texts(2))[1] == waiting.still_queued(2)
    assert "前面还有 1 位" in waiting.still_queued(2)
    # Another answer at the same place: the place is no news, so it is not repeated.
    assert (await kefu.say("可以开发票吗")).startswith(INVOICE_ANSWER_START)

    # Nothing the bot can answer: every message is acknowledged, in words that vary.
    for text in ("天王星的卫星有几颗", "量子纠缠怎么计算"):
        assert await kefu.say(text) == ""
    ids = await _ids_of(kefu, conv.id)
    texts = await kefu.texts(4)
    assert texts[2:] == [
        waiting.queued_ack(2, ids["天王星的卫星有几颗"]),
        waiting.queued_ack(2, ids["量子纠缠怎么计算"]),
    ]
    assert texts[2] != texts[3] and all("前面还有 1 位" in t for t in texts[2:])

    # The questions it could not answer reach the admin's unanswered list; the answered one does not.
    resp = await kefu.client.get("/admin/api/stats", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    stats = await resp.json()
    asked = {e for group in stats["unanswered"] for e in group["examples"]}
    assert {"天王星的卫星有几颗", "量子纠缠怎么计算"} <= asked
    assert "怎么开发票" not in asked
    detail = await agent.call("GET", f"/conversations/{conv.id}")
    said = [m["text"] for m in detail["messages"] if m["direction"] == "in"]
    assert "怎么开发票" in said  # the agent sees everything the customer wrote

    # An agent has them: the bot says nothing more, not even to a question it knows.
    await agent.call("POST", f"/conversations/{conv.id}/claim")
    assert (await kefu.texts(5))[4] == notices.agent_joined("小王")
    assert await kefu.say("怎么开发票") == ""
    assert await kefu.say("在吗") == ""
    await agent.call("POST", f"/conversations/{conv.id}/messages", json={"text": "您好"}, expect=201)
    assert (await kefu.texts(6))[5:] == ["您好"]  # nothing from the bot in between


async def test_a_ticket_acknowledges_every_addition_and_the_bot_still_answers(
    start: Any,  # noqa: F811
) -> None:
    kefu = await start(assignment="least_busy")
    await kefu.say("我要找人工客服")  # nobody online: a 留言
    conv = await kefu.conversation()
    assert await kefu.texts(1) == [notices.no_agent_online()]
    assert (await kefu.say("怎么开发票")).startswith(INVOICE_ANSWER_START)  # no extra notice after it
    for text in ("订单号 20261124001", "还有一句", "再补充一点"):
        assert await kefu.say(text) == ""
    ids = await _ids_of(kefu, conv.id)
    assert await kefu.texts(4) == [
        notices.no_agent_online(),
        notices.ticket_followup(),
        waiting.ticket_ack(ids["还有一句"]),
        waiting.ticket_ack(ids["再补充一点"]),
    ]
    assert (await kefu.conversation()).state.value == "queued"
