"""A form across WeChat and QQ: the same order-status conversation through each platform's real webhook."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.app import create_app
from gateway.keys import RUNTIME
from tests.fakes.action_servers import TEST_ACTIONS
from tests.fakes.onebot import ACCESS_TOKEN, CUSTOMER_QQ, SECRET, load_event, post_event
from tests.fakes.wechat_api import APPID, WeChatPush, fixture_xml, xml_dict
from tests.gateway.test_actions_flow import ACTIONS_FAQ, ASK_ORDER

TOKEN = "kefu-test-token"
_ids = itertools.count(9_100_000_000_000_000_000)


async def start(
    aiohttp_client: Any, settings_factory: Callable[..., Any], faq_dir: Path, **channels: Any
) -> Any:
    settings = settings_factory(
        kb={"paths": [str(faq_dir), str(ACTIONS_FAQ)]},
        actions={"modules": [TEST_ACTIONS], "timeout_s": 20},
        channels=channels,
        pipeline={"wechat_reply_deadline_s": 4.9},  # the passive reply, also on a busy test machine
    )
    return await aiohttp_client(create_app(settings))


async def test_a_wechat_customer_fills_the_form(
    aiohttp_client: Any, settings_factory: Any, faq_dir: Path
) -> None:
    account = {
        "name": "shop",
        "token": TOKEN,
        "appid": APPID,
        "secret": "s",
        "api_base": "http://127.0.0.1:9",
    }
    client = await start(aiohttp_client, settings_factory, faq_dir, wechat=[account])
    push = WeChatPush(client, "/wechat/shop", TOKEN)

    async def ask(text: str) -> str:
        status, body, _ = await push.post(fixture_xml("text.xml", Content=text, MsgId=next(_ids)))
        assert status == 200, body
        return xml_dict(body)["Content"]

    assert await ask("我的快递到哪了") == ASK_ORDER
    assert (await ask("订单号是A12345678")).startswith("您的订单A12345678已到达【上海转运中心】")
    runtime = client.server.app[RUNTIME]
    [conversation] = [c for c in await runtime.store.conversations_for_key(f"wechat:shop:{_openid()}")]
    assert conversation.state.value == "bot"


async def test_a_qq_customer_fills_the_form_and_cancels_another(
    aiohttp_client: Any, settings_factory: Any, faq_dir: Path
) -> None:
    onebot = {
        "name": "qqshop",
        "secret": SECRET,
        "access_token": ACCESS_TOKEN,
        "api_url": "http://127.0.0.1:9",
    }
    client = await start(aiohttp_client, settings_factory, faq_dir, onebot=[onebot])

    async def ask(text: str) -> str:
        event = load_event(
            "private.json", message=[{"type": "text", "data": {"text": text}}], raw_message=text
        )
        resp = await post_event(client, "/onebot/qqshop", event)
        assert resp.status == 200, await resp.text()
        return (await resp.json())["reply"]

    assert await ask("我的快递到哪了") == ASK_ORDER
    assert (await ask("A12345678")).startswith("您的订单A12345678已到达【上海转运中心】")
    assert await ask("退款被拒绝了") == "这笔退款需要人工核实，正在为您转接。"
    runtime = client.server.app[RUNTIME]
    [conversation] = await runtime.store.conversations_for_key(f"qq:qqshop:private:{CUSTOMER_QQ}")
    assert conversation.handoff_reason == "action:refund_dispute"


def _openid() -> str:
    return xml_dict(fixture_xml("text.xml"))["FromUserName"]
