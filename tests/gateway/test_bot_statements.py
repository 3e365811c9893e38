"""The bot path's statements: a FAQ message is deduplicated by its INSERT, not by a read before it.

On PostgreSQL every statement of the message's unit of work is counted (on SQLite the unit runs on the
group commit's own connection): a fresh message makes no dedupe SELECT, and a
platform retry of the same MsgId is still answered with the stored reply, nothing stored twice.
"""

from __future__ import annotations

from typing import Any

from tests.fakes.wechat_api import fixture_xml, xml_dict
from tests.gateway.test_handoff_flow import Kefu, start, wechat_api  # noqa: F401 (fixtures)
from tests.gateway.test_handoff_statements import counting

# Statements of a FAQ message in an open conversation on PostgreSQL: the open-conversation read, one statement
# for the inbound message, the reply, its held outbox row and the conversation update (gateway/storage/turns.py),
# and settling the held row once the passive reply went out. A dedupe SELECT before them made it 7 (issue 14's
# count); the four writes one by one, 6.
BOT_MESSAGE_BOUND = 3
_DEDUPE_READ = "messages.channel_msg_id ="


async def ask(kefu: Kefu, text: str, msg_id: int) -> str:
    xml = fixture_xml("text.xml", FromUserName="oBotPath", Content=text, MsgId=msg_id)
    status, body, _ = await kefu.push.post(xml)
    assert status == 200, body
    return "" if body == "success" else xml_dict(body)["Content"]


async def test_a_faq_message_is_deduplicated_by_its_insert(start: Any) -> None:  # noqa: F811
    kefu = await start(assignment="manual", job_interval_s=3600)
    await kefu.runtime.outbox.stop()  # its polling would add statements to the count
    first = await ask(kefu, "怎么退货", 7_000_001)
    async with counting(kefu) as seen:
        second = await ask(kefu, "多久发货", 7_000_002)
    assert first and second and first != second
    assert not [s for s in seen if _DEDUPE_READ in s], seen
    if kefu.runtime.store.engine.dialect.name == "postgresql":
        writes = [s for s in seen if not s.startswith("select pg_")]
        assert len(writes) <= BOT_MESSAGE_BOUND, writes
        assert any(s.startswith("WITH c AS") for s in writes), writes  # the turn, counted on the wire
    # A platform retry: the same answer, read back after the INSERT refused the MsgId; nothing new stored.
    assert await ask(kefu, "多久发货", 7_000_002) == second
    conv = await kefu.conversation("oBotPath")
    rows = await kefu.runtime.store.messages(conv.id)
    assert [m.channel_msg_id for m in rows if m.direction == "in"] == ["7000001", "7000002"]
    assert len([m for m in rows if m.direction == "out"]) == 2
