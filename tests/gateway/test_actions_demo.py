"""The demo of `make run`: the demo shop's actions against the fake shop API, with the shipped FAQ."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from tests.fakes.action_servers import free_port, rasa_action_server

CONFIG_FAQ = Path(__file__).resolve().parents[2] / "config" / "faq"
ASK = "您好，请告诉我您的订单号（一个字母加8位数字），我帮您查询。"
ARRIVED = "您的订单已到达【上海转运中心】（12-05 21:47），顺丰速运运单号SF1402876539，预计明天（12-07）送达。"


async def say(client: Any, user: str, text: str) -> list[str]:
    resp = await client.post("/web/messages", json={"user_id": user, "text": text})
    assert resp.status == 200
    return [r["text"] for r in (await resp.json())["replies"]]


@pytest.fixture
def shop_port(monkeypatch: pytest.MonkeyPatch) -> int:
    port = free_port()
    monkeypatch.setenv("KEFU_DEMO_SHOP_URL", f"http://127.0.0.1:{port}")
    return port


async def test_the_demo_dialogue_in_process(
    aiohttp_client: Any, settings_factory: Callable[..., Any], shop_port: int
) -> None:
    settings = settings_factory(
        kb={"paths": [str(CONFIG_FAQ)]},
        actions={
            "modules": ["gateway.demo.shop_actions"],
            "serve_apps": {"gateway.demo.shop_api:create_app": shop_port},
            "timeout_s": 20,
        },
    )
    client = await aiohttp_client(create_app(settings))
    assert await say(client, "d1", "我的快递到哪了") == [ASK]
    assert await say(client, "d1", "A12345678") == [ARRIVED]
    assert await say(client, "d1", "退款到哪一步了") == [
        "您好，订单A12345678暂时没有退款申请。如需退款，请在「我的订单」→「申请售后」中提交。"
    ]
    # validate_order_form asks the shop: an unknown number is refused and asked again.
    assert await say(client, "d2", "帮我查一下退款进度") == [ASK]
    assert await say(client, "d2", "Z99999999") == ["抱歉，没有查到订单Z99999999，请核对后重新发送。", ASK]
    assert await say(client, "d2", "C24681357") == [
        "您好，订单C24681357的退款（¥199.00）：退款审核已通过，已原路退回，银行处理中，预计1–5个工作日到账。"
    ]


async def test_the_demo_package_runs_unchanged_on_a_rasa_action_server(
    aiohttp_client: Any, settings_factory: Callable[..., Any], shop_port: int
) -> None:
    settings = settings_factory(
        kb={"paths": [str(CONFIG_FAQ)]},
        actions={"serve_apps": {"gateway.demo.shop_api:create_app": shop_port}, "timeout_s": 20},
    )
    assert os.environ["KEFU_DEMO_SHOP_URL"].endswith(str(shop_port))  # inherited by the subprocess
    with rasa_action_server("gateway.demo.shop_actions") as url:
        remote = settings.model_copy(update={"actions": settings.actions.model_copy(update={"url": url})})
        client = await aiohttp_client(create_app(remote))
        assert await say(client, "d3", "我的快递到哪了？A12345678") == [ARRIVED]
