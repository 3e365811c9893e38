"""WeChat official accounts end to end: WeChat's servers (signed, in safe mode encrypted) talk to the real
kefu app over HTTP; answers come from the test FAQ, late answers reach the fake 客服消息 API.

Runs on SQLite and PostgreSQL (the `db_url` fixture).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from gateway.app import create_app
from gateway.channels.wechat.adapter import parse_xml, to_message, xml_fields
from gateway.keys import RUNTIME
from gateway.message import Message, utcnow
from gateway.runtime import Runtime
from tests.fakes.wechat_api import APPID, SECRET, FakeWeChatAPI, WeChatPush, fixture_xml, xml_dict
from tests.gateway.db_faults import failing_replies
from tests.waiting import eventually

TOKEN = "kefu-test-token"
AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
OPENID = "oJ7pR5x1Qm2kZt9WvLhYdE3sAa0c"  # the openid in the recorded fixtures
GH_ID = "gh_3f2a9c1b7e64"
PAYMENT_ANSWER = "您好，我们支持微信支付、支付宝、银联云闪付和信用卡快捷支付。"
SIZE_ANSWER_WECHAT = "您好，尺码表在商品详情页下方，把您的身高体重发在这里，客服帮您推荐尺码。"
GREETING = "欢迎光临悦购优选！请直接输入您的问题，例如“怎么退货”；需要人工服务请回复“转人工”。"

_msg_ids = iter(range(7_000_000_000_000_000_000, 8_000_000_000_000_000_000))


def new_msg_id() -> int:
    return next(_msg_ids)


@dataclass
class Kefu:
    """The running app, its runtime, and a WeChat pusher per account (plaintext `shop`, safe-mode `secure`)."""

    client: Any
    runtime: Runtime
    shop: WeChatPush
    secure: WeChatPush
    api: FakeWeChatAPI

    def slow_pipeline(self, delay_s: float) -> list[str]:
        """Make every pipeline.handle take `delay_s` longer; returns the MsgIds handled (to count calls)."""
        pipeline = self.runtime.pipeline
        original = pipeline.handle
        calls: list[str] = []

        async def slow_handle(message, **kw):
            calls.append(message.channel_msg_id)
            await asyncio.sleep(delay_s)
            return await original(message, **kw)

        pipeline.handle = slow_handle  # type: ignore[method-assign]
        return calls

    async def inbound(self, openid: str = OPENID) -> list[Any]:
        return await self.runtime.store.messages_for_key(f"wechat:shop:{openid}", direction="in")


@pytest.fixture
async def wechat_api(aiohttp_server) -> FakeWeChatAPI:
    return await FakeWeChatAPI().start(aiohttp_server)


@pytest.fixture
def start_kefu(aiohttp_client, settings_factory, wechat_api) -> Callable[..., Awaitable[Kefu]]:
    async def start(*, account_extra: dict[str, Any] | None = None, **sections: Any) -> Kefu:
        account = {"token": TOKEN, "appid": APPID, "secret": SECRET, "api_base": wechat_api.url}
        account |= account_extra or {}
        sections.setdefault("channels", {})
        sections["channels"]["wechat"] = [
            {"name": "shop", **account},
            {"name": "secure", **account, "aes_key": AES_KEY},
        ]
        app = create_app(settings_factory(**sections))
        client = await aiohttp_client(app)
        return Kefu(
            client,
            app[RUNTIME],
            WeChatPush(client, "/wechat/shop", TOKEN),
            WeChatPush(client, "/wechat/secure", TOKEN, AES_KEY, APPID),
            wechat_api,
        )

    return start


@pytest.fixture
async def kefu(start_kefu) -> Kefu:
    return await start_kefu()


async def ask(push: WeChatPush, xml: str, *, mode: str = "plain") -> dict[str, str]:
    status, text, _ = await push.post(xml, mode=mode)
    assert status == 200, text
    if text == "success":
        return {}
    return push.open_reply(text) if mode == "safe" else xml_dict(text)


# --- URL verification ------------------------------------------------------------------------------


async def test_url_verification_echoes_echostr(kefu):
    query = kefu.shop.signed_query() | {"echostr": "5837397520265936958"}
    resp = await kefu.client.get("/wechat/shop", params=query)
    assert resp.status == 200
    assert await resp.text() == "5837397520265936958"
    assert resp.content_type == "text/plain"


async def test_url_verification_with_a_wrong_signature_is_forbidden(kefu):
    query = kefu.shop.signed_query() | {"echostr": "123", "signature": "0" * 40}
    resp = await kefu.client.get("/wechat/shop", params=query)
    assert resp.status == 403
    assert "123" not in await resp.text()


@pytest.mark.parametrize("missing", ["signature", "timestamp", "nonce", "echostr"])
async def test_url_verification_without_a_parameter_is_a_400(kefu, missing):
    query = kefu.shop.signed_query() | {"echostr": "123"}
    del query[missing]
    resp = await kefu.client.get("/wechat/shop", params=query)
    assert resp.status == 400
    assert missing in await resp.text()


async def test_unknown_account_is_404(kefu):
    query = kefu.shop.signed_query() | {"echostr": "123"}
    assert (await kefu.client.get("/wechat/nosuch", params=query)).status == 404
    resp = await kefu.client.post("/wechat/nosuch", params=query, data=fixture_xml("text.xml"))
    assert resp.status == 404


# --- answering from the FAQ --------------------------------------------------------------------------


async def test_plaintext_question_is_answered_from_the_faq(kefu):
    reply = await ask(kefu.shop, fixture_xml("text.xml", MsgId=new_msg_id()))
    assert reply["Content"] == PAYMENT_ANSWER
    assert reply["MsgType"] == "text"
    assert reply["ToUserName"] == OPENID  # source and target swapped
    assert reply["FromUserName"] == GH_ID
    [stored] = await kefu.inbound()
    assert stored.text == "支持哪些支付方式"
    assert stored.conversation_key == f"wechat:shop:{OPENID}"


async def test_safe_mode_question_is_answered_encrypted(kefu):
    status, text, _ = await kefu.secure.post(fixture_xml("text.xml", MsgId=new_msg_id()), mode="safe")
    assert status == 200
    assert "<Encrypt>" in text and PAYMENT_ANSWER not in text  # nothing readable on the wire
    assert kefu.secure.open_reply(text)["Content"] == PAYMENT_ANSWER


async def test_channel_specific_answer_is_used_for_wechat(kefu):
    reply = await ask(kefu.shop, fixture_xml("text.xml", Content="尺码怎么选", MsgId=new_msg_id()))
    assert reply["Content"] == SIZE_ANSWER_WECHAT


async def test_voice_with_recognition_is_answered_as_text(kefu):
    reply = await ask(kefu.shop, fixture_xml("voice_recognition.xml", MsgId=new_msg_id()))
    assert reply["Content"] == PAYMENT_ANSWER
    [stored] = await kefu.inbound()
    assert stored.kind == "voice"
    assert stored.text == "支持哪些支付方式？"


@pytest.mark.parametrize("fixture", ["image.xml", "voice.xml"])
async def test_image_or_untranscribed_voice_gets_a_polite_text_only_reply(kefu, fixture):
    reply = await ask(kefu.shop, fixture_xml(fixture, MsgId=new_msg_id()))
    snapshot = kefu.runtime.kb.snapshot()
    assert snapshot is not None
    assert reply["Content"] == snapshot[0].replies.get("non_text")
    assert "文字" in reply["Content"]


async def test_subscribe_is_greeted(kefu):
    reply = await ask(kefu.shop, fixture_xml("subscribe.xml", CreateTime=int(time.time())))
    assert reply["Content"] == GREETING


async def test_subscribe_by_qr_scene_is_greeted_too(kefu):
    reply = await ask(kefu.shop, fixture_xml("subscribe_scan.xml", CreateTime=int(time.time())))
    assert reply["Content"] == GREETING


async def test_menu_click_answers_that_faq_entry(kefu):
    reply = await ask(kefu.shop, fixture_xml("click.xml", CreateTime=int(time.time())))
    assert reply["Content"] == PAYMENT_ANSWER


async def test_unsubscribe_is_recorded_but_never_answered(kefu):
    status, text, _ = await kefu.shop.post(fixture_xml("unsubscribe.xml", CreateTime=int(time.time())))
    assert (status, text) == (200, "success")
    [stored] = await kefu.inbound()
    assert stored.kind == "event"
    assert stored.channel_msg_id.startswith(f"evt:{OPENID}:")


async def test_menu_link_event_is_acknowledged_and_dropped(kefu):
    status, text, _ = await kefu.shop.post(fixture_xml("view.xml"))
    assert (status, text) == (200, "success")
    assert await kefu.inbound() == []


async def test_event_retries_dedupe_on_openid_and_create_time(kefu):
    xml = fixture_xml("subscribe.xml", CreateTime=int(time.time()))
    first = await ask(kefu.shop, xml)
    second = await ask(kefu.shop, xml)
    assert first["Content"] == second["Content"] == GREETING
    assert len(await kefu.inbound()) == 1


# --- what the reply XML survives ---------------------------------------------------------------------


NASTY_FAQ = """
faqs:
  - id: markup-help
    question: 代码块怎么写
    similar: [怎么写代码块]
    answer: "用 <![CDATA[ 包起来，以 ]]> 结束 & 注意 <xml> 转义 😀\\x07\\x1b 完"
    category: 测试
