"""The pipeline end to end on a running app: dedupe, routing, classification, handoff, lifecycle."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from typing import Any

import pytest

from gateway.app import create_app
from gateway.keys import RUNTIME
from gateway.message import Message, utcnow
from gateway.runtime import Runtime
from handoff.agents import Role, new_token
from handoff.state import ConversationState
from kb.model import DEFAULT_REPLIES

_ids = itertools.count(1)


def msg(
    text: str = "", *, user: str = "u1", msg_id: str | None = "auto", channel: str = "web", **kw: Any
) -> Message:
    account = kw.pop("account", "default")
    return Message(
        channel=channel,
        account=account,
        conversation_key=kw.pop("conversation_key", f"{channel}:{account}:{user}"),
        user_id=user,
        text=text,
        channel_msg_id=f"m{next(_ids)}" if msg_id == "auto" else msg_id,
        **kw,
    )


@pytest.fixture
async def runtime(app_client: Any) -> Runtime:
    return app_client.app[RUNTIME]


async def strict_runtime(aiohttp_client: Any, settings_factory: Any, **sections: Any) -> Runtime:
    """An app whose thresholds make the test FAQ's near misses land on 'suggest'."""
    settings = settings_factory(matcher={"answer_threshold": 0.95, "suggest_threshold": 0.5}, **sections)
    client = await aiohttp_client(create_app(settings))
    return client.app[RUNTIME]


async def test_confident_answer_uses_the_channel_variant_and_is_recorded(runtime: Runtime) -> None:
    web = await runtime.pipeline.handle(msg("尺码怎么选"))
    wechat = await runtime.pipeline.handle(
        msg("尺码怎么选", channel="wechat", account="demo", user="openid-1")
    )
    assert web.decision == "answer" and not web.duplicate and not web.handoff
    assert web.replies[0].text.startswith("您好，尺码表请看 https://shop.example.com")
    assert wechat.replies[0].text.startswith("您好，尺码表在商品详情页下方")

    inbound, reply = await runtime.store.messages(web.conversation_id)
    assert (inbound.direction, inbound.sender, inbound.decision, inbound.entry_id) == (
        "in",
        "customer",
        "answer",
        "size-guide",
    )
    assert inbound.confidence is not None and inbound.confidence >= 0.62
    assert inbound.kb_version == runtime.kb.version
    assert (reply.direction, reply.sender, reply.reply_to, reply.entry_id) == (
        "out",
        "bot",
        inbound.id,
        "size-guide",
    )
    assert web.reply_ids == (reply.id,)
    assert web.target["user_id"] == "u1"


async def test_a_retry_gets_the_same_stored_replies_without_classifying_again(runtime: Runtime) -> None:
    first = await runtime.pipeline.handle(msg("怎么退货", msg_id="wx-1"))
    # The FAQ changing between the two deliveries must not change the answer to the retry.
    retry = await runtime.pipeline.handle(msg("随便什么", msg_id="wx-1"))
    assert retry.duplicate and retry.message_id == first.message_id
    assert retry.replies == first.replies and retry.reply_ids == first.reply_ids
    assert retry.decision == "answer"
    assert len(await runtime.store.messages(first.conversation_id)) == 2


async def test_concurrent_duplicates_store_one_message_and_agree_on_the_replies(runtime: Runtime) -> None:
    results = await asyncio.gather(
        *(runtime.pipeline.handle(msg("退款多久到账", msg_id="dup-1")) for _ in range(5))
    )
    assert sum(not r.duplicate for r in results) == 1
    assert len({r.message_id for r in results}) == 1
    assert all(r.replies == results[0].replies for r in results)
    assert len(await runtime.store.messages(results[0].conversation_id)) == 2


async def test_concurrent_first_messages_share_one_conversation(runtime: Runtime) -> None:
    results = await asyncio.gather(
        *(runtime.pipeline.handle(msg(q, user="new")) for q in ("你好", "怎么退货", "怎么开发票"))
    )
    assert len({r.conversation_id for r in results}) == 1
    assert len(await runtime.store.conversations_for_key("web:default:new")) == 1


