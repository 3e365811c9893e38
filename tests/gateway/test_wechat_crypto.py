"""WeChat signatures and safe mode (AES): the published test vector, round trips, and forged requests.

The adapter runs on a real aiohttp server with a stub pipeline here, so these tests pin the protocol
layer alone; test_wechat.py runs the whole app against the FAQ.
"""

from __future__ import annotations

import json

import pytest
from aiohttp import web
from wechatpy.crypto import WeChatCrypto
from wechatpy.utils import check_signature

from gateway.channels.wechat.adapter import WeChatAdapter, sign
from gateway.message import Reply
from gateway.settings import settings_from_mapping
from gateway.signing import signature_matches
from tests.fakes.wechat_api import (
    FIXTURES,
    StubPipeline,
    StubRuntime,
    WeChatPush,
    fixture_xml,
    sha1_sign,
    xml_dict,
)

VECTOR = json.loads((FIXTURES / "safe_mode.json").read_text(encoding="utf-8"))
TOKEN = VECTOR["account"]["token"]
AES_KEY = VECTOR["account"]["aes_key"]
APPID = VECTOR["account"]["appid"]
VECTOR_NOW = float(VECTOR["query"]["timestamp"])


def echo_answer(message):
    return [Reply(message.conversation_key, f"收到：{message.text}")]


def account_settings(*, appid: str = APPID, aes_key: str | None = AES_KEY, token: str = TOKEN):
    # Built outside the event loop: settings resolve relative paths against the working directory.
    return settings_from_mapping(
        {"channels": {"wechat": [{"name": "shop", "token": token, "aes_key": aes_key, "appid": appid}]}}
    )


SETTINGS = {
    "default": account_settings(),
    "other_appid": account_settings(appid="wx0000000000000000"),
    "no_aes_key": account_settings(aes_key=None),
}


async def start(aiohttp_client, variant: str = "default", now: float | None = None):
    settings = SETTINGS[variant]
    token, aes_key, appid = TOKEN, AES_KEY, settings.channels.wechat[0].appid
    if variant == "no_aes_key":
        aes_key = None
    pipeline = StubPipeline(answer=echo_answer)
    runtime = StubRuntime(settings=settings, pipeline=pipeline)
    adapter = WeChatAdapter(settings.channels.wechat[0], runtime)
    if now is not None:  # the published vector was signed in 2014: inside the replay window of that time
        adapter.clock = lambda: now
    app = web.Application()
    app.add_routes(adapter.routes())
    client = await aiohttp_client(app)
    return client, pipeline, WeChatPush(client, "/wechat/shop", token, aes_key, appid)


def test_check_signature_vector_agrees_with_wechatpy():
    check_signature(
        "test", "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff", "1410685589", "test"
    )  # raises if wrong
    assert sign("test", "1410685589", "test") == "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff"
    assert signature_matches(sign("test", "1410685589", "test"), "f21891de399b4e33a1a93c9a7b8a8fffb5a443ff")
    assert not signature_matches(
        sign("test", "1410685589", "test"), "f21891de399b4e33a1a93c9a7b8a8fffb5a443fe"
    )
    assert not signature_matches(
        sign("test", "1410685589", "test"), "签名"
    )  # non-ASCII: a mismatch, not a crash


async def test_published_safe_mode_vector_decrypts_to_test(aiohttp_client):
    client, pipeline, wx = await start(aiohttp_client, now=VECTOR_NOW)
    body = (FIXTURES / "safe_mode.xml").read_bytes()
    resp = await client.post("/wechat/shop", params=VECTOR["query"], data=body)
    assert resp.status == 200
    [message] = pipeline.handled
    assert message.text == "test"
    assert message.user_id == "messense"
    assert message.channel_msg_id == "4363689963896700987"
    assert message.conversation_key == "wechat:shop:messense"
    reply = wx.open_reply(await resp.text())
    assert reply["Content"] == "收到：test"
    assert reply["ToUserName"] == "messense"
    assert reply["FromUserName"] == APPID  # the decrypted message's ToUserName
    assert reply["MsgType"] == "text"


async def test_safe_mode_reply_envelope_is_signed_with_the_request_nonce(aiohttp_client):
    client, _, wx = await start(aiohttp_client, now=VECTOR_NOW)
    resp = await client.post(
        "/wechat/shop", params=VECTOR["query"], data=(FIXTURES / "safe_mode.xml").read_bytes()
    )
    envelope = xml_dict(await resp.text())
    assert set(envelope) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
    assert envelope["Nonce"] == VECTOR["query"]["nonce"]
    assert envelope["MsgSignature"] == sha1_sign(
        TOKEN, envelope["TimeStamp"], envelope["Nonce"], envelope["Encrypt"]
    )


async def test_safe_mode_round_trip_with_chinese_and_emoji(aiohttp_client):
    _, pipeline, wx = await start(aiohttp_client)
    status, text, _ = await wx.post(fixture_xml("text.xml", Content="怎么付款😀", MsgId=1001), mode="safe")
    assert status == 200
    assert pipeline.handled[0].text == "怎么付款😀"
    assert wx.open_reply(text)["Content"] == "收到：怎么付款😀"


async def test_compatible_mode_uses_the_ciphertext_and_answers_encrypted(aiohttp_client):
    _, pipeline, wx = await start(aiohttp_client)
    status, text, _ = await wx.post(fixture_xml("text.xml", Content="兼容模式", MsgId=1002), mode="compat")
    assert status == 200
    assert pipeline.handled[0].text == "兼容模式"
    assert wx.open_reply(text)["Content"] == "收到：兼容模式"