"""


LONG_FAQ = """
faqs:
  - id: long-policy
    question: 完整的售后政策是什么
    similar: [售后政策全文]
    answer: {answer}
    category: 测试
"""


async def test_answer_too_long_for_one_passive_reply_goes_out_as_several_messages(start_kefu, faq_dir):
    answer = "\n\n".join(
        f"第{i}条：" + "商品签收后七天内可以无理由退货，运费由买家承担。" * 12 for i in range(1, 5)
    )
    # A JSON string is a valid YAML double-quoted scalar.
    (faq_dir / "long.yaml").write_text(
        LONG_FAQ.format(answer=json.dumps(answer, ensure_ascii=False)), "utf-8"
    )
    kefu = await start_kefu()
    status, text, _ = await kefu.shop.post(
        fixture_xml("text.xml", Content="完整的售后政策是什么", MsgId=new_msg_id())
    )
    assert (status, text) == (200, "success")
    await kefu.api.wait_for_messages(2)
    await asyncio.sleep(0.2)
    sent = kefu.api.texts_to(OPENID)
    assert len(sent) >= 2
    assert all(len(piece.encode("utf-8")) <= 2000 for piece in sent)
    assert "".join(sent).replace("\n", "") == answer.replace("\n", "")  # nothing lost but the cut newlines


@pytest.mark.parametrize("mode", ["plain", "safe"])
async def test_answer_with_cdata_end_emoji_and_control_characters_is_valid_xml(start_kefu, faq_dir, mode):
    (faq_dir / "markup.yaml").write_text(NASTY_FAQ, encoding="utf-8")
    kefu = await start_kefu()
    push = kefu.shop if mode == "plain" else kefu.secure
    reply = await ask(push, fixture_xml("text.xml", Content="代码块怎么写", MsgId=new_msg_id()), mode=mode)
    # xml_dict parses strictly: a broken CDATA section or a control character would raise here.
    assert reply["Content"] == "用 <![CDATA[ 包起来，以 ]]> 结束 & 注意 <xml> 转义 😀 完"


async def test_question_with_cdata_end_and_emoji_is_read_intact(kefu):
    xml = fixture_xml("text.xml", MsgId=new_msg_id()).replace(
        "<![CDATA[支持哪些支付方式]]>", "<![CDATA[支持哪些支付方式]]]]><![CDATA[>😀]]>"
    )
    await ask(kefu.shop, xml)
    [stored] = await kefu.inbound()
    assert stored.text == "支持哪些支付方式]]>😀"


# --- refused requests --------------------------------------------------------------------------------


async def test_forged_signature_is_forbidden_and_nothing_is_stored(kefu):
    status, _, _ = await kefu.shop.post(
        fixture_xml("text.xml", MsgId=new_msg_id()), query={"signature": "0" * 40}
    )
    assert status == 403
    assert await kefu.runtime.store.count_messages() == 0


async def test_missing_signature_is_forbidden(kefu):
    query = kefu.shop.signed_query()
    del query["signature"]
    resp = await kefu.client.post("/wechat/shop", params=query, data=fixture_xml("text.xml"))
    assert resp.status == 403
    assert await kefu.runtime.store.count_messages() == 0


async def test_signature_made_with_another_token_is_forbidden(kefu):
    impostor = WeChatPush(kefu.client, "/wechat/shop", "not-the-token")
    status, _, _ = await impostor.post(fixture_xml("text.xml", MsgId=new_msg_id()))
    assert status == 403


async def test_safe_mode_with_a_wrong_msg_signature_is_forbidden(kefu):
    status, _, _ = await kefu.secure.post(
        fixture_xml("text.xml", MsgId=new_msg_id()), mode="safe", query={"msg_signature": "1" * 40}
    )
    assert status == 403
    assert await kefu.runtime.store.count_messages() == 0


async def test_safe_mode_message_for_another_appid_is_forbidden(kefu):
    other = WeChatPush(kefu.client, "/wechat/secure", TOKEN, AES_KEY, "wx_other_app_000")
    status, _, _ = await other.post(fixture_xml("text.xml", MsgId=new_msg_id()), mode="safe")
    assert status == 403
    assert await kefu.runtime.store.count_messages() == 0


@pytest.mark.parametrize(
    "body",
    [
        "这不是XML",
        '{"MsgType": "text"}',
        "<xml><MsgType>text</MsgType>",  # truncated
        "<html><body>hi</body></html>",  # XML, but not WeChat's
        "<xml><ToUserName>gh</ToUserName></xml>",  # no MsgType
        "<xml><MsgType>text</MsgType><Content>no sender</Content></xml>",
        "<xml><MsgType>text</MsgType><FromUserName>o</FromUserName><Content><b>x</b></Content><MsgId>9</MsgId></xml>",
        b"<xml><MsgType>text</MsgType><Content>\xff\xfe</Content></xml>",  # not UTF-8
        "",
    ],
)
async def test_body_that_is_not_a_wechat_message_is_a_400(kefu, body):
    status, _, _ = await kefu.shop.post(body)
    assert status == 400
    assert await kefu.runtime.store.count_messages() == 0


@pytest.mark.parametrize(
    "body",
    [
        # billion laughs
        '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]>'
        "<xml><MsgType>text</MsgType><FromUserName>o</FromUserName><Content>&b;</Content><MsgId>1</MsgId></xml>",
        # external entity (XXE)
        '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        "<xml><MsgType>text</MsgType><FromUserName>o</FromUserName><Content>&x;</Content><MsgId>2</MsgId></xml>",
        # a bare DOCTYPE
        '<!DOCTYPE xml SYSTEM "http://127.0.0.1:1/dtd"><xml><MsgType>text</MsgType><FromUserName>o</FromUserName>'
        "<Content>支持哪些支付方式</Content><MsgId>3</MsgId></xml>",
        # a declared encoding that is not what the bytes are (the DOCTYPE check must see what expat sees)
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">]>'
        "<xml><MsgType>text</MsgType><FromUserName>o</FromUserName><Content>&a;</Content><MsgId>4</MsgId></xml>",
    ],
)
async def test_doctype_and_entities_are_refused(kefu, body):
    status, text, _ = await kefu.shop.post(body)
    assert status == 400
    assert "root:" not in text
    assert await kefu.runtime.store.count_messages() == 0


async def test_a_doctype_in_the_customers_text_is_only_text(kefu):
    xml = fixture_xml("text.xml", Content="<!DOCTYPE html> 支持哪些支付方式", MsgId=new_msg_id())
    assert await ask(kefu.shop, xml)  # answered: the markup is in CDATA, no DTD
    assert await kefu.runtime.store.count_messages() == 2


async def test_body_over_64_kib_is_413(kefu):
    big = fixture_xml("text.xml", Content="长" * 30_000, MsgId=new_msg_id())  # ~90 KB of UTF-8
    status, _, _ = await kefu.shop.post(big)
    assert status == 413
    assert await kefu.runtime.store.count_messages() == 0


async def test_body_just_under_the_limit_is_accepted(kefu):
    xml = fixture_xml("text.xml", Content="长" * 20_000, MsgId=new_msg_id())  # ~60 KB
    status, _, _ = await kefu.shop.post(xml)
    assert status == 200


# --- WeChat retries ----------------------------------------------------------------------------------


async def test_same_msgid_three_times_is_stored_once_and_answered_the_same(kefu):
    xml = fixture_xml("text.xml", MsgId=new_msg_id())
    replies = [await ask(kefu.shop, xml) for _ in range(3)]
    assert {r["Content"] for r in replies} == {PAYMENT_ANSWER}
    assert len(await kefu.inbound()) == 1


async def test_retries_arriving_while_the_first_is_handled_share_its_answer(kefu):
    calls = kefu.slow_pipeline(0.3)
    xml = fixture_xml("text.xml", MsgId=new_msg_id())
    replies = await asyncio.gather(*(ask(kefu.shop, xml) for _ in range(3)))
    assert [r["Content"] for r in replies] == [PAYMENT_ANSWER] * 3
    assert len(calls) == 1  # the retries waited for the first handling instead of starting their own
    assert len(await kefu.inbound()) == 1


async def test_same_msgid_on_two_accounts_is_two_messages(kefu):
    msg_id = new_msg_id()
    await ask(kefu.shop, fixture_xml("text.xml", MsgId=msg_id))
    await ask(kefu.secure, fixture_xml("text.xml", MsgId=msg_id), mode="safe")
    assert await kefu.runtime.store.count_messages() == 4  # two questions, two answers


# --- the 5-second deadline and 客服消息 ---------------------------------------------------------------


async def test_slow_answer_returns_success_and_arrives_through_customer_service_api(start_kefu):
    kefu = await start_kefu(pipeline={"wechat_reply_deadline_s": 0.05})
    kefu.slow_pipeline(0.3)
    status, text, _ = await kefu.shop.post(fixture_xml("text.xml", MsgId=new_msg_id()))
    assert (status, text) == (200, "success")
    await kefu.api.wait_for_messages(1)
    assert kefu.api.texts_to(OPENID) == [PAYMENT_ANSWER]
    assert kefu.api.token_fetches == 1


async def test_slow_answer_in_safe_mode_is_plain_success_then_pushed(start_kefu):
    kefu = await start_kefu(pipeline={"wechat_reply_deadline_s": 0.05})
    kefu.slow_pipeline(0.3)
    status, text, _ = await kefu.secure.post(fixture_xml("text.xml", MsgId=new_msg_id()), mode="safe")
    assert (status, text) == (200, "success")
    await kefu.api.wait_for_messages(1)
    assert kefu.api.texts_to(OPENID) == [PAYMENT_ANSWER]


async def test_retry_of_a_deferred_message_does_not_answer_twice(start_kefu):
    kefu = await start_kefu(pipeline={"wechat_reply_deadline_s": 0.05})
    calls = kefu.slow_pipeline(0.3)
    xml = fixture_xml("text.xml", MsgId=new_msg_id())
    # The second arrives while the first is still being handled: it joins it.
    first, second = await asyncio.gather(kefu.shop.post(xml), kefu.shop.post(xml))
    assert first[1] == second[1] == "success"
    assert len(calls) == 1
    await kefu.api.wait_for_messages(1)
    third = await kefu.shop.post(xml)  # after the answer went out: a duplicate, acknowledged only
    assert third[1] == "success"
    await asyncio.sleep(0.3)
    assert kefu.api.texts_to(OPENID) == [PAYMENT_ANSWER]
    assert len(await kefu.inbound()) == 1


def stalled_cancel(kefu: Kefu, *, on_the_wire: bool) -> asyncio.Event:
    """Cancelling held rows for a passive answer waits (a stalled database) until the returned event is set.

    on_the_wire: the statement had already left when the database stalled, so it commits once the database
    is back whatever its time limit (else it runs then, and finds its time past)."""
    store = kefu.runtime.store
    original = store.settle_held
    gate = asyncio.Event()

    async def settle_held(ids, status, now, **kw):
        if status != "cancelled":
            return await original(ids, status, now, **kw)
        await gate.wait()
        return await original(ids, status, now, **({} if on_the_wire else kw))

    store.settle_held = settle_held  # type: ignore[method-assign]
    return gate


async def test_handing_a_dead_speakers_rows_to_the_worker_outlasts_a_database_outage(start_kefu):
    # Review: the hand-over gave up at its first failure: the rows stayed `cancelled`, `success` had gone
    # out, and the reply was lost. It is retried while the database is unavailable, as `_resume` is.
    kefu = await start_kefu(pipeline={"wechat_reply_deadline_s": 0.2})
    xml = fixture_xml("text.xml", MsgId=new_msg_id())
    await died_between_cancel_and_answer(kefu, xml)
    store = kefu.runtime.store
    resume_cancelled = store.resume_cancelled
    failures = [ConnectionRefusedError("database restarting")]

    async def flaky(ids: Any, now: Any) -> int:
        if failures:
            raise failures.pop()
        return await resume_cancelled(ids, now)

    store.resume_cancelled = flaky  # type: ignore[method-assign]
    kefu.slow_pipeline(0.4)
    status, text, _ = await kefu.shop.post(xml)  # WeChat's retry, late
    assert (status, text) == (200, "success")
    await kefu.api.wait_for_messages(1, within=5)
    assert await answers_to(kefu) == [PAYMENT_ANSWER]
    assert not failures


@pytest.mark.parametrize("on_the_wire", [False, True], ids=["stalled-before", "committed-late"])
async def test_a_cancel_stalled_past_the_deadline_is_acknowledged_and_the_answer_still_arrives(
    start_kefu, on_the_wire, caplog
):
    # Regression (chaos pg-freeze): the answer was stored in time, then cancelling its held row for the
    # passive reply waited on a frozen database past WeChat's 5 s. The passive reply was written to a request
    # WeChat had given up on, while its row, cancelled, was never sent: the customer got nothing. Now the
    # request is acknowledged in time; a cancel that runs late is left undone, one that commits late undone.
    # Stored by 1.0 s, decided by 1.0 s too (WeChat's wait 1.5 s, less the answer's way back).
    kefu = await start_kefu(
        pipeline={"wechat_reply_deadline_s": 1.0}, account_extra={"retry_interval_s": 1.5}
    )
    warm = await ask(kefu.shop, fixture_xml("text.xml", MsgId=new_msg_id(), FromUserName="oWarm"))
    assert warm["Content"] == PAYMENT_ANSWER  # a first message in time: the next one's store is too
    gate = stalled_cancel(kefu, on_the_wire=on_the_wire)
    thaw = asyncio.get_running_loop().call_later(4.0, gate.set)  # without the bound: answered at 4 s
    status, text, _ = await kefu.shop.post(fixture_xml("text.xml", MsgId=new_msg_id()))
    assert (status, text) == (200, "success")  # acknowledged by the deadline, not answered late
    thaw.cancel()
    assert kefu.api.messages == []  # the cancel is still waiting: nothing decided yet
    gate.set()  # the database comes back
    await kefu.api.wait_for_messages(1)
    assert kefu.api.texts_to(OPENID) == [PAYMENT_ANSWER]

    async def sent_once() -> bool:
        rows = await kefu.runtime.store.list_outbox()
        return [r.status for r in rows if r.conversation_key == f"wechat:shop:{OPENID}"] == ["sent"]

    await eventually(sent_once)
    # Only a cancel that did commit had to be undone; one that ran past its time changed nothing.
    assert ("cancelled too late for a passive answer" in caplog.text) is on_the_wire


async def died_between_cancel_and_answer(kefu: Kefu, xml: str) -> Message:
    """The previous process: stored the message (rows held), cancelled them for its passive answer, and was
    killed before writing it. This process (restarted) has never seen it."""
    message = to_message("shop", xml, xml_fields(parse_xml(xml)), flat=True)
    assert message is not None
    stored = await kefu.runtime.pipeline.handle(message, outbox="held")
    assert await kefu.runtime.store.settle_held([i for i, _s in stored.outbox], "cancelled", utcnow())
    assert not kefu.runtime.adapters[("wechat", "shop")].delivery._inflight
    return message


def reply_deadline(kefu: Kefu, seconds: float) -> None:
    """From now on (read per request): the earlier requests had the default, in time even on a busy machine."""
    object.__setattr__(kefu.runtime.settings.pipeline, "wechat_reply_deadline_s", seconds)


async def answers_to(kefu: Kefu, openid: str = OPENID) -> list[str]:
    """Every 客服消息 the customer got, once the outbox (polling every 0.05 s) had time to send any more."""
    await asyncio.sleep(0.5)
    return kefu.api.texts_to(openid)


@pytest.mark.parametrize("spool", [True, False], ids=["spooled", "waited"])
async def test_a_late_retry_after_a_restart_that_lost_the_passive_answer_still_answers(start_kefu, spool):
    # One process, no Redis: it cancelled the reply rows for its passive answer and was killed before
    # writing it. WeChat retried the MsgId on the restarted process, whose duplicate lookup outlasted the
    # deadline: it said `success` (from the spool, or once stored), WeChat did not retry again, and the
    # cancelled reply was sent by nobody. Now the acknowledging retry hands the rows to the worker.
    kefu = await start_kefu(pipeline={"wechat_reply_deadline_s": 0.2})
    if not spool:
        kefu.runtime.spool = None
    xml = fixture_xml("text.xml", MsgId=new_msg_id())
    await died_between_cancel_and_answer(kefu, xml)
    kefu.slow_pipeline(0.4)
    status, text, _ = await kefu.shop.post(xml)  # WeChat's retry
    assert (status, text) == (200, "success")
    await kefu.api.wait_for_messages(1, within=5)
    assert await answers_to(kefu) == [PAYMENT_ANSWER]


@pytest.mark.parametrize("on_the_wire", [False, True], ids=["stalled-before", "committed-late"])
async def test_a_retry_after_a_restart_whose_cancel_stalls_still_answers(start_kefu, on_the_wire):
    # The retry is in time, but cancelling the rows for its passive answer waits on a stalled database past
    # WeChat's wait: it says `success`. Its cancel then changes nothing (the rows were already cancelled by
    # the dead process, or it runs too late): the rows still go to the worker.
    kefu = await start_kefu(
        pipeline={"wechat_reply_deadline_s": 1.0}, account_extra={"retry_interval_s": 1.5}
    )
    xml = fixture_xml("text.xml", MsgId=new_msg_id())
    await died_between_cancel_and_answer(kefu, xml)
    gate = stalled_cancel(kefu, on_the_wire=on_the_wire)
    assert await ask(kefu.shop, xml) == {}  # `success` in time
    gate.set()
    await kefu.api.wait_for_messages(1, within=5)
    assert await answers_to(kefu) == [PAYMENT_ANSWER]


async def answered_then_late(kefu: Kefu, after_s: float) -> Any:
    """A passive answer to a MsgId at 1000 s on the delivery's clock; the same MsgId again `after_s` later,
    whose lookup outlasts the deadline (`success`). The delivery."""
    delivery = kefu.runtime.adapters[("wechat", "shop")].delivery
    delivery.now = lambda: 1000.0
    xml = fixture_xml("text.xml", MsgId=new_msg_id())
    assert (await ask(kefu.shop, xml))["Content"] == PAYMENT_ANSWER
    delivery.now = lambda: 1000.0 + after_s
    reply_deadline(kefu, 0.2)
    kefu.slow_pipeline(0.4)
    assert await ask(kefu.shop, xml) == {}  # `success`
    return delivery


async def test_a_late_retry_after_this_process_answered_passively_answers_again(start_kefu):
    # The passive answer was written but WeChat did not get it (it retried, 5 s after a try it got no answer
    # to): the retry, late, says `success` and the reply goes by 客服消息 (replies are at least once; the
    # customer may see it twice).
    kefu = await start_kefu()
    await answered_then_late(kefu, 6.0)
    await kefu.api.wait_for_messages(1, within=5)
    assert await answers_to(kefu) == [PAYMENT_ANSWER]


async def test_a_late_duplicate_soon_after_a_passive_answer_resumes_nothing(start_kefu):
    # Review: a second delivery of the MsgId sooner than WeChat's retry interval after the request this process
    # answered passively is a duplicate, not a retry (the answer may well have arrived): its `success` must
    # not send the reply again.
    kefu = await start_kefu()
    delivery = await answered_then_late(kefu, 1.0)
    assert await answers_to(kefu) == []
    assert len(delivery._spoke) == 1  # kept for a retry interval, then dropped with the next answer
    delivery.now = lambda: 1010.0
    reply_deadline(kefu, 4.0)
    assert (await ask(kefu.shop, fixture_xml("text.xml", MsgId=new_msg_id())))["Content"] == PAYMENT_ANSWER
    assert len(delivery._spoke) == 1


async def test_a_failed_store_of_a_message_already_in_the_spool_is_said_once(start_kefu, caplog):
    # Review: a message already in the spool (spooled by a request before) whose store fails for an outage is
    # acknowledged from the spool; no follow-up watches that store, so the request itself says it failed.
    caplog.set_level(logging.WARNING)
    kefu = await start_kefu()
    caplog.clear()  # (the start-up's own warnings)
    spool = kefu.runtime.spool
    assert spool is not None
    xml = fixture_xml("text.xml", MsgId=new_msg_id())
    message = to_message("shop", xml, xml_fields(parse_xml(xml)), flat=True)
    assert message is not None
    await spool.write(message)
    flaky_pipeline(kefu, failures=1, delay_s=0)
    status, text, _ = await kefu.shop.post(xml)
    assert (status, text) == (200, "success")
    assert failure_lines(caplog) == [
        "wechat-shop: storing a message failed (ConnectionError); the spool stores it later"
    ]


async def test_a_late_duplicate_while_the_first_answers_passively_resumes_nothing(start_kefu):
    # A duplicate delivery that arrives while the first request is answering passively (cancelling its
    # rows) is not WeChat's retry: its `success` must not send the reply the passive answer carries.
    kefu = await start_kefu()
    store = kefu.runtime.store
    settle_held = store.settle_held
    cancelling, gate = asyncio.Event(), asyncio.Event()

    async def stalled(ids: Any, status: str, now: Any, **kw: Any) -> bool:
        if status == "cancelled":
            cancelling.set()
            await gate.wait()
        return await settle_held(ids, status, now, **kw)

    store.settle_held = stalled  # type: ignore[method-assign]
    xml = fixture_xml("text.xml", MsgId=new_msg_id())
    first = asyncio.ensure_future(ask(kefu.shop, xml))
    await asyncio.wait_for(cancelling.wait(), 5)
    reply_deadline(kefu, 0.2)
    kefu.slow_pipeline(0.4)  # the duplicate's lookup outlasts the deadline
    assert await ask(kefu.shop, xml) == {}  # `success`, its store still running
    gate.set()
    assert (await first)["Content"] == PAYMENT_ANSWER
    await asyncio.sleep(0.4)  # the duplicate's store finishes, finding the rows cancelled
    assert await answers_to(kefu) == []


async def test_a_retry_joining_a_late_one_after_a_restart_answers_once(start_kefu):
    # After the restart, the first retry is late (`success`, its store still running); a second one joins its
    # store and is in time: it answers passively, or (the late one handed the rows to the worker first) says
    # `success` too. Either way the customer gets the reply once.
    kefu = await start_kefu(pipeline={"wechat_reply_deadline_s": 0.5})
    xml = fixture_xml("text.xml", MsgId=new_msg_id())
    await died_between_cancel_and_answer(kefu, xml)
    pipeline = kefu.runtime.pipeline
    handle, stored = pipeline.handle, asyncio.Event()

    async def gated(message: Any, **kw: Any) -> Any:
        await stored.wait()
        return await handle(message, **kw)

    pipeline.handle = gated  # type: ignore[method-assign]
    store = kefu.runtime.store
    resume_cancelled = store.resume_cancelled

    async def slow_resume(ids: Any, now: Any) -> int:
        await asyncio.sleep(0.2)  # a passive answer's cancel meanwhile would find the rows still cancelled
        return await resume_cancelled(ids, now)

    store.resume_cancelled = slow_resume  # type: ignore[method-assign]
    assert await ask(kefu.shop, xml) == {}  # late: `success`
    second = asyncio.ensure_future(ask(kefu.shop, xml))
    await asyncio.sleep(0.05)  # it joined the running store
    stored.set()
    passive = [reply["Content"] for reply in [await second] if reply]
    assert passive + await answers_to(kefu) == [PAYMENT_ANSWER]


async def test_expired_token_is_fetched_again_and_the_answer_still_arrives(start_kefu):
    kefu = await start_kefu(pipeline={"wechat_reply_deadline_s": 0.05})
    kefu.slow_pipeline(0.2)
    await kefu.shop.post(fixture_xml("text.xml", MsgId=new_msg_id()))
    await kefu.api.wait_for_messages(1)
    kefu.api.expire_tokens()
    await kefu.shop.post(fixture_xml("text.xml", Content="怎么退货", MsgId=new_msg_id()))
    await kefu.api.wait_for_messages(2)
    assert kefu.api.token_fetches == 2
    assert kefu.api.texts_to(OPENID)[1].startswith("您好，在「我的订单」")

    async def both_sent() -> bool:
        return [r.status for r in await kefu.runtime.store.list_outbox()] == ["sent", "sent"]

    await eventually(both_sent)


async def test_concurrent_late_answers_share_one_token_fetch(start_kefu):
    kefu = await start_kefu(pipeline={"wechat_reply_deadline_s": 0.05})
    kefu.slow_pipeline(0.2)
    kefu.api.token_latency_s = 0.1
    users = [f"oUser{i:03d}" for i in range(8)]
    await asyncio.gather(
        *(kefu.shop.post(fixture_xml("text.xml", FromUserName=u, MsgId=new_msg_id())) for u in users)
    )
    await kefu.api.wait_for_messages(len(users))
    assert kefu.api.token_fetches == 1
    assert sorted(m["touser"] for m in kefu.api.messages) == users


async def test_closed_48_hour_window_is_undeliverable_and_not_retried(start_kefu):
    kefu = await start_kefu(pipeline={"wechat_reply_deadline_s": 0.05})
    kefu.slow_pipeline(0.2)
    kefu.api.closed_windows.add(OPENID)
    status, text, _ = await kefu.shop.post(fixture_xml("text.xml", MsgId=new_msg_id()))
    assert text == "success"

    async def undeliverable() -> bool:
        return bool(await kefu.runtime.store.list_outbox(status="undeliverable"))

    await eventually(undeliverable)
    [row] = await kefu.runtime.store.list_outbox()
    assert row.status == "undeliverable"
    assert row.attempts == 1
    assert "45015" in (row.last_error or "")
    await asyncio.sleep(0.3)  # longer than the test outbox's retry delays
    assert len(kefu.api.attempts) == 1
    assert kefu.api.messages == []


async def test_server_error_is_retried_then_delivered(start_kefu):
    kefu = await start_kefu(pipeline={"wechat_reply_deadline_s": 0.05})
    kefu.slow_pipeline(0.2)
    kefu.api.fail_next(status=502, times=2)
    await kefu.shop.post(fixture_xml("text.xml", MsgId=new_msg_id()))
    await kefu.api.wait_for_messages(1)
    assert kefu.api.texts_to(OPENID) == [PAYMENT_ANSWER]
    assert len(kefu.api.attempts) == 3

    async def sent() -> bool:
        rows = await kefu.runtime.store.list_outbox()
        return [r.status for r in rows] == ["sent"]

    await eventually(sent)
    [row] = await kefu.runtime.store.list_outbox()
    assert row.attempts == 3


async def test_outbox_send_uses_the_openid_of_the_conversation(kefu):
    # An agent reply (or any later text) goes out through the adapter's send().
    from gateway.channels.base import Outgoing

    adapter = kefu.runtime.adapters[("wechat", "shop")]
    await adapter.send(
        Outgoing("wechat", "shop", f"wechat:shop:{OPENID}", "人工客服：您好，我来帮您查一下。", "agent")
    )
    assert kefu.api.texts_to(OPENID) == ["人工客服：您好，我来帮您查一下。"]


def flaky_pipeline(kefu: Kefu, *, failures: int, delay_s: float) -> list[str]:
    """pipeline.handle raises for the first `failures` calls (after `delay_s`), then works."""
    pipeline = kefu.runtime.pipeline
    original = pipeline.handle
    calls: list[str] = []

    async def flaky(message, **kw):
        calls.append(message.channel_msg_id)
        await asyncio.sleep(delay_s)
        if len(calls) <= failures:
            raise ConnectionError("database went away")
        return await original(message, **kw)

    pipeline.handle = flaky  # type: ignore[method-assign]
    return calls


async def test_pipeline_error_is_a_503_so_wechat_retries_and_gets_the_answer(kefu):
    kefu.runtime.spool = None  # with a spool, an unavailable database is acknowledged from it (test_spool.py)
    calls = flaky_pipeline(kefu, failures=1, delay_s=0)
    xml = fixture_xml("text.xml", MsgId=new_msg_id())
    status, _, _ = await kefu.shop.post(xml)
    assert status == 503
    reply = await ask(kefu.shop, xml)  # WeChat's retry
    assert reply["Content"] == PAYMENT_ANSWER
    assert len(calls) == 2
    assert len(await kefu.inbound()) == 1


async def test_a_database_error_is_a_503_with_nothing_stored_and_the_retry_is_answered(kefu):
    xml = fixture_xml("text.xml", MsgId=new_msg_id())
    async with failing_replies(kefu.runtime.store.engine):  # a real error, mid-transaction
        status, _, _ = await kefu.shop.post(xml)
    assert status == 503
    assert await kefu.inbound() == []
    reply = await ask(kefu.shop, xml)  # WeChat's retry of the same MsgId
    assert reply["Content"] == PAYMENT_ANSWER
    assert [m.text for m in await kefu.inbound()] == ["支持哪些支付方式"]


def failure_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_failed_store_is_logged_once(kefu, caplog):
    # Regression: the runtime's hook for failed background tasks logged the store's failure ("background
    # task wechat-shop-… failed", with the driver's traceback) and the 503's error middleware logged it again.
    caplog.set_level(logging.WARNING)
    async with failing_replies(kefu.runtime.store.engine):
        status, _, _ = await kefu.shop.post(fixture_xml("text.xml", MsgId=new_msg_id()))
    assert status == 503
    [line] = failure_lines(caplog)
    assert line == "wechat message failed in the pipeline"


async def test_a_failed_store_nobody_waits_for_is_logged_once(kefu, caplog):
    # The request gave up (cancelled: a shutdown, a handler timeout) before the store failed: nobody answers
    # an error, so the delivery logs it itself, once.
    caplog.set_level(logging.WARNING)
    kefu.runtime.spool = None
    release = asyncio.Event()
    pipeline = kefu.runtime.pipeline

    async def failing(message, **kw):
        await release.wait()
        raise ConnectionError("database went away")

    pipeline.handle = failing  # type: ignore[method-assign]
    delivery = kefu.runtime.adapters[("wechat", "shop")].delivery
    message = Message("wechat", "shop", f"wechat:shop:{OPENID}", OPENID, "在吗", channel_msg_id=new_msg_id())
    waiter = asyncio.create_task(delivery.deliver(message))

    async def started() -> bool:
        return bool(delivery._inflight)

    async def finished() -> bool:
        return not delivery._inflight and bool(failure_lines(caplog))

    await eventually(started)
    waiter.cancel()
    release.set()
    await eventually(finished)
    assert failure_lines(caplog) == ["wechat-shop: storing a message failed"]
    assert not delivery._waiting  # nothing kept for a finished store


async def test_a_failure_past_the_deadline_is_a_503_never_success_without_a_spool(start_kefu):
    # Regression (reliability item 1): kefu answered `success` at the deadline while the message was not
    # stored yet, then retried once in the background and dropped it. Now WeChat gets an error and retries
    # (with no spool to keep the message; with one, see the next test).
    kefu = await start_kefu(pipeline={"wechat_reply_deadline_s": 0.05})
    kefu.runtime.spool = None
    calls = flaky_pipeline(kefu, failures=1, delay_s=0.2)
    xml = fixture_xml("text.xml", MsgId=new_msg_id())
    status, _text, _ = await kefu.shop.post(xml)
    assert status == 503
    assert await kefu.inbound() == []
    status, text, _ = await kefu.shop.post(xml)  # WeChat's retry
    assert (status, text) == (200, "success")  # stored, but past the deadline again
    assert [m.text for m in await kefu.inbound()] == ["支持哪些支付方式"]
    await kefu.api.wait_for_messages(1)
    assert kefu.api.texts_to(OPENID) == [PAYMENT_ANSWER]
    assert len(calls) == 2


async def test_a_failure_past_the_deadline_after_spooling_is_stored_by_the_spools_replay(start_kefu):
    # The message was written to the spool (fsynced) before `success`; its store then failed, so the
    # spool's replay stores it and the answer goes out via 客服消息, once.
    kefu = await start_kefu(pipeline={"wechat_reply_deadline_s": 0.05})
    calls = flaky_pipeline(kefu, failures=1, delay_s=0.2)
    status, text, _ = await kefu.shop.post(fixture_xml("text.xml", MsgId=new_msg_id()))
    assert (status, text) == (200, "success")
    spool = kefu.runtime.spool
    assert spool is not None and len(await asyncio.to_thread(spool.pending)) + len(spool.owned) == 1
    await kefu.api.wait_for_messages(1, within=10)
    assert [m.text for m in await kefu.inbound()] == ["支持哪些支付方式"]
    assert kefu.api.texts_to(OPENID) == [PAYMENT_ANSWER]
    await eventually(lambda: _empty(spool.directory))
    assert len(calls) == 2


# --- replay window (issue 13, item 9) ---------------------------------------------------------------


NOW = 1_800_000_000.0  # the adapters' injected clock


def _at(kefu: Kefu, now: float = NOW) -> None:
    for name in ("shop", "secure"):
        kefu.runtime.adapters[("wechat", name)].clock = lambda: now  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "timestamp", ["978307200", "-1", str(int(NOW) + 331), str(int(NOW) - 331), "1e9", "١٢"]
)
async def test_validly_signed_requests_outside_the_replay_window_are_403(kefu, timestamp):
    _at(kefu)
    xml = fixture_xml("text.xml", MsgId=new_msg_id())
    for push in (kefu.shop, kefu.secure):
        query = push.signed_query(timestamp=timestamp)
        status, text, _ = await push.post(xml, query=query, mode="plain" if push is kefu.shop else "safe")
        assert status == 403 and "replay window" in text
    verify = await kefu.client.get(
        "/wechat/shop", params=kefu.shop.signed_query(timestamp=timestamp) | {"echostr": "9"}
    )
    assert verify.status == 403
    assert await kefu.inbound() == []


async def test_requests_within_the_window_are_answered_and_the_window_is_configurable(
    kefu, aiohttp_client, settings_factory
):
    _at(kefu)
    late = kefu.shop.signed_query(timestamp=str(int(NOW) - 320))  # a retry 5 min + 20 s behind our clock
    status, text, _ = await kefu.shop.post(fixture_xml("text.xml", MsgId=new_msg_id()), query=late)
    assert status == 200 and xml_dict(text)["Content"]

    account = {"name": "shop", "token": TOKEN, "appid": APPID, "max_clock_skew_s": 30}
    client = await aiohttp_client(create_app(settings_factory(channels={"wechat": [account]})))
    client.app[RUNTIME].adapters[("wechat", "shop")].clock = lambda: NOW
    push = WeChatPush(client, "/wechat/shop", TOKEN)
    for offset, expected in ((29, 200), (-29, 200), (31, 403), (-31, 403)):
        query = push.signed_query(timestamp=str(int(NOW) + offset))
        status, _, _ = await push.post(fixture_xml("text.xml", MsgId=new_msg_id()), query=query)
        assert status == expected, offset


async def test_success_is_answered_only_once_the_message_is_stored(start_kefu):
    # Regression (reliability item 1): a store slower than the deadline (a locked SQLite, a slow
    # PostgreSQL) got `success` before the message existed; a crash then lost it. Without a spool the
    # adapter waits for the store.
    kefu = await start_kefu(pipeline={"wechat_reply_deadline_s": 0.05})
    kefu.runtime.spool = None
    kefu.slow_pipeline(0.3)
    status, text, _ = await kefu.shop.post(fixture_xml("text.xml", MsgId=new_msg_id()))
    assert (status, text) == (200, "success")
    assert [m.text for m in await kefu.inbound()] == ["支持哪些支付方式"]  # durable at the ack
    rows = await kefu.runtime.store.list_outbox()
    assert [r.text for r in rows] == [PAYMENT_ANSWER]  # and its answer's row with it
    assert rows[0].status in {"pending", "sending", "sent"}


async def test_success_past_the_deadline_comes_once_the_message_is_in_the_spool(start_kefu):
    # With the spool, `success` comes at the deadline once the message is on disk; the store finishes in
    # the background, releases the held reply and forgets the file.
    kefu = await start_kefu(pipeline={"wechat_reply_deadline_s": 0.05})
    kefu.slow_pipeline(0.3)
    status, text, _ = await kefu.shop.post(fixture_xml("text.xml", MsgId=new_msg_id()))
    assert (status, text) == (200, "success")
    spool = kefu.runtime.spool
    assert spool is not None and not await _empty(spool.directory)  # durable at the ack
    await kefu.api.wait_for_messages(1)
    assert kefu.api.texts_to(OPENID) == [PAYMENT_ANSWER]
    assert [m.text for m in await kefu.inbound()] == ["支持哪些支付方式"]
    await eventually(lambda: _empty(spool.directory))


async def _empty(directory: Any) -> bool:
    return not await asyncio.to_thread(lambda: list(directory.glob("*.json")))


async def test_a_passive_reply_cancels_its_held_row_so_it_is_never_sent_twice(kefu):
    # The reply's row is written with the message (held); the passive XML carries it, so it is cancelled.
    reply = await ask(kefu.shop, fixture_xml("text.xml", MsgId=new_msg_id()))
    assert reply["Content"] == PAYMENT_ANSWER
    assert [r.status for r in await kefu.runtime.store.list_outbox()] == ["cancelled"]
    await asyncio.sleep(0.2)
    assert kefu.api.messages == []
