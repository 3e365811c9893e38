"""A restarted gateway continues where the last one stopped: conversation state and dedupe live in the DB."""

from __future__ import annotations

from typing import Any

from gateway.app import create_app
from gateway.keys import RUNTIME
from handoff.state import ConversationState


async def test_conversation_state_and_dedupe_survive_a_restart(
    aiohttp_client: Any, settings_factory: Any
) -> None:
    settings = settings_factory()
    before = await aiohttp_client(create_app(settings))
    handed_off = await (
        await before.post("/web/messages", json={"user_id": "r1", "text": "转人工", "message_id": "r-1"})
    ).json()
    await before.close()

    after = await aiohttp_client(create_app(settings))
    runtime = after.app[RUNTIME]
    # The platform retries the message the old process answered: same replies, nothing new stored.
    retry = await (
        await after.post("/web/messages", json={"user_id": "r1", "text": "转人工", "message_id": "r-1"})
    ).json()
    assert retry["duplicate"] is True and retry["replies"] == handed_off["replies"]

    # Still queued after the restart: the bot answers what it is sure of, in the same conversation.
    later = await (await after.post("/web/messages", json={"user_id": "r1", "text": "怎么退货"})).json()
    assert later["conversation_id"] == handed_off["conversation_id"]
    assert [r["text"][:13] for r in later["replies"]] == ["您好，在「我的订单」中找到"]
    conversation = await runtime.store.conversation(handed_off["conversation_id"])
    assert conversation is not None and conversation.state is ConversationState.QUEUED
    assert conversation.handoff_reason == "asked_human"