async def test_unsure_match_suggests_then_hands_off_after_repeated_misses(
    aiohttp_client: Any, settings_factory: Any
) -> None:
    runtime = await strict_runtime(aiohttp_client, settings_factory)
    first = await runtime.pipeline.handle(msg("退货退款"))
    assert first.decision == "suggest" and not first.handoff
    (reply,) = first.replies
    assert reply.text.startswith("您是不是想问：\n1. 怎么退货\n2. ")
    assert reply.suggestions[0] == "怎么退货" and len(reply.suggestions) >= 2

    second = await runtime.pipeline.handle(msg("退货和发票"))
    assert second.handoff and second.reason == "repeated_misses"
    assert second.replies[0].text == DEFAULT_REPLIES["handoff_no_match"]
    conversation = await runtime.store.conversation(second.conversation_id)
    assert conversation is not None and conversation.state is ConversationState.QUEUED
    assert conversation.handoff_reason == "repeated_misses" and conversation.queued_at is not None


async def test_an_answer_resets_the_miss_streak(aiohttp_client: Any, settings_factory: Any) -> None:
    runtime = await strict_runtime(aiohttp_client, settings_factory)
    assert (await runtime.pipeline.handle(msg("退货退款"))).decision == "suggest"
    assert (await runtime.pipeline.handle(msg("怎么退货"))).decision == "answer"
    assert (await runtime.pipeline.handle(msg("退货和发票"))).decision == "suggest"


async def test_complaint_goes_to_the_front_of_the_queue(aiohttp_client: Any, settings_factory: Any) -> None:
    groups = [{"name": "售前"}, {"name": "售后", "intents": ["complaint"], "priority": "high"}]
    settings = settings_factory(handoff={"groups": groups, "default_group": "售前"})
    runtime = (await aiohttp_client(create_app(settings))).app[RUNTIME]
    result = await runtime.pipeline.handle(msg("你们就是骗子，我要投诉"))
    assert result.handoff and result.reason == "complaint"
    assert result.replies[0].text == DEFAULT_REPLIES["handoff_complaint"]
    conversation = await runtime.store.conversation(result.conversation_id)
    assert conversation is not None
    assert (conversation.state, conversation.priority, conversation.group) == (
        ConversationState.QUEUED,
        "high",
        "售后",
    )


async def test_queued_the_bot_answers_what_it_is_sure_of_and_with_an_agent_stays_quiet(
    runtime: Runtime,
) -> None:
    handoff = await runtime.pipeline.handle(msg("转人工"))
    assert handoff.handoff and handoff.replies[0].text == DEFAULT_REPLIES["handoff"]
    later = await runtime.pipeline.handle(msg("怎么退货"))
    assert later.decision == "with_human" and later.reason == "queued_answered"
    assert [r.entry_id for r in later.replies] == ["return-how"]
    assert later.conversation_id == handoff.conversation_id
    stored = await runtime.store.messages(later.conversation_id)
    assert [m.text for m in stored if m.direction == "in"] == ["转人工", "怎么退货"]
    assert runtime.handoff is not None
    agent = await runtime.handoff.db.add_agent(
        "小王", role=Role.AGENT, groups=["售前"], max_chats=3, token_hash=new_token()[1]
    )
    assert (await runtime.handoff.db.claim(str(later.conversation_id), agent.id, by=agent.id)).ok
    assigned = await runtime.pipeline.handle(msg("怎么退货"))
    assert assigned.replies == [] and (assigned.decision, assigned.reason) == ("with_human", "assigned")


async def test_nothing_matched_hands_off_honestly(runtime: Runtime) -> None:
    result = await runtime.pipeline.handle(msg("量子纠缠的原理"))
    if result.decision != "handoff":  # the matcher decides; this text must not be a confident answer
        pytest.skip(f"matcher answered {result.decision}")
    assert result.replies[0].text == DEFAULT_REPLIES["handoff_no_match"]
    assert result.reason == "no_match"


