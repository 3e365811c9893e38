"""Custom actions end to end over the web channel: forms, slots, validation, handoffs and every failure.

A customer talks to a running gateway over real HTTP; the actions are the rasa-sdk test package, run
in-process (`actions.modules`) or by a real `python -m rasa_sdk` server (`actions.url`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gateway.actions.service import ERROR_HANDOFF, ERROR_OFFER
from gateway.app import create_app
from gateway.keys import RUNTIME
from tests.conftest import FIXTURES
from tests.fakes.action_servers import TEST_ACTIONS, free_port, rasa_action_server

ACTIONS_FAQ = FIXTURES / "faq_actions"
ASK_ORDER = "您好，请告诉我您的订单号（一个字母加8位数字），我帮您查询。"


@pytest.fixture(scope="module")
def action_server() -> Iterator[str]:
    with rasa_action_server() as url:
        yield url


@pytest.fixture
def make_client(
    aiohttp_client: Any, settings_factory: Callable[..., Any], faq_dir: Path
) -> Callable[..., Any]:
    async def make(**actions: Any) -> Any:
        actions.setdefault("timeout_s", 20)  # generous: a loaded CI machine is not an action timing out
        settings = settings_factory(kb={"paths": [str(faq_dir), str(ACTIONS_FAQ)]}, actions=actions)
        return await aiohttp_client(create_app(settings))

    return make


@pytest.fixture(params=["in_process", "remote"])
async def client(request: pytest.FixtureRequest, make_client: Callable[..., Any]) -> Any:
    if request.param == "in_process":
        return await make_client(modules=[TEST_ACTIONS])
    return await make_client(url=request.getfixturevalue("action_server"))


async def say(client: Any, user: str, text: str, **extra: Any) -> dict[str, Any]:
    resp = await client.post("/web/messages", json={"user_id": user, "text": text, **extra})
    assert resp.status == 200, await resp.text()
    return await resp.json()


def texts(body: dict[str, Any]) -> list[str]:
    return [r["text"] for r in body["replies"]]


async def test_a_form_asks_for_the_order_number_then_the_action_answers(client: Any) -> None:
    assert texts(await say(client, "v1", "我的快递到哪了")) == [ASK_ORDER]
    answer = await say(client, "v1", "A12345678")
    assert texts(answer) == ["您的订单A12345678已到达【上海转运中心】"]
    assert answer["replies"][0]["suggestions"] == ["催件", "转人工"]
    # The slot is remembered for the conversation: the next action needs no question.
    detail = texts(await say(client, "v1", "查一下订单详情"))
    assert detail[0].startswith("sender=web:default:v1 intent=order-detail order=A12345678")


async def test_a_question_that_carries_its_slot_runs_at_once(client: Any) -> None:
    assert texts(await say(client, "v2", "我的快递到哪了？订单号B87654321")) == [
        "您的订单B87654321已到达【上海转运中心】"
    ]


async def test_validate_form_rejects_a_value_and_asks_again(client: Any) -> None:
    await say(client, "v3", "我的快递到哪了")
    assert texts(await say(client, "v3", "Z00000000")) == ["抱歉，没有找到订单Z00000000。", ASK_ORDER]
    assert texts(await say(client, "v3", "A12345678")) == ["您的订单A12345678已到达【上海转运中心】"]


async def test_leaving_a_form(client: Any) -> None:
    await say(client, "v4a", "我的快递到哪了")
    assert texts(await say(client, "v4a", "取消")) == ["好的，已为您取消。还有其他可以帮您的吗？"]
    # A clearly different question leaves the form and gets its FAQ answer.
    await say(client, "v4b", "我的快递到哪了")
    assert texts(await say(client, "v4b", "怎么开发票"))[0].startswith("您好，确认收货后")
    assert texts(await say(client, "v4b", "A12345678")) != ["您的订单A12345678已到达【上海转运中心】"]
    # 转人工 inside a form is a handoff like anywhere else.
    await say(client, "v4c", "我的快递到哪了")
    await say(client, "v4c", "转人工")
    runtime = client.server.app[RUNTIME]
    (conversation,) = await runtime.store.conversations_for_key("web:default:v4c")
    assert conversation.state.value in ("queued", "assigned") and conversation.handoff_reason == "asked_human"


async def test_an_action_can_hand_off_with_its_reason(client: Any) -> None:
    body = await say(client, "v5", "退款被拒绝了")
    assert texts(body) == ["这笔退款需要人工核实，正在为您转接。"]
    runtime = client.server.app[RUNTIME]
    (conversation,) = await runtime.store.conversations_for_key("web:default:v5")
    assert conversation.handoff_reason == "action:refund_dispute"


async def test_an_image_goes_as_its_link(client: Any) -> None:
    assert texts(await say(client, "v6", "给我看看商品图片")) == [
        "这是商品图：\nhttps://img.example.com/p/1.png"
    ]


async def test_a_platform_retry_does_not_run_the_action_twice(client: Any) -> None:
    first = await say(client, "v7", "我的快递到哪了？B87654321", message_id="m-1")
    again = await say(client, "v7", "我的快递到哪了？B87654321", message_id="m-1")
    assert again["duplicate"] is True and again["replies"] == first["replies"]


async def test_an_exception_in_an_action_gets_an_apology_and_a_next_step(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.actions.service")
    body = await say(client, "v8", "我还有多少积分")
    (reply,) = body["replies"]
    assert reply["text"].startswith(ERROR_OFFER) and "「我的」→「积分」" in reply["text"]
    assert reply["suggestions"] == ["转人工"]
    assert any("action action_boom failed" in r.getMessage() for r in caplog.records)
    metrics = (await (await client.get("/metrics")).read()).decode()
    assert 'kefu_action_failures_total{action="action_boom"' in metrics
    # The message and the apology are stored like any other.
    runtime = client.server.app[RUNTIME]
    (conversation,) = await runtime.store.conversations_for_key("web:default:v8")
    stored = await runtime.store.messages(conversation.id)
    assert [m.direction for m in stored] == ["in", "out"]
    assert stored[0].reason in ("action_error:exception", "action_error:http_5xx")  # remote: the server's 500


async def test_a_timeout_with_on_error_handoff(make_client: Callable[..., Any]) -> None:
    client = await make_client(modules=[TEST_ACTIONS], timeout_s=0.2, on_error="handoff")
    body = await say(client, "v9", "这个商品还有货吗")
    assert texts(body) == [ERROR_HANDOFF]
    runtime = client.server.app[RUNTIME]
    (conversation,) = await runtime.store.conversations_for_key("web:default:v9")
    assert (
        conversation.state.value in ("queued", "assigned") and conversation.handoff_reason == "action_error"
    )


async def test_an_action_server_that_is_down(make_client: Callable[..., Any]) -> None:
    client = await make_client(url=f"http://127.0.0.1:{free_port()}/webhook", timeout_s=1)
    await say(client, "v10", "我的快递到哪了")
    body = await say(client, "v10", "A12345678")
    (reply,) = body["replies"]
    assert reply["text"].startswith(ERROR_OFFER) and reply["suggestions"] == ["转人工"]
    # The form is over, the slot is kept: asking again runs the action without re-asking.
    again = texts(await say(client, "v10", "我的快递到哪了"))
    assert again[0].startswith(ERROR_OFFER)


async def test_a_rule_intent_can_run_an_action(client: Any) -> None:
    assert texts(await say(client, "v11", "帮我催一下快递")) == [ASK_ORDER]
    assert texts(await say(client, "v11", "A12345678")) == ["您的订单A12345678已到达【上海转运中心】"]
    # The button the action offered comes back as text and triggers the intent; the slot is known now.
    assert texts(await say(client, "v11", "催件")) == ["您的订单A12345678已到达【上海转运中心】"]


async def test_an_unanswered_form_expires(client: Any) -> None:
    assert texts(await say(client, "v12", "我的快递到哪了")) == [ASK_ORDER]
    service = client.server.app[RUNTIME].pipeline.actions
    later = datetime.now(UTC) + timedelta(minutes=31)
    service.clock = lambda: later
    # Within the form a greeting would be "not understood, please send the order number"; after the
    # form's TTL it is just a greeting again.
    reply = texts(await say(client, "v12", "你好"))
    assert reply and not any(ASK_ORDER in text for text in reply)
    assert texts(await say(client, "v12", "A12345678")) != ["您的订单A12345678已到达【上海转运中心】"]
