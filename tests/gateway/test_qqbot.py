"""The QQ official bot (webhook mode) end to end: QQ's servers push Ed25519-signed events to the real kefu
app; answers and agent replies go out as passive replies through the fake QQ OpenAPI.

Runs on SQLite and PostgreSQL (the `db_url` fixture).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest

from gateway.app import create_app
from gateway.channels.base import Outgoing, SendError
from gateway.channels.qqbot.adapter import QQBotAdapter
from gateway.keys import RUNTIME
from gateway.message import utcnow
from gateway.runtime import Runtime
from gateway.settings import SettingsError, settings_from_mapping
from handoff.state import ConversationState
from tests.fakes.qqbot_api import APPID, SECRET, FakeQQBotAPI, QQPush, load_payload
from tests.waiting import eventually

PAYMENT_ANSWER = "您好，我们支持微信支付、支付宝、银联云闪付和信用卡快捷支付。"
GROUP = "C9F778FE6ADF9D1D1DBE395BF744A33A"
MEMBER = "E4F4AEA33253A2797FB897C50B81D7ED"
GROUP_KEY = f"qq:qqbot:group:{GROUP}:{MEMBER}"
C2C_KEY = f"qq:qqbot:private:{MEMBER}"
ACK = {"op": 12, "d": 0}


@dataclass
class Kefu:
    client: Any
    runtime: Runtime
    api: FakeQQBotAPI
    push: QQPush

    @property
    def adapter(self) -> QQBotAdapter:
        return self.runtime.adapters[("qqbot", "qqbot")]  # type: ignore[return-value]

    def later(self, minutes: float) -> None:
        """Move the adapter's clock forward (the passive-reply windows are measured with it)."""
        start = utcnow()
        self.adapter.clock = lambda: start + timedelta(minutes=minutes)

    async def state(self, key: str = GROUP_KEY) -> ConversationState:
        [conversation] = await self.runtime.store.conversations_for_key(key)
        return conversation.state

    def replies(self, key: str) -> str:
        snapshot = self.runtime.kb.snapshot()
        assert snapshot is not None
        return snapshot[0].replies.get(key)

    async def ask(self, fixture: str = "group_at_message.json", **d: Any) -> dict[str, Any]:
        payload = load_payload(fixture, **d)
        resp = await self.push.post(payload)
        assert resp.status == 200, await resp.text()
        assert await resp.json() == ACK
        return payload


@pytest.fixture
async def qq_api(aiohttp_server) -> FakeQQBotAPI:
    return await FakeQQBotAPI().start(aiohttp_server)


@pytest.fixture
def start_kefu(aiohttp_client, settings_factory, qq_api) -> Callable[..., Awaitable[Kefu]]:
    async def start(**sections: Any) -> Kefu:
        accounts = [
            {
                "name": "qqbot",
                "appid": APPID,
                "secret": SECRET,
                "api_base": qq_api.url,
                "token_url": qq_api.token_url,
            },
            # The official docs' example bot (appid 11111111), for the validation test vector.
            {
                "name": "docs",
                "appid": "11111111",
                "secret": "DG5g3B4j9X2KOErG",
                "api_base": qq_api.url,
                "token_url": qq_api.token_url,
            },
        ]
        sections.setdefault("channels", {})["qqbot"] = accounts
        app = create_app(settings_factory(**sections))
        client = await aiohttp_client(app)
        return Kefu(client, app[RUNTIME], qq_api, QQPush(client, "/qqbot/qqbot"))

    return start


@pytest.fixture
async def kefu(start_kefu) -> Kefu:
    return await start_kefu()


async def outbox(kefu: Kefu) -> list[Any]:
    return sorted(await kefu.runtime.store.list_outbox(), key=lambda row: row.id)


# --- callback validation (op 13) ----------------------------------------------------------------------