async def test_group_messages_are_answered_only_when_addressed(runtime: Runtime) -> None:
    key = "qq:bot:group:g1:u9"
    quiet = await runtime.pipeline.handle(
        msg("怎么退货", chat_type="group", group_id="g1", to_bot=False, conversation_key=key)
    )
    assert quiet.replies == [] and quiet.decision == "not_addressed"
    addressed = await runtime.pipeline.handle(
        msg("怎么退货", chat_type="group", group_id="g1", to_bot=True, conversation_key=key)
    )
    assert addressed.decision == "answer" and addressed.replies
    assert addressed.target["group_id"] == "g1"


async def test_small_talk_gets_the_intent_reply(runtime: Runtime) -> None:
    result = await runtime.pipeline.handle(msg("谢谢你"))
    assert result.decision == "smalltalk"
    assert result.replies[0].text == "不客气，祝您购物愉快！"


async def test_events_subscribe_menu_click_and_non_text(runtime: Runtime) -> None:
    greeting = runtime.kb.snapshot()[0].replies.get("greeting")  # type: ignore[index]
    subscribed = await runtime.pipeline.handle(msg(kind="event", event="subscribe", msg_id=None))
    assert subscribed.replies[0].text == greeting and greeting.startswith("欢迎光临悦购优选")

    menu = await runtime.pipeline.handle(msg(kind="event", event="CLICK", event_key="invoice", msg_id=None))
    assert menu.decision == "answer" and menu.replies[0].entry_id == "invoice"

    unknown = await runtime.pipeline.handle(msg(kind="event", event="unsubscribe", msg_id=None))
    assert unknown.replies == [] and unknown.decision == "event"

    picture = await runtime.pipeline.handle(msg("", kind="image"))
    assert picture.replies[0].text == DEFAULT_REPLIES["non_text"]
    assert picture.replies[0].suggestions == ("转人工",)

    human = await runtime.pipeline.handle(msg(kind="event", event="click", event_key="转人工", msg_id=None))
    assert human.handoff and human.reason == "asked_human"


async def test_an_idle_bot_conversation_ends_and_the_next_message_opens_a_new_one(runtime: Runtime) -> None:
    first = await runtime.pipeline.handle(msg("你好"))
    later = utcnow() + timedelta(minutes=31)
    runtime.pipeline.clock = lambda: later
    second = await runtime.pipeline.handle(msg("怎么退货"))
    assert second.conversation_id != first.conversation_id
    old = await runtime.store.conversation(first.conversation_id)
    assert old is not None and old.state is ConversationState.CLOSED and old.closed_reason == "idle"


async def test_push_replies_enqueues_each_stored_reply_once(runtime: Runtime) -> None:
    result = await runtime.pipeline.handle(msg("怎么开发票", user="pushy"))
    first = await runtime.pipeline.push_replies(result)
    again = await runtime.pipeline.push_replies(result)
    assert first == again and len(first) == 1
    row = await runtime.store.outbox(first[0])
    assert row is not None
    assert (
        row.text == result.replies[0].text
        and row.target["user_id"] == "pushy"
        and row.message_id == result.reply_ids[0]
    )


async def test_a_number_after_a_suggestion_picks_that_question(
    aiohttp_client: Any, settings_factory: Any
) -> None:
    runtime = await strict_runtime(aiohttp_client, settings_factory, pipeline={"misses_before_handoff": 3})
    suggested = await runtime.pipeline.handle(msg("退货退款"))
    second_question = suggested.replies[0].suggestions[1]
    picked = await runtime.pipeline.handle(msg("第2个"))
    assert picked.decision == "answer" and picked.reason == "picked_suggestion"
    entry = next(e for e in runtime.kb.snapshot()[0].entries if e.question == second_question)  # type: ignore[index]
    assert picked.replies[0].entry_id == entry.id and picked.replies[0].text == entry.answer
    # Without a suggestion just before, a bare number is an ordinary message.
    assert (await runtime.pipeline.handle(msg("2"))).reason != "picked_suggestion"