async def test_compatible_mode_without_an_aes_key_answers_in_plaintext(aiohttp_client):
    client, pipeline, _ = await start(aiohttp_client, "no_aes_key")
    # A WeChat client that does have the key (the account switched to compatible mode before kefu was told).
    wx = WeChatPush(client, "/wechat/shop", TOKEN, AES_KEY, APPID)
    status, text, _ = await wx.post(fixture_xml("text.xml", Content="明文", MsgId=1003), mode="compat")
    assert status == 200
    assert xml_dict(text)["Content"] == "收到：明文"


async def test_safe_mode_without_an_aes_key_is_refused_with_the_setting_to_fix(aiohttp_client):
    client, pipeline, _ = await start(aiohttp_client, "no_aes_key")
    wx = WeChatPush(client, "/wechat/shop", TOKEN, AES_KEY, APPID)
    status, text, _ = await wx.post(fixture_xml("text.xml", MsgId=1004), mode="safe")
    assert status == 400
    assert "aes_key" in text
    assert pipeline.handled == []


async def test_wrong_msg_signature_is_forbidden(aiohttp_client):
    client, pipeline, _ = await start(aiohttp_client, now=VECTOR_NOW)
    query = VECTOR["query"] | {"msg_signature": "0" * 40}
    resp = await client.post("/wechat/shop", params=query, data=(FIXTURES / "safe_mode.xml").read_bytes())
    assert resp.status == 403
    assert pipeline.handled == []


async def test_missing_msg_signature_is_forbidden(aiohttp_client):
    client, pipeline, _ = await start(aiohttp_client, now=VECTOR_NOW)
    query = {k: v for k, v in VECTOR["query"].items() if k != "msg_signature"}
    resp = await client.post("/wechat/shop", params=query, data=(FIXTURES / "safe_mode.xml").read_bytes())
    assert resp.status == 403
    assert pipeline.handled == []


async def test_valid_msg_signature_but_forged_url_signature_is_forbidden(aiohttp_client):
    client, pipeline, _ = await start(aiohttp_client, now=VECTOR_NOW)
    query = VECTOR["query"] | {"signature": "f" * 40}
    resp = await client.post("/wechat/shop", params=query, data=(FIXTURES / "safe_mode.xml").read_bytes())
    assert resp.status == 403
    assert pipeline.handled == []


async def test_message_encrypted_for_another_appid_is_forbidden(aiohttp_client):
    client, pipeline, _ = await start(aiohttp_client, "other_appid", now=VECTOR_NOW)
    resp = await client.post(
        "/wechat/shop", params=VECTOR["query"], data=(FIXTURES / "safe_mode.xml").read_bytes()
    )
    assert resp.status == 403
    assert "appid" in await resp.text()
    assert pipeline.handled == []


async def test_tampered_ciphertext_with_a_matching_signature_is_a_400_not_a_crash(aiohttp_client):
    client, pipeline, _ = await start(aiohttp_client)
    query = {"timestamp": "1700000000", "nonce": "42"}
    for garbage in ("not base64!!", "QUJD", "A" * 44):  # bad base64, short block, wrong padding/length
        params = query | {
            "signature": sha1_sign(TOKEN, "1700000000", "42"),
            "encrypt_type": "aes",
            "msg_signature": sha1_sign(TOKEN, "1700000000", "42", garbage),
        }
        body = f"<xml><ToUserName><![CDATA[gh_x]]></ToUserName><Encrypt><![CDATA[{garbage}]]></Encrypt></xml>"
        resp = await client.post("/wechat/shop", params=params, data=body)
        assert resp.status in (400, 403), garbage
    assert pipeline.handled == []


async def test_doctype_inside_the_encrypted_payload_is_refused(aiohttp_client):
    _, pipeline, wx = await start(aiohttp_client)
    bomb = '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">]><xml><MsgType>text</MsgType></xml>'
    status, _, _ = await wx.post(bomb, mode="safe")
    assert status == 400
    assert pipeline.handled == []


async def test_encrypted_envelope_without_encrypt_type_is_a_400(aiohttp_client):
    client, pipeline, wx = await start(aiohttp_client)
    resp = await client.post(
        "/wechat/shop", params=wx.signed_query(), data=(FIXTURES / "safe_mode.xml").read_bytes()
    )
    assert resp.status == 400
    assert pipeline.handled == []


async def test_empty_reply_in_safe_mode_is_plain_success(aiohttp_client):
    client, pipeline, wx = await start(aiohttp_client)
    pipeline.answer = lambda message: []
    status, text, _ = await wx.post(fixture_xml("text.xml", MsgId=1005), mode="safe")
    assert (status, text) == (200, "success")


@pytest.mark.parametrize("mode", ["plain", "safe"])
async def test_reply_content_with_cdata_terminator_emoji_and_controls_stays_valid(aiohttp_client, mode):
    _, pipeline, wx = await start(aiohttp_client)
    nasty = "a]]>b <x>&amp; 😀 \x00\x07\x1b end"
    pipeline.answer = lambda message: [Reply(message.conversation_key, nasty)]
    status, text, _ = await wx.post(fixture_xml("text.xml", MsgId=1006), mode=mode)
    assert status == 200
    reply = wx.open_reply(text) if mode == "safe" else xml_dict(text)
    assert reply["Content"] == "a]]>b <x>&amp; 😀  end"


def test_wechatpy_crypto_matches_the_documented_scheme():
    # key = b64decode(EncodingAESKey + "="), 32 bytes, appid appended to the plaintext.
    crypto = WeChatCrypto(TOKEN, AES_KEY, APPID)
    assert len(crypto.key) == 32
    envelope = crypto.encrypt_message("<xml><Content>x</Content></xml>", "n", "1")
    fields = xml_dict(envelope)
    assert (
        crypto.decrypt_message(envelope, fields["MsgSignature"], "1", "n")
        == "<xml><Content>x</Content></xml>"
    )