async def test_validation_matches_the_official_docs_example(kefu):
    # Byte for byte the request from the docs (no signature headers), answered as the docs say.
    body = b'{"d":{"plain_token":"Arq0D5A61EgUu4OxUvOp","event_ts":"1725442341"},"op":13}'
    resp = await kefu.client.post(
        "/qqbot/docs", data=body, headers={"User-Agent": "QQBot-Callback", "X-Bot-Appid": "11111111"}
    )
    assert resp.status == 200
    assert await resp.json() == {
        "plain_token": "Arq0D5A61EgUu4OxUvOp",
        "signature": "87befc99c42c651b3aac0278e71ada338433ae26fcb24307bdc5ad38c1adc2d0"
        "1bcfcadc0842edac85e85205028a1132afe09280305f13aa6909ffc2d652c706",
    }


async def test_signed_validation_is_answered_with_a_verifiable_signature(kefu):
    from tests.fakes.qqbot_api import qq_key

    resp = await kefu.push.post(load_payload("validation.json"))
    answer = await resp.json()
    qq_key(SECRET).public_key().verify(bytes.fromhex(answer["signature"]), b"1725442341Arq0D5A61EgUu4OxUvOp")


async def test_validation_with_a_bad_signature_is_401(kefu):
    resp = await kefu.push.post(load_payload("validation.json"), signature="00" * 64)
    assert resp.status == 401


async def test_validation_never_signs_something_that_looks_like_a_push(kefu):
    # Otherwise an attacker could get kefu to sign timestamp + '{"op":0,...}' and forge pushes.
    payload = {"op": 13, "d": {"plain_token": '{"op":0,"t":"C2C_MESSAGE_CREATE"}', "event_ts": "1725442341"}}
    resp = await kefu.client.post("/qqbot/qqbot", data=json.dumps(payload))
    assert resp.status == 400
    assert "signature" not in await resp.text()


# --- messages in, passive replies out ------------------------------------------------------------------


async def test_group_member_ats_the_bot_and_the_answer_goes_to_the_group(kefu):
    payload = await kefu.ask()
    [sent] = await kefu.api.wait_for_messages(1)
    assert sent == {
        "path": f"/v2/groups/{GROUP}/messages",
        "content": PAYMENT_ANSWER,
        "msg_type": 0,
        "msg_id": payload["d"]["id"],
        "msg_seq": 1,
    }
    [stored] = await kefu.runtime.store.messages_for_key(GROUP_KEY, direction="in")
    assert stored.text == "支持哪些支付方式"  # the leading space of group @ messages is gone
    assert stored.channel_msg_id == payload["d"]["id"]
    assert kefu.api.token_fetches == 1  # expires_in came as the string "7200"


async def test_c2c_message_is_answered_to_the_user(kefu):
    payload = await kefu.ask("c2c_message.json")
    [sent] = await kefu.api.wait_for_messages(1)
    assert sent["path"] == f"/v2/users/{MEMBER}/messages"
    assert sent["msg_id"] == payload["d"]["id"] and sent["content"] == PAYMENT_ANSWER


async def test_the_same_push_twice_is_answered_once(kefu):
    payload = load_payload("group_at_message.json")
    for _ in range(2):
        resp = await kefu.push.post(payload)
        assert await resp.json() == ACK
    await kefu.api.wait_for_messages(1)
    await asyncio.sleep(0.3)
    assert len(kefu.api.messages) == 1
    assert len(await kefu.runtime.store.messages_for_key(GROUP_KEY, direction="in")) == 1


async def test_unknown_event_types_get_204_and_are_logged_once(kefu, caplog):
    caplog.set_level(logging.INFO, logger="gateway.channels.qqbot.adapter")
    for _ in range(3):
        resp = await kefu.push.post(load_payload("unknown_event.json"))
        assert resp.status == 204
    ignored = [r.getMessage() for r in caplog.records if "ignores" in r.getMessage()]
    assert ignored == ["qqbot ignores t=GROUP_ADD_ROBOT pushes"]
    assert await kefu.runtime.store.count_messages() == 0


