"""The 客服消息 sender and access_token refresher against the fake WeChat API (a real HTTP server)."""

from __future__ import annotations

import asyncio
import json
import logging

import aiohttp
import pytest

from gateway.channels.base import SendError
from gateway.channels.wechat.api import (
    AccessTokenManager,
    CustomerServiceSender,
    clean_text,
    split_text,
)
from tests.fakes.wechat_api import FakeWeChatAPI

OPENID = "oUser-0001"


@pytest.fixture
async def wechat_api(aiohttp_server) -> FakeWeChatAPI:
    return await FakeWeChatAPI().start(aiohttp_server)


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


def make_sender(session: aiohttp.ClientSession, api: FakeWeChatAPI, **kwargs) -> CustomerServiceSender:
    tokens = AccessTokenManager(session, api.appid, api.secret, api_base=api.url)
    return CustomerServiceSender(session, tokens, api_base=api.url, **kwargs)


async def test_send_delivers_utf8_json_without_ascii_escapes(session, wechat_api):
    sender = make_sender(session, wechat_api)
    await sender.send_text(OPENID, "您好，订单已发货 📦")
    assert wechat_api.texts_to(OPENID) == ["您好，订单已发货 📦"]
    assert wechat_api.messages[0] == {
        "touser": OPENID,
        "msgtype": "text",
        "text": {"content": "您好，订单已发货 📦"},
    }
    raw = wechat_api.raw_bodies[0]
    assert "您好".encode() in raw and b"\\u" not in raw  # ensure_ascii=False, UTF-8 on the wire


async def test_token_is_cached_between_sends(session, wechat_api):
    sender = make_sender(session, wechat_api)
    for i in range(3):
        await sender.send_text(OPENID, f"第{i}条")
    assert wechat_api.token_fetches == 1
    assert sender.tokens.fetches == 1


async def test_concurrent_sends_share_a_single_token_fetch(session, wechat_api):
    wechat_api.token_latency_s = 0.05  # keep the fetch in flight while every sender asks for a token
    sender = make_sender(session, wechat_api)
    await asyncio.gather(*(sender.send_text(f"o{i}", "hi") for i in range(20)))
    assert wechat_api.token_fetches == 1
    assert len(wechat_api.messages) == 20


async def test_expired_token_is_fetched_again_once_and_the_send_succeeds(session, wechat_api):
    sender = make_sender(session, wechat_api)
    await sender.send_text(OPENID, "first")
    wechat_api.expire_tokens()
    await sender.send_text(OPENID, "second")
    assert wechat_api.texts_to(OPENID) == ["first", "second"]
    assert wechat_api.token_fetches == 2
    assert [a["text"]["content"] for a in wechat_api.attempts] == ["first", "second", "second"]


async def test_concurrent_senders_holding_an_expired_token_refetch_once(session, wechat_api):
    sender = make_sender(session, wechat_api)
    await sender.send_text(OPENID, "warm up")
    wechat_api.expire_tokens()
    wechat_api.token_latency_s = 0.05
    await asyncio.gather(*(sender.send_text(f"o{i}", "hi") for i in range(10)))
    assert wechat_api.token_fetches == 2


async def test_token_rejected_twice_is_a_retryable_error_not_a_loop(session, wechat_api):
    sender = make_sender(session, wechat_api)
    await sender.send_text(OPENID, "warm up")
    wechat_api.expire_tokens()
    wechat_api.fail_next(errcode=42001)  # the freshly fetched token is refused too
    with pytest.raises(SendError) as err:
        await sender.send_text(OPENID, "x")
    assert err.value.retryable
    assert wechat_api.token_fetches == 2


@pytest.mark.parametrize(
    ("errcode", "words"),
    [(45015, "48"), (45047, "quota"), (40003, "openid"), (43004, "unfollowed")],
)
async def test_permanent_errcodes_are_undeliverable(session, wechat_api, errcode, words):
    sender = make_sender(session, wechat_api)
    wechat_api.fail_next(errcode=errcode)
    with pytest.raises(SendError) as err:
        await sender.send_text(OPENID, "hello")
    assert err.value.retryable is False
    assert words in err.value.reason and str(errcode) in err.value.reason
    assert wechat_api.messages == []
    assert len(wechat_api.attempts) == 1  # not retried inside the sender either


@pytest.mark.parametrize("failure", [{"status": 502}, {"status": 503}, {"errcode": -1}])
async def test_server_errors_and_system_busy_are_retryable(session, wechat_api, failure):
    sender = make_sender(session, wechat_api)
    wechat_api.fail_next(**failure)
    with pytest.raises(SendError) as err:
        await sender.send_text(OPENID, "hello")
    assert err.value.retryable is True
    await sender.send_text(OPENID, "hello")  # what the outbox does next
    assert wechat_api.texts_to(OPENID) == ["hello"]


async def test_unreachable_api_is_retryable_and_does_not_leak_the_token(session, caplog, unused_tcp_port):
    tokens = AccessTokenManager(session, "wxapp", "TOPSECRET", api_base=f"http://127.0.0.1:{unused_tcp_port}")
    sender = CustomerServiceSender(session, tokens, api_base=f"http://127.0.0.1:{unused_tcp_port}")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SendError) as err:
        await sender.send_text(OPENID, "hello")
    assert err.value.retryable is True
    assert not err.value.maybe_delivered  # nothing reached WeChat: no possible double
    assert "TOPSECRET" not in err.value.reason
    assert "TOPSECRET" not in caplog.text


