"""The QQ handoff round trip end to end, on SQLite and PostgreSQL: a group member @s the bot with an FAQ
question and gets the answer, asks for a human ("转人工"), an agent created with the CLI claims the
conversation over the agent API and replies, and the reply reaches the group @-ing the member.

Three transports: OneBot v11 HTTP POST (answers as quick operations, later sends to the fake OneBot HTTP
API), the OneBot reverse WebSocket (everything over the socket), and the QQ official bot (Ed25519-signed
pushes, passive replies through the fake QQ OpenAPI).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.keys import RUNTIME
from gateway.runtime import Runtime
from handoff.state import ConversationState
from tests.fakes import qqbot_api
from tests.fakes.onebot import (
    ACCESS_TOKEN,
    BOT_QQ,
    CUSTOMER_QQ,
    GROUP_ID,
    FakeOneBotHTTP,
    FakeOneBotWS,
    load_event,
    post_event,
)
from tests.fakes.onebot import SECRET as ONEBOT_SECRET
from tests.fakes.qqbot_api import FakeQQBotAPI, QQPush, load_payload
from tests.gateway.test_handoff_flow import Console, cli_add_agent, handoff_section, write_config
from tests.waiting import eventually

PAYMENT_QUESTION = "支持哪些支付方式"  # tests/fixtures/faq/shop.yaml, entry payment-methods
PAYMENT_ANSWER = "您好，我们支持微信支付、支付宝、银联云闪付和信用卡快捷支付。"
ONEBOT_KEY = f"qq:qqshop:group:{GROUP_ID}:{CUSTOMER_QQ}"
QQ_GROUP = "C9F778FE6ADF9D1D1DBE395BF744A33A"
QQ_MEMBER = "E4F4AEA33253A2797FB897C50B81D7ED"
QQBOT_KEY = f"qq:qqbot:group:{QQ_GROUP}:{QQ_MEMBER}"
AGENT_TEXT = "人工客服小王：您好，请把订单号发给我"
AT_MEMBER = f"[CQ:at,qq={CUSTOMER_QQ}]"


def at_bot(text: str) -> list[dict[str, Any]]:
    """A group message that @s the bot, array format."""
    return [{"type": "at", "data": {"qq": str(BOT_QQ)}}, {"type": "text", "data": {"text": f" {text}"}}]


def mentions_member(message: Any) -> bool:
    """The OneBot message @s the customer: a CQ at code (string format) or an at segment (array format)."""
    if isinstance(message, str):
        return AT_MEMBER in message
    return any(seg.get("type") == "at" and str(seg["data"].get("qq")) == str(CUSTOMER_QQ) for seg in message)


def message_text(message: Any) -> str:
    if isinstance(message, str):
        return message
    return "".join(seg["data"].get("text", "") for seg in message if seg.get("type") == "text")


@dataclass
class Kefu:
    """The running gateway (OneBot account `qqshop`, QQ bot `qqbot`) and both fake platform APIs."""

    client: Any
    runtime: Runtime
    onebot: FakeOneBotHTTP
    qq: FakeQQBotAPI
    config: Path

    async def agent(self, name: str = "小王", groups: str = "售前,售后") -> Console:
        """An agent added with `kefu agent add`, online (manual assignment: they claim from the queue)."""
        console = Console(self.client, await cli_add_agent(self.config, name, groups), name)
        await console.call("POST", "/me/presence", json={"presence": "online"})
        return console

    async def queued(self, key: str) -> int:
        """The id of the customer's conversation, once it waits in the queue."""
        [conversation] = await self.runtime.store.conversations_for_key(key)
        assert conversation.state is ConversationState.QUEUED
        return conversation.id

    async def claim_and_reply(self, console: Console, conversation_id: int) -> None:
        claimed = await console.call("POST", f"/conversations/{conversation_id}/claim")
        assert claimed["state"] == "assigned"
        await console.call(
            "POST", f"/conversations/{conversation_id}/messages", json={"text": AGENT_TEXT}, expect=201
        )


@pytest.fixture
async def onebot_api(aiohttp_server: Any) -> FakeOneBotHTTP:
    return await FakeOneBotHTTP().start(aiohttp_server)


@pytest.fixture
async def qq_api(aiohttp_server: Any) -> FakeQQBotAPI:
    return await FakeQQBotAPI().start(aiohttp_server)


@pytest.fixture
async def kefu(
    aiohttp_client: Any,
    settings_factory: Callable[..., Any],
    onebot_api: FakeOneBotHTTP,
    qq_api: FakeQQBotAPI,
    db_url: str,
    tmp_path: Path,
) -> Kefu:
    channels = {
        "onebot": [
            {
                "name": "qqshop",
                "secret": ONEBOT_SECRET,
                "access_token": ACCESS_TOKEN,
                "api_url": onebot_api.url,
            }
        ],
        "qqbot": [
            {
                "name": "qqbot",
                "appid": qqbot_api.APPID,
                "secret": qqbot_api.SECRET,
                "api_base": qq_api.url,
                "token_url": qq_api.token_url,
            }
        ],
    }
    settings = settings_factory(channels=channels, handoff=handoff_section(assignment="manual"))
    app = create_app(settings)
    client = await aiohttp_client(app)
    return Kefu(client, app[RUNTIME], onebot_api, qq_api, write_config(tmp_path / "gateway.yaml", db_url))


