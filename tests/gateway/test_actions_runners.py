"""The two action runners against real rasa-sdk: the `python -m rasa_sdk` server over HTTP, and in-process."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.actions.protocol import HistoryItem, build_request, parse_response
from gateway.actions.runners import ActionFailed, InProcessRunner, RemoteRunner
from tests.fakes.action_servers import TEST_ACTIONS, broken_action_server, free_port, rasa_action_server

DOMAIN = {
    "slots": {"order_id": {"type": "any", "mappings": [{"type": "custom"}]}},
    "forms": {"order_form": {"required_slots": ["order_id"]}},
}


def request(action: str, **extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict(
        action=action,
        sender_id="web:default:visitor-1",
        text="A12345678",
        intent="track-order",
        confidence=0.9,
        slots={"order_id": "A12345678"},
        entities={"order_id": "A12345678"},
        history=[HistoryItem("in", "我的快递到哪了", datetime(2026, 12, 6, tzinfo=UTC), "track-order")],
        domain=DOMAIN,
        channel="web",
    )
    base.update(extra)
    return build_request(**base)


@pytest.fixture(scope="module")
def action_server() -> Iterator[str]:
    with rasa_action_server() as url:
        yield url


@pytest.fixture(params=["remote", "in_process"])
async def runner(request: pytest.FixtureRequest) -> Any:
    if request.param == "remote":
        runner: Any = RemoteRunner(request.getfixturevalue("action_server"), timeout_s=10)
    else:
        runner = InProcessRunner([TEST_ACTIONS], timeout_s=10)
    await runner.start()
    yield runner
    await runner.close()


async def test_actions_are_listed(runner: Any) -> None:
    names = await runner.names()
    assert {"action_order_status", "action_tracked", "validate_order_form"} <= set(names)


async def test_text_buttons_and_slot_events(runner: Any) -> None:
    response = await runner.run(request("action_order_status"))
    assert [r.text for r in response.replies] == ["您的订单A12345678已到达【上海转运中心】"]
    assert response.replies[0].suggestions == ("催件", "转人工")
    assert dict(response.slot_sets) == {"last_order": "A12345678"}


async def test_the_tracker_is_the_conversation(runner: Any) -> None:
    response = await runner.run(request("action_tracked"))
    text = response.replies[0].text
    assert "sender=web:default:visitor-1 intent=track-order order=A12345678" in text
    assert "users=2" in text  # the earlier message and this one


async def test_sync_actions_run_in_a_worker_thread_in_process() -> None:
    runner = InProcessRunner([TEST_ACTIONS], timeout_s=10)
    response = await runner.run(request("action_tracked"))
    assert "thread=worker" in response.replies[0].text


async def test_handoff_followup_and_image(runner: Any) -> None:
    handoff = await runner.run(request("action_refund_dispute"))
    assert handoff.handoff_reason == "refund_dispute"
    assert [r.text for r in handoff.replies] == ["这笔退款需要人工核实，正在为您转接。"]
    chain = await runner.run(request("action_chain"))
    assert chain.followup == "action_order_status"
    picture = await runner.run(request("action_picture"))
    assert picture.replies[0].image == "https://img.example.com/p/1.png"


async def test_form_validation_rejects_a_value(runner: Any) -> None:
    call = request(
        "validate_order_form",
        slots={"requested_slot": "order_id"},
        candidates={"order_id": "Z00000000"},
        active_form="order_form",
    )
    response = await runner.run(call)
    assert response.slot_sets.get("order_id", "missing") is None
    assert [r.text for r in response.replies] == ["抱歉，没有找到订单Z00000000。"]


async def test_an_exception_and_an_unknown_action_fail_cleanly(runner: Any) -> None:
    with pytest.raises(ActionFailed) as boom:
        await runner.run(request("action_boom"))
    assert boom.value.action == "action_boom"
    assert boom.value.kind in ("exception", "http_5xx")  # in-process it is the exception; remote, a 500
    with pytest.raises(ActionFailed) as unknown:
        await runner.run(request("action_nope"))
    assert unknown.value.kind == "not_found"


async def test_timeouts() -> None:
    runner = InProcessRunner([TEST_ACTIONS], timeout_s=0.2)
    with pytest.raises(ActionFailed) as failed:
        await runner.run(request("action_slow"))
    assert failed.value.kind == "timeout"


async def test_a_server_that_is_down() -> None:
    runner = RemoteRunner(f"http://127.0.0.1:{free_port()}/webhook", timeout_s=2)
    try:
        with pytest.raises(ActionFailed) as failed:
            await runner.run(request("action_order_status"))
        assert failed.value.kind == "down"
    finally:
        await runner.close()


@pytest.mark.parametrize(
    ("mode", "kind"),
    [("500", "http_5xx"), ("html", "malformed"), ("shape", "malformed"), ("slow", "timeout")],
)
async def test_a_misbehaving_server(aiohttp_server: Any, mode: str, kind: str) -> None:
    server = await aiohttp_server(broken_action_server())
    runner = RemoteRunner(str(server.make_url(f"/webhook/{mode}")), timeout_s=0.3)
    try:
        with pytest.raises(ActionFailed) as failed:
            await runner.run(request("action_order_status"))
        assert (failed.value.action, failed.value.kind) == ("action_order_status", kind)
    finally:
        await runner.close()


def test_parse_response_refuses_off_shape_bodies() -> None:
    for body in ([], {"events": {}}, {"events": [{"name": "x"}]}, {"responses": ["text"]}):
        with pytest.raises(ValueError):
            parse_response(body)
    assert parse_response({"events": [], "responses": []}).replies == ()


def test_a_gateway_without_actions_does_not_import_rasa_sdk() -> None:
    import subprocess
    import sys

    code = "import sys, gateway.app, gateway.cli; print('rasa_sdk' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"