async def test_slow_pipeline_is_acknowledged_only_once_stored_and_still_answered(kefu):
    # Regression (reliability item 2): the ack went out at the deadline, before the message was stored.
    kefu.adapter.ack_deadline_s = 0.05
    pipeline = kefu.runtime.pipeline
    original = pipeline.handle

    async def slow(message, **kw):
        await asyncio.sleep(1.0)  # well past the deadline and the spool write
        return await original(message, **kw)

    pipeline.handle = slow  # type: ignore[method-assign]
    await kefu.ask()
    spool = kefu.runtime.spool
    assert spool is not None and spool.owned  # durable at the ack: in the inbound spool (fsynced)
    await kefu.api.wait_for_messages(1)
    assert await kefu.runtime.store.count_messages() == 2  # the question and its answer
    assert [r.status for r in await kefu.runtime.store.list_outbox()] != []  # the answer's row too


# --- refusing bad input --------------------------------------------------------------------------------


async def test_unsigned_push_is_401(kefu):
    resp = await kefu.push.post(load_payload("group_at_message.json"), signed=False)
    assert resp.status == 401
    assert await kefu.runtime.store.count_messages() == 0


@pytest.mark.parametrize("bad", ["00" * 64, "zz", "ab" * 32, "", "ff" * 64])
async def test_push_with_a_bad_signature_is_401(kefu, bad):
    resp = await kefu.push.post(load_payload("group_at_message.json"), signature=bad)
    assert resp.status == 401
    assert await kefu.runtime.store.count_messages() == 0


async def test_push_signed_for_another_timestamp_is_401(kefu):
    from tests.fakes.qqbot_api import qq_key

    body = json.dumps(load_payload("group_at_message.json")).encode()
    signature = qq_key(SECRET).sign(b"1700000000" + body).hex()
    resp = await kefu.client.post(
        "/qqbot/qqbot",
        data=body,
        headers={"X-Signature-Ed25519": signature, "X-Signature-Timestamp": "1700000001"},
    )
    assert resp.status == 401


async def test_push_signed_by_another_bot_is_401(kefu):
    resp = await QQPush(kefu.client, "/qqbot/qqbot", secret="someone-elses-secret").post(
        load_payload("group_at_message.json")
    )
    assert resp.status == 401


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        b'{"op":0,"t":"C2C_MESSAGE_CREATE","d":"x"}',
        b'{"op":0,"t":"GROUP_AT_MESSAGE_CREATE","d":{"id":"m1","content":"hi","author":{}}}',
    ],
    ids=["malformed", "array", "d-not-object", "no-openids"],
)
async def test_signed_but_malformed_bodies_are_400(kefu, body):
    resp = await kefu.push.post(body)
    assert resp.status == 400


async def test_deeply_nested_json_is_400(kefu):
    resp = await kefu.push.post(b'{"op":0,"d":' + b"[" * 3000 + b"]" * 3000 + b"}")
    assert resp.status == 400


async def test_huge_body_is_413(kefu):
    resp = await kefu.push.post(load_payload("group_at_message.json", content="退货" * 40_000))
    assert resp.status == 413


# --- handoff, agent replies and the passive-reply window ------------------------------------------------


async def test_asking_for_a_human_queues_and_the_agent_reply_reaches_the_group(kefu):
    payload = await kefu.ask(content=" 转人工")
    await kefu.api.wait_for_messages(1)
    assert kefu.api.messages[0]["content"] == kefu.replies("handoff")
    assert await kefu.state() is ConversationState.QUEUED

    # An agent's reply (another issue) arrives at send() with no target: it replies to the latest message.
    await kefu.adapter.send(Outgoing("qqbot", "qqbot", GROUP_KEY, "人工客服：您好，我来帮您看看", "agent"))
    agent = kefu.api.messages[1]
    assert agent["path"] == f"/v2/groups/{GROUP}/messages"
    assert agent["content"] == "人工客服：您好，我来帮您看看"
    assert (agent["msg_id"], agent["msg_seq"]) == (payload["d"]["id"], 2)


async def test_agent_reply_after_the_group_window_is_undeliverable_with_a_clear_reason(kefu):
    await kefu.ask(content=" 转人工")
    await kefu.api.wait_for_messages(1)
    kefu.later(minutes=6)
    await kefu.runtime.outbox.enqueue(Outgoing("qqbot", "qqbot", GROUP_KEY, "人工客服：久等了", "agent"))

    async def replies() -> list[Any]:  # the bot's and the agent's (the 留言 notice is a system row)
        return [r for r in await outbox(kefu) if r.sender != "system"]

    async def settled() -> bool:
        return [r.status for r in await replies()] == ["sent", "undeliverable"]

    await eventually(settled)
    row = (await replies())[1]
    assert row.last_error is not None and row.last_error.startswith("QQ 群被动回复窗口（5 分钟）已过")
    assert row.attempts == 1  # not retried: it can never succeed
    assert len(kefu.api.messages) == 1


