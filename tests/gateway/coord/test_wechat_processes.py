"""WeChat retries across two kefu apps that share a database and Redis (as two processes would).

What counts is what WeChat received: the passive XML answers the test accepts as WeChat, plus the
客服消息 the fake API accepted. Exactly one, whichever app each request reaches. Runs on SQLite and
PostgreSQL (the `db_url` fixture); the multi-process scenarios (tests/multiprocess/) do the same with
real `kefu serve` processes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

import pytest

from gateway.app import create_app
from gateway.channels.wechat.adapter import parse_xml, to_message, xml_fields
from gateway.keys import RUNTIME
from gateway.message import utcnow
from gateway.runtime import Runtime
from tests.fakes.wechat_api import APPID, SECRET, FakeWeChatAPI, WeChatPush, fixture_xml, xml_dict
from tests.gateway.test_wechat import PAYMENT_ANSWER, TOKEN, new_msg_id
from tests.waiting import eventually


@dataclass
class App:
    client: Any
    runtime: Runtime
    push: WeChatPush


@pytest.fixture
async def wechat_api(aiohttp_server: Any) -> FakeWeChatAPI:
    return await FakeWeChatAPI().start(aiohttp_server)


@pytest.fixture
def start_app(aiohttp_client, settings_factory, wechat_api, redis_section):
    async def start(**wechat: Any) -> App:
        account = {
            "name": "shop",
            "token": TOKEN,
            "appid": APPID,
            "secret": SECRET,
            "api_base": wechat_api.url,
        }
        settings = settings_factory(channels={"wechat": [account | wechat]}, redis=redis_section)
        app = create_app(settings)
        client = await aiohttp_client(app)
        return App(client, app[RUNTIME], WeChatPush(client, "/wechat/shop", TOKEN))

    return start


def answers(responses: list[tuple[int, str, Any]]) -> list[str]:
    """The passive answers among webhook responses (`success` is no answer)."""
    assert [status for status, _text, _q in responses] == [200] * len(responses)
    return [xml_dict(text)["Content"] for _status, text, _q in responses if text != "success"]


async def all_decided(app: App) -> bool:
    """Every reply row is cancelled (a passive answer carried it) or sent."""
    rows = await app.runtime.store.list_outbox()
    return all(r.status in ("cancelled", "sent") for r in rows)


async def no_sends(app: App, api: FakeWeChatAPI) -> None:
    """Every reply row is decided (none held or waiting), and the fake API got nothing."""
    await eventually(lambda: all_decided(app))
    await app.runtime.outbox.run_once()  # anything due would go now
    assert api.messages == []


async def test_the_same_msgid_at_two_processes_at_once_is_answered_once(start_app, wechat_api):
    a, b = await start_app(), await start_app()
    for _ in range(3):
        xml = fixture_xml("text.xml", MsgId=new_msg_id())
        responses = await asyncio.gather(a.push.post(xml), b.push.post(xml))
        assert answers(list(responses)) == [PAYMENT_ANSWER]
    await no_sends(a, wechat_api)


async def test_a_retry_after_the_retry_interval_repeats_the_lost_passive_answer_once(start_app, wechat_api):
    # WeChat retries only what it did not get: here the first answer (from a) was lost on the way.
    a, b = await start_app(retry_interval_s=0.01), await start_app(retry_interval_s=0.01)
    xml = fixture_xml("text.xml", MsgId=new_msg_id())
    status, _lost, _q = await a.push.post(xml)
    assert status == 200
    await asyncio.sleep(0.02)  # the (shortened) retry interval: the retry is one
    assert answers([await b.push.post(xml)]) == [PAYMENT_ANSWER]
    await no_sends(a, wechat_api)
    assert len(await a.runtime.store.messages_for_key(f"wechat:shop:{xml_dict(xml)['FromUserName']}")) == 2


async def test_a_slow_first_process_and_a_duplicate_elsewhere_give_one_answer(start_app, wechat_api):
    a, b = await start_app(), await start_app()
    # The first process stores slowly (past its deadline); the same MsgId reaches the other meanwhile.
    original = a.runtime.pipeline.handle

    async def slow(message: Any, **kw: Any) -> Any:
        await asyncio.sleep(0.4)
        return await original(message, **kw)

    a.runtime.pipeline.handle = slow  # type: ignore[method-assign]
    object.__setattr__(a.runtime.settings.pipeline, "wechat_reply_deadline_s", 0.2)
    object.__setattr__(b.runtime.settings.pipeline, "wechat_reply_deadline_s", 0.2)
    xml = fixture_xml("text.xml", MsgId=new_msg_id())
    first = asyncio.create_task(a.push.post(xml))
    await asyncio.sleep(0.05)
    responses = await asyncio.gather(first, b.push.post(xml))
    passive = answers(list(responses))
    await eventually(lambda: all_decided(a))
    sent = [m["text"]["content"] for m in wechat_api.messages]
    assert passive + sent == [PAYMENT_ANSWER]  # one path: the passive answer or 客服消息, never both


async def test_a_retry_after_the_owner_died_unanswered_is_answered_by_the_process_it_reaches(
    start_app, wechat_api
):
    a = await start_app()
    object.__setattr__(a.runtime.settings.pipeline, "wechat_reply_deadline_s", 0.3)
    xml = fixture_xml("text.xml", MsgId=new_msg_id())
    # Another process claimed this MsgId and was killed before answering (its claim has no outcome).
    inflight = a.runtime.coord.inflight
    assert inflight is not None
    await inflight.claim("wechat", "shop", xml_dict(xml)["MsgId"])
    assert answers([await a.push.post(xml)]) == [PAYMENT_ANSWER]  # WeChat's immediate retry, here
    await no_sends(a, wechat_api)


async def test_a_retry_after_the_owner_died_having_taken_the_speakers_turn_is_answered(start_app, wechat_api):
    a = await start_app()
    object.__setattr__(a.runtime.settings.pipeline, "wechat_reply_deadline_s", 0.3)
    xml = fixture_xml("text.xml", MsgId=new_msg_id())
    # Another process claimed this MsgId, took the passive speaker's turn and was killed before its answer
    # left (no outcome recorded): nobody else would answer. The retry waits half its deadline, then speaks.
    inflight = a.runtime.coord.inflight
    assert inflight is not None
    dead = await inflight.claim("wechat", "shop", xml_dict(xml)["MsgId"])
    assert await inflight.speak(dead)
    assert answers([await a.push.post(xml)]) == [PAYMENT_ANSWER]
    await no_sends(a, wechat_api)
    # A speaker that took its turn just now is not taken over (it is writing its answer), nor one that
    # recorded an outcome, however long ago it spoke.
    busy = await inflight.claim("wechat", "shop", new_msg_id())
    assert await inflight.speak(busy)
    assert not await inflight.take_over(replace(busy, token="follower"), 60.0)
    await inflight.finish(busy, "passive")
    assert not await inflight.take_over(replace(busy, token="follower"), 0.0)


async def test_a_late_retry_after_the_owner_died_having_cancelled_its_replies_still_answers(
    start_app, wechat_api
):
    # Found by chaos.workers (workers-kill9-tiny-deadline): a process stored the message, cancelled its reply
    # rows for its passive answer and was killed before writing it. WeChat's retry reached the other process,
    # whose store (here the duplicate lookup) outlasted its budget: it said `success`, WeChat did not retry,
    # and the cancelled reply was sent by nobody. The retry must take the silent speaker's turn and hand the
    # cancelled rows to the worker: one 客服消息, nothing passive.
    a = await start_app()
    object.__setattr__(a.runtime.settings.pipeline, "wechat_reply_deadline_s", 0.2)
    xml = fixture_xml("text.xml", MsgId=new_msg_id())
    message = to_message("shop", xml, xml_fields(parse_xml(xml)), flat=True)
    assert message is not None
    inflight = a.runtime.coord.inflight
    assert inflight is not None
    # The dead process: claimed, stored (rows held), took the speaker's turn, cancelled the rows.
    dead = await inflight.claim("wechat", "shop", message.channel_msg_id)
    stored = await a.runtime.pipeline.handle(message, outbox="held")
    assert await inflight.speak(dead)
    assert await a.runtime.store.settle_held([i for i, _s in stored.outbox], "cancelled", utcnow())
    original = a.runtime.pipeline.handle

    async def slow(msg: Any, **kw: Any) -> Any:
        await asyncio.sleep(0.3)
        return await original(msg, **kw)

    a.runtime.pipeline.handle = slow  # type: ignore[method-assign]
    assert answers([await a.push.post(xml)]) == []  # late: `success`, the answer goes by 客服消息

    async def sent() -> bool:
        await a.runtime.outbox.run_once()
        return bool(wechat_api.messages)

    await eventually(sent)
    assert wechat_api.texts_to(message.user_id) == [PAYMENT_ANSWER]