async def test_slow_api_times_out_as_retryable(session, wechat_api):
    wechat_api.latency_s = 1.0
    tokens = AccessTokenManager(session, wechat_api.appid, wechat_api.secret, api_base=wechat_api.url)
    sender = CustomerServiceSender(
        session, tokens, api_base=wechat_api.url, timeout=aiohttp.ClientTimeout(total=0.1)
    )
    with pytest.raises(SendError) as err:
        await sender.send_text(OPENID, "hello")
    assert err.value.retryable is True
    assert "timed out" in err.value.reason
    assert err.value.maybe_delivered  # WeChat had the request: its retry may reach the customer twice


async def test_wrong_secret_is_reported_without_echoing_it(session, wechat_api, caplog):
    tokens = AccessTokenManager(session, wechat_api.appid, "WRONG-SECRET-XYZ", api_base=wechat_api.url)
    sender = CustomerServiceSender(session, tokens, api_base=wechat_api.url)
    with pytest.raises(SendError) as err:
        await sender.send_text(OPENID, "hello")
    assert "40125" in err.value.reason
    assert "WRONG-SECRET-XYZ" not in err.value.reason + caplog.text


async def test_secret_and_token_never_logged(session, wechat_api, caplog):
    caplog.set_level(logging.DEBUG)
    sender = make_sender(session, wechat_api)
    await sender.send_text(OPENID, "hello")
    wechat_api.expire_tokens()
    await sender.send_text(OPENID, "again")
    assert wechat_api.secret not in caplog.text
    assert "TOKEN-" not in caplog.text
    assert wechat_api.secret not in repr(sender.tokens)


async def test_long_text_goes_out_as_several_messages_under_the_limit(session, wechat_api):
    paragraph = "您好，" + "这是一段很长的说明文字。" * 60  # ~2,200 bytes per paragraph
    text = "\n\n".join([paragraph, paragraph, "最后一句。"])
    sender = make_sender(session, wechat_api)
    await sender.send_text(OPENID, text)
    sent = wechat_api.texts_to(OPENID)
    assert len(sent) >= 3
    assert all(len(s.encode("utf-8")) <= 2000 for s in sent)
    assert "".join(sent).replace("\n", "") == text.replace("\n", "")
    assert all(s.endswith("。") for s in sent)  # cut at sentence ends, not mid-sentence


async def test_retry_of_a_partly_sent_long_text_does_not_repeat_pieces(session, wechat_api):
    text = "\n".join(["第一段。" * 150, "第二段。" * 150])  # two pieces of ~1,800 bytes
    sender = make_sender(session, wechat_api)
    wechat_api.fail_next(status=500, after=1)  # the first piece goes out, the second fails
    with pytest.raises(SendError) as err:
        await sender.send_text(OPENID, text)
    assert err.value.retryable
    await sender.send_text(OPENID, text)  # the outbox retries the whole text
    assert wechat_api.texts_to(OPENID) == ["第一段。" * 150, "第二段。" * 150]


async def test_a_later_row_with_the_same_long_text_sends_every_piece(session, wechat_api):
    # Row 7 gave up after its first piece (45015: the customer's 48 h window closed); the customer writes
    # again and row 8 carries the same answer. Progress used to be kept per (openid, text): row 8 then
    # skipped piece 1 and was marked sent with half the text delivered.
    text = "\n".join(["第一段。" * 150, "第二段。" * 150])
    sender = make_sender(session, wechat_api)
    wechat_api.fail_next(errcode=45015, after=1)
    with pytest.raises(SendError) as err:
        await sender.send_text(OPENID, text, row=7)
    assert not err.value.retryable
    await sender.send_text(OPENID, text, row=8)
    assert wechat_api.texts_to(OPENID) == ["第一段。" * 150, "第一段。" * 150, "第二段。" * 150]
    wechat_api.fail_next(status=500, after=1)  # and a retry of one row still resumes where it stopped
    with pytest.raises(SendError):
        await sender.send_text(OPENID, text, row=9)
    await sender.send_text(OPENID, text, row=9)
    assert wechat_api.texts_to(OPENID)[3:] == ["第一段。" * 150, "第二段。" * 150]


async def test_empty_text_sends_nothing(session, wechat_api):
    sender = make_sender(session, wechat_api)
    await sender.send_text(OPENID, " \n\x00")
    assert wechat_api.attempts == []


def test_split_text_prefers_paragraphs_then_lines_then_sentences():
    assert split_text("short") == ["short"]
    a, b = "甲" * 500, "乙" * 500  # 1,500 bytes each
    assert split_text(a + "\n\n" + b) == [a, b]
    assert split_text(a + "\n" + b) == [a, b]
    sentences = "这是一句话。" * 200  # 3,600 bytes
    pieces = split_text(sentences)
    assert all(p.endswith("。") for p in pieces)
    assert "".join(pieces) == sentences


def test_split_text_never_cuts_inside_a_character():
    text = "😀" * 1000  # 4 bytes each, no boundary anywhere
    pieces = split_text(text, 2000)
    assert all(len(p.encode("utf-8")) <= 2000 for p in pieces)
    assert "".join(pieces) == text


def test_split_text_avoids_tiny_first_pieces():
    text = "好。" + "字" * 1000  # a sentence end right at the start is not worth a separate message
    pieces = split_text(text, 2000)
    assert len(pieces[0].encode("utf-8")) > 1000


def test_clean_text_drops_xml_invalid_characters_but_keeps_emoji():
    assert clean_text("a\x00b\x07c\td\ne\rf 😀 \ud800") == "abc\td\ne\rf 😀 "


def test_payload_shape_is_documented_json():
    # Guards the wire format the 客服消息 API expects (no ensure_ascii escapes, text.content nesting).
    payload = {"touser": OPENID, "msgtype": "text", "text": {"content": "中文"}}
    assert (
        json.dumps(payload, ensure_ascii=False)
        == '{"touser": "oUser-0001", "msgtype": "text", "text": {"content": "中文"}}'
    )