async def test_c2c_window_is_an_hour(kefu):
    await kefu.ask("c2c_message.json", content="转人工")
    await kefu.api.wait_for_messages(1)
    kefu.later(minutes=30)
    await kefu.adapter.send(Outgoing("qqbot", "qqbot", C2C_KEY, "人工客服：在的", "agent"))
    kefu.later(minutes=61)
    with pytest.raises(SendError) as caught:
        await kefu.adapter.send(Outgoing("qqbot", "qqbot", C2C_KEY, "人工客服：还在吗", "agent"))
    assert caught.value.retryable is False
    assert "60 分钟" in caught.value.reason
    assert [m["content"] for m in kefu.api.messages][1:] == ["人工客服：在的"]


async def _all_sent(kefu: Kefu, count: int) -> None:
    """Wait until `count` outbox rows (the bot's reply and the 留言 notices, due 0.3 s later) are sent."""

    async def sent() -> bool:
        return [r.status for r in await outbox(kefu)] == ["sent"] * count

    await eventually(sent)


async def test_at_most_five_replies_per_customer_message(kefu):
    await kefu.ask("c2c_message.json", content="转人工")
    await _all_sent(kefu, 2)  # the handoff reply and the 留言 notice: msg_seq 1 and 2
    for n in range(3):
        await kefu.adapter.send(Outgoing("qqbot", "qqbot", C2C_KEY, f"人工客服：第{n}条", "agent"))
    with pytest.raises(SendError) as caught:
        await kefu.adapter.send(Outgoing("qqbot", "qqbot", C2C_KEY, "人工客服：第六条", "agent"))
    assert caught.value.retryable is False and "5 次" in caught.value.reason
    assert [m["msg_seq"] for m in kefu.api.messages] == [1, 2, 3, 4, 5]


async def test_a_new_customer_message_opens_a_new_window(kefu):
    await kefu.ask("c2c_message.json", content="转人工")
    await _all_sent(kefu, 2)  # the handoff reply and the 留言 notice, both replies to the first message
    second = await kefu.ask("c2c_message.json", content="还在吗")  # queued: stored, the bot stays quiet
    await _all_sent(kefu, 3)  # … and "您补充的内容已记录", the first reply to the new message
    await kefu.adapter.send(Outgoing("qqbot", "qqbot", C2C_KEY, "人工客服：在的", "agent"))
    assert kefu.api.messages[-1]["msg_id"] == second["d"]["id"]
    # Outbox rows carry their row id as msg_seq; a direct send takes a seq after every row's, never a used pair.
    pairs = [(m["msg_id"], m["msg_seq"]) for m in kefu.api.messages]
    assert len(set(pairs)) == len(pairs)
    earlier = [m["msg_seq"] for m in kefu.api.messages[:-1] if m["msg_id"] == second["d"]["id"]]
    assert earlier and kefu.api.messages[-1]["msg_seq"] > max(earlier)


async def test_conversation_without_any_customer_message_cannot_be_messaged(kefu):
    with pytest.raises(SendError) as caught:
        await kefu.adapter.send(Outgoing("qqbot", "qqbot", C2C_KEY, "您好", "agent"))
    assert caught.value.retryable is False and "主动" in caught.value.reason


# --- the OpenAPI misbehaving ---------------------------------------------------------------------------


async def test_server_errors_are_retried_with_the_same_msg_seq(kefu):
    kefu.api.fail_next(status=502, times=2)
    payload = await kefu.ask()
    await kefu.api.wait_for_messages(1)

    async def sent() -> bool:
        return [r.status for r in await outbox(kefu)] == ["sent"]

    await eventually(sent)
    assert [(a["msg_id"], a["msg_seq"]) for a in kefu.api.attempts] == [(payload["d"]["id"], 1)] * 3


