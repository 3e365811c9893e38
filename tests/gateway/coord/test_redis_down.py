"""Redis goes down under a running gateway and comes back: a clear 503 with Retry-After on the paths that
need it, recovery without a restart, and never a double answer.

The Redis is the test's own (`redis-server` on a free port, started and killed by the test).
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.app import create_app
from gateway.keys import RUNTIME
from tests.fakes.wechat_api import APPID, SECRET, FakeWeChatAPI, WeChatPush, fixture_xml, xml_dict
from tests.gateway.test_agent_api import make_agent
from tests.gateway.test_wechat import PAYMENT_ANSWER, TOKEN, new_msg_id


@pytest.fixture
async def wechat_api(aiohttp_server: Any) -> FakeWeChatAPI:
    return await FakeWeChatAPI().start(aiohttp_server)


@pytest.fixture
async def kefu(aiohttp_client, settings_factory, wechat_api, own_redis) -> Any:
    account = {"name": "shop", "token": TOKEN, "appid": APPID, "secret": SECRET, "api_base": wechat_api.url}
    settings = settings_factory(
        channels={"wechat": [account], "web": {"enabled": True}},
        redis={"url": own_redis.url, "prefix": "down-test", "timeout_s": 0.5, "retry_after_s": 3},
    )
    app = create_app(settings)
    return await aiohttp_client(app)


async def test_while_redis_is_down_wechat_and_web_get_503_with_retry_after_then_recover(
    kefu, own_redis, wechat_api
):
    push = WeChatPush(kefu, "/wechat/shop", TOKEN)
    status, text, _ = await push.post(fixture_xml("text.xml", MsgId=new_msg_id()))
    assert (status, xml_dict(text)["Content"]) == (200, PAYMENT_ANSWER)

    own_redis.stop()
    xml = fixture_xml("text.xml", MsgId=new_msg_id())
    status, text, _ = await push.post(xml)
    assert status == 503
    web = await kefu.post("/web/messages", json={"user_id": "visitor-1", "text": "支持哪些支付方式"})
    assert web.status == 503
    assert web.headers["Retry-After"] == "3"
    assert "retry" in (await web.json())["error"]
    health = await (await kefu.get("/healthz")).json()
    assert health["status"] == "degraded" and health["redis"] == {"ok": False}
    runtime = kefu.app[RUNTIME]
    # Nothing of the refused WeChat message was stored: its retry is the first delivery.
    assert [
        m.text for m in await runtime.store.messages_for_key(f"wechat:shop:{xml_dict(xml)['FromUserName']}")
    ] == [
        "支持哪些支付方式",
        PAYMENT_ANSWER,
    ]

    own_redis.start()  # the same port: the pool reconnects on its next call
    status, text, _ = await push.post(xml)  # WeChat's retry of the refused message
    assert (status, xml_dict(text)["Content"]) == (200, PAYMENT_ANSWER)
    assert (await kefu.post("/web/messages", json={"user_id": "visitor-1", "text": "你好"})).status == 200
    assert (await (await kefu.get("/healthz")).json())["redis"] == {"ok": True}
    await runtime.outbox.run_once()
    assert wechat_api.messages == []  # every answer went once, passively
    assert [r.status for r in await runtime.store.list_outbox()] == ["cancelled", "cancelled"]


async def test_wechat_503_says_when_to_retry(kefu, own_redis):
    own_redis.stop()
    push = WeChatPush(kefu, "/wechat/shop", TOKEN)
    resp = await kefu.post(
        "/wechat/shop", params=push.signed_query(), data=fixture_xml("text.xml", MsgId=new_msg_id())
    )
    assert resp.status == 503
    assert resp.headers["Retry-After"] == "3"


async def test_sockets_say_so_while_redis_is_down_and_work_again_after(kefu, own_redis):
    agent = await make_agent(kefu, "甲")
    visitor = "visitor-redis-down-0001"
    own_redis.stop()
    # The web chat: that message is not handled, the page is told and may resend it.
    async with kefu.ws_connect("/web/ws", params={"visitor": visitor}) as chat:
        assert (await chat.receive_json(timeout=5))["type"] == "history"
        await chat.send_json({"type": "message", "client_id": "c-1", "text": "支持哪些支付方式"})
        frame = await chat.receive_json(timeout=5)
        assert (frame["type"], frame["code"], frame["client_id"]) == ("error", "unavailable", "c-1")
        assert "稍后重试" in frame["error"]
    # The agent console: closed with 1013 (try again later); the console reconnects by itself.
    headers = {"Authorization": f"Bearer {agent.token}"}
    async with kefu.ws_connect("/api/v1/agent/ws", headers=headers) as console:
        await console.receive(timeout=5)
        assert console.close_code == 1013
    own_redis.start()
    async with kefu.ws_connect("/web/ws", params={"visitor": visitor}) as chat:
        assert (await chat.receive_json(timeout=5))["type"] == "history"
        await chat.send_json({"type": "message", "client_id": "c-1", "text": "支持哪些支付方式"})
        assert (await chat.receive_json(timeout=5))["type"] == "ack"
    async with kefu.ws_connect("/api/v1/agent/ws", headers=headers) as console:
        assert (await console.receive_json(timeout=5))["type"] == "hello"