# --- OneBot v11, HTTP POST ------------------------------------------------------------------------------


async def test_onebot_http_faq_answer_handoff_claim_and_agent_reply_reach_the_group(kefu: Kefu) -> None:
    resp = await post_event(kefu.client, "/onebot/qqshop", load_event("group_at_array.json"))
    assert resp.status == 200
    assert await resp.json() == {"reply": PAYMENT_ANSWER, "auto_escape": True, "at_sender": True}

    resp = await post_event(
        kefu.client, "/onebot/qqshop", load_event("group_at_array.json", message=at_bot("转人工"))
    )
    assert resp.status == 200
    assert (await resp.json())["at_sender"] is True
    conversation_id = await kefu.queued(ONEBOT_KEY)

    wang = await kefu.agent()
    await kefu.claim_and_reply(wang, conversation_id)

    def agent_messages() -> list[dict[str, Any]]:
        return [m for m in kefu.onebot.messages("send_group_msg") if AGENT_TEXT in message_text(m["message"])]

    async def delivered() -> bool:
        return bool(agent_messages())

    await eventually(delivered)
    [sent] = agent_messages()
    assert sent["group_id"] == GROUP_ID
    assert mentions_member(sent["message"])
    # Everything the group got from the API (notices too) went to this group and @-ed the member.
    assert all(m["group_id"] == GROUP_ID and mentions_member(m["message"]) for m in kefu.onebot.messages())
    assert kefu.onebot.messages("send_private_msg") == []


# --- OneBot v11, reverse WebSocket ----------------------------------------------------------------------


async def test_onebot_websocket_faq_answer_handoff_claim_and_agent_reply_go_over_the_socket(
    kefu: Kefu,
) -> None:
    ws = await FakeOneBotWS(kefu.client, "/onebot/qqshop/ws").connect()
    try:
        await ws.send_event(load_event("group_at_array.json"))
        await ws.wait_for_calls(1)
        [answer] = ws.messages()
        assert answer["group_id"] == GROUP_ID
        assert mentions_member(answer["message"]) and PAYMENT_ANSWER in message_text(answer["message"])

        await ws.send_event(load_event("group_at_array.json", message=at_bot("转人工")))
        await ws.wait_for_calls(2)

        async def is_queued() -> bool:
            rows = await kefu.runtime.store.conversations_for_key(ONEBOT_KEY)
            return bool(rows) and rows[-1].state is ConversationState.QUEUED

        await eventually(is_queued)
        conversation_id = await kefu.queued(ONEBOT_KEY)

        wang = await kefu.agent()
        await kefu.claim_and_reply(wang, conversation_id)

        def agent_frames() -> list[dict[str, Any]]:
            return [c for c in ws.calls if AGENT_TEXT in message_text(c.get("params", {}).get("message", ""))]

        async def delivered() -> bool:
            return bool(agent_frames())

        await eventually(delivered)
        [frame] = agent_frames()
        assert frame["action"] == "send_group_msg"
        assert frame["params"]["group_id"] == GROUP_ID
        assert mentions_member(frame["params"]["message"])
        assert kefu.onebot.calls == []  # nothing went to the HTTP API while the socket was connected
    finally:
        await ws.close()


# --- QQ official bot ------------------------------------------------------------------------------------


async def test_qqbot_faq_answer_handoff_claim_and_agent_reply_are_passive_replies_to_the_group(
    kefu: Kefu,
) -> None:
    push = QQPush(kefu.client, "/qqbot/qqbot")
    path = f"/v2/groups/{QQ_GROUP}/messages"

    question = load_payload("group_at_message.json", content=f" {PAYMENT_QUESTION}")
    resp = await push.post(question)
    assert resp.status == 200, await resp.text()
    [sent] = await kefu.qq.wait_for_messages(1)
    assert sent["path"] == path and sent["content"] == PAYMENT_ANSWER
    assert sent["msg_id"] == question["d"]["id"]

    handoff = load_payload("group_at_message.json", content=" 转人工")
    resp = await push.post(handoff)
    assert resp.status == 200, await resp.text()
    # The handoff answer, then the queue notice (held back briefly): both before anyone claims.
    before_claim = (await kefu.qq.wait_for_messages(3))[:3]
    assert all(m["msg_id"] == handoff["d"]["id"] for m in before_claim[1:])
    conversation_id = await kefu.queued(QQBOT_KEY)

    wang = await kefu.agent()
    await kefu.claim_and_reply(wang, conversation_id)

    def agent_messages() -> list[dict[str, Any]]:
        return [m for m in kefu.qq.messages if m["content"] == AGENT_TEXT]

    async def delivered() -> bool:
        return bool(agent_messages())

    await eventually(delivered)
    [reply] = agent_messages()
    assert reply["path"] == path
    assert reply["msg_id"] == handoff["d"]["id"]  # a passive reply to the customer's latest message
    # Later than everything sent for that message before the claim (the "客服 X 为您服务" notice is sent
    # concurrently with the reply, so it is not ordered against it).
    assert reply["msg_seq"] > max(m["msg_seq"] for m in before_claim[1:])
    assert all(m["path"] == path for m in kefu.qq.messages)
