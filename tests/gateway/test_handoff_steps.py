"""A message's handoff step runs after its webhook answered: in order per conversation, bounded (end to end
through WeChat's webhook, on SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import pytest

from bench.handoff import gauge
from handoff import notices
from tests.fakes.wechat_api import fixture_xml, xml_dict
from tests.gateway.test_handoff_flow import Kefu, start, wechat_api  # noqa: F401 (fixtures)

_ids = itertools.count(8_300_000_000_000_000_000)


class Gate:
    """Holds every handoff step at its next-shift read (a 留言's) until `open()`."""

    def __init__(self, kefu: Kefu, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reached = asyncio.Event()
        self._open = asyncio.Event()
        own = kefu.runtime.handoff.next_shift_start

        async def held(group: str, now: Any) -> Any:
            self.reached.set()
            await self._open.wait()
            return await own(group, now)

        monkeypatch.setattr(kefu.runtime.handoff, "next_shift_start", held)

    def open(self) -> None:
        self._open.set()


async def held_steps(start: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Kefu, Gate]:  # noqa: F811
    """A gateway whose one agent of 售后 is offline (a complaint becomes a 留言), its steps held at the gate."""
    kefu = await start(assignment="manual", job_interval_s=3600)
    await kefu.agent("小马", "售后")
    return kefu, Gate(kefu, monkeypatch)


async def post(kefu: Kefu, text: str, openid: str) -> str:
    """The customer writes through the webhook (not waiting for any handoff step); the passive reply."""
    xml = fixture_xml("text.xml", FromUserName=openid, Content=text, MsgId=next(_ids))
    status, body, _ = await kefu.push.post(xml)
    assert status == 200, body
    return "" if body == "success" else xml_dict(body)["Content"]


async def steps_behind(kefu: Kefu) -> float:
    """`kefu_handoff_steps_behind` as /metrics shows it (what `make bench` waits on after a round)."""
    value = gauge(await (await kefu.client.get("/metrics")).text(), "kefu_handoff_steps_behind")
    assert value is not None
    return value


async def system_texts(kefu: Kefu, openid: str) -> list[str]:
    conv = await kefu.conversation(openid)
    return [m.text for m in await kefu.runtime.store.messages(conv.id) if m.sender == "system"]


async def test_a_handoff_is_answered_before_its_step_and_the_step_follows(
    start: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kefu, gate = await held_steps(start, monkeypatch)
    db = kefu.runtime.handoff.db

    answer = await post(kefu, "我要投诉", "oStep1")
    # The webhook answered (the bot's handoff reply); its step cannot have finished (it waits at its read).
    assert answer, answer
    await gate.reached.wait()
    conv = await kefu.conversation("oStep1")
    assert not await db.waiting_ticket(conv.id)
    assert await system_texts(kefu, "oStep1") == []
    assert await steps_behind(kefu) == 1.0

    gate.open()
    await kefu.runtime.handoff.steps.settled()
    assert await steps_behind(kefu) == 0.0
    assert await db.waiting_ticket(conv.id)
    assert await system_texts(kefu, "oStep1") == [notices.no_agent_online()]
    assert (await kefu.texts(1, "oStep1")) == [notices.no_agent_online()]


async def test_a_conversations_steps_run_in_the_order_of_its_messages(
    start: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kefu, gate = await held_steps(start, monkeypatch)

    await post(kefu, "我要投诉", "oStep2")
    # The customer adds something while the handoff's step is still held: its own step waits behind it,
    # so it is acknowledged as an addition to the 留言 the first step makes (not as a place in a queue).
    assert await post(kefu, "订单号是 20261207", "oStep2") == ""
    assert await system_texts(kefu, "oStep2") == []
    gate.open()
    await kefu.runtime.handoff.steps.settled()
    assert await system_texts(kefu, "oStep2") == [notices.no_agent_online(), notices.ticket_followup()]


async def test_past_the_bound_a_webhook_waits_for_its_own_step(
    start: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kefu, gate = await held_steps(start, monkeypatch)
    kefu.runtime.handoff.steps.max_behind = 0  # every step is one too many: back-pressure at once

    request = asyncio.create_task(post(kefu, "我要投诉", "oStep3"))
    await gate.reached.wait()
    assert not request.done()  # held with its step (it cannot finish before the gate opens)
    gate.open()
    assert await request
    conv = await kefu.conversation("oStep3")
    assert await kefu.runtime.handoff.db.waiting_ticket(conv.id)


async def test_a_failed_step_is_logged_and_the_conversations_next_step_still_runs(
    start: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    kefu = await start(assignment="manual", job_interval_s=3600)
    await kefu.agent("小马", "售后")
    service = kefu.runtime.handoff
    own = service.on_queued
    failed: list[int] = []

    async def fails_once(conversation_id: int) -> None:
        if not failed:
            failed.append(conversation_id)
            raise RuntimeError("the database went away")
        await own(conversation_id)

    monkeypatch.setattr(service, "on_queued", fails_once)
    assert await post(kefu, "我要投诉", "oStep4")
    assert await post(kefu, "还有一件事", "oStep4") == ""
    await service.steps.settled()
    assert "handoff: follow-up of conversation" in caplog.text
    assert [r.levelno for r in caplog.records if "follow-up" in r.getMessage()] == [logging.ERROR]
    # The second message's step ran after the failed one: the conversation is queued, and the customer
    # got an acknowledgement with their place (the 留言 step that failed made no ticket).
    conv = await kefu.conversation("oStep4")
    assert failed == [conv.id]
    texts = await system_texts(kefu, "oStep4")
    assert len(texts) == 1 and texts[0] != notices.ticket_followup(), texts