async def test_a_send_whose_answer_got_lost_is_not_shown_twice(kefu):
    kefu.api.lose_answers = 1  # QQ accepted the reply but the answer never came back
    await kefu.ask()

    async def sent() -> bool:
        return [r.status for r in await outbox(kefu)] == ["sent"]

    await eventually(sent)
    assert len(kefu.api.messages) == 1  # the retry reused msg_seq 1 and QQ deduplicated it
    assert len(kefu.api.attempts) == 2


async def test_a_row_resent_after_a_restart_is_not_shown_twice(kefu):
    # Regression (reliability item 3b): the msg_seq lived in memory, so after a kill -9 mid-send the
    # resumed row got a fresh seq and QQ showed it twice. Now msg_seq is the outbox row's id.
    payload = await kefu.ask(content=" 转人工")
    await kefu.api.wait_for_messages(1)
    kefu.api.lose_answers = 1  # QQ shows it, the answer is lost, then the process dies
    row = Outgoing("qqbot", "qqbot", GROUP_KEY, "人工客服：您好", "agent", outbox_id=42)
    with pytest.raises(SendError):
        await kefu.adapter.send(row)
    kefu.adapter._passive.clear()  # the restart forgets every in-memory seq
    await kefu.adapter.send(row)  # the outbox resumes the same row
    assert [m["content"] for m in kefu.api.messages].count("人工客服：您好") == 1
    assert kefu.api.messages[-1]["msg_id"] == payload["d"]["id"]


async def test_permanent_refusals_are_undeliverable(kefu):
    kefu.api.fail_next(status=400, code=40034128)
    await kefu.ask()

    async def settled() -> bool:
        return [r.status for r in await outbox(kefu)] == ["undeliverable"]

    await eventually(settled)


async def test_expired_token_is_refreshed_once(kefu):
    await kefu.ask()
    await kefu.api.wait_for_messages(1)
    kefu.api.expire_tokens()
    await kefu.adapter.send(Outgoing("qqbot", "qqbot", GROUP_KEY, "人工客服：在的", "agent"))
    assert kefu.api.token_fetches == 2
    assert len(kefu.api.messages) == 2


async def test_concurrent_sends_share_one_token_fetch(kefu):
    first = await kefu.ask("c2c_message.json", content="转人工")
    await kefu.api.wait_for_messages(1)
    kefu.adapter._tokens = None  # a fresh process: no token cached
    kefu.api.token_latency_s = 0.2
    other = f"qq:qqbot:private:{MEMBER}"
    await asyncio.gather(
        *(kefu.adapter.send(Outgoing("qqbot", "qqbot", other, f"人工客服：{n}", "agent")) for n in range(3))
    )
    assert kefu.api.token_fetches == 2  # one for the bot's answer, one shared by the three sends
    assert {m["msg_id"] for m in kefu.api.messages} == {first["d"]["id"]}


async def test_wrong_credentials_are_a_retryable_error_that_names_the_setting(kefu, caplog):
    kefu.api.secret = "rotated"
    with pytest.raises(SendError) as caught:
        await kefu.adapter.send(Outgoing("qqbot", "qqbot", GROUP_KEY, "x", "bot", {"channel_msg_id": "m1"}))
    assert caught.value.retryable is True
    assert any("channels.qqbot" in r.getMessage() for r in caplog.records)
    assert SECRET not in caplog.text


def test_qqbot_settings_need_appid_and_secret_and_never_echo_the_secret():
    with pytest.raises(SettingsError) as caught:
        settings_from_mapping(
            {"channels": {"qqbot": [{"name": "q", "appid": "1", "secret": "", "api_bas": "x"}]}}
        )
    text = str(caught.value)
    assert "channels.qqbot[0].secret" in text and "channels.qqbot[0].api_bas" in text


def test_qqbot_settings_defaults():
    settings = settings_from_mapping({"channels": {"qqbot": [{"name": "q", "appid": "1", "secret": "s"}]}})
    [account] = settings.channels.qqbot
    assert account.api_base == "https://api.sgroup.qq.com"
    assert account.token_url == "https://bots.qq.com/app/getAppAccessToken"
