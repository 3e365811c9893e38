"""The agent WebSocket over real HTTP (SQLite and PostgreSQL): auth before the upgrade, pushed events with
sequence numbers, resume after a reconnect (also across a restart), and the heartbeat driving presence."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import aiohttp
import pytest

from gateway.app import create_app
from gateway.http import agent_ws
from tests.gateway.test_agent_api import complaint, customer_says, make_agent
from tests.gateway.test_handoff_flow import handoff_section, next_event
from tests.waiting import eventually


@pytest.fixture
def settings(settings_factory: Any) -> Any:
    return settings_factory(handoff=handoff_section(assignment="manual", heartbeat_timeout_s=30))


@pytest.fixture
async def gateway(aiohttp_client: Any, settings: Any) -> Any:
    return await aiohttp_client(create_app(settings))


async def test_a_bad_token_is_refused_before_the_upgrade(gateway: Any) -> None:
    for kwargs in ({}, {"params": {"token": "kefu_wrong"}}, {"headers": {"Authorization": "Bearer x"}}):
        with pytest.raises(aiohttp.WSServerHandshakeError) as err:
            await gateway.ws_connect("/api/v1/agent/ws", **kwargs)
        assert err.value.status == 401


async def test_token_in_the_query_string_works_and_ping_makes_the_agent_online(gateway: Any) -> None:
    a = await make_agent(gateway, "甲")
    ws = await gateway.ws_connect("/api/v1/agent/ws", params={"token": a.token})
    hello = await ws.receive_json(timeout=5)
    assert hello["type"] == "hello" and hello["agent"]["name"] == "甲"
    await ws.send_json({"type": "ping"})
    assert (await next_frame(ws))["type"] == "pong"
    assert (await a.call("GET", "/me"))["presence"] == "online"
    await ws.send_json({"type": "dance"})
    assert (await next_frame(ws))["type"] == "error"
    await ws.close()
    await eventually(lambda: _presence(a, "offline"))


async def next_frame(ws: Any) -> dict[str, Any]:
    """The next frame that is not a pushed event (pong, error, resumed)."""
    while (frame := await ws.receive_json(timeout=5))["type"] == "event":
        pass
    return frame


async def _presence(console: Any, expected: str) -> bool:
    return (await console.call("GET", "/me"))["presence"] == expected


async def test_events_are_pushed_only_to_agents_who_may_see_them(gateway: Any) -> None:
    after = await make_agent(gateway, "售后甲")
    pre = await make_agent(gateway, "售前乙", ("售前",))
    ws_after, ws_pre = await after.ws(), await pre.ws()
    cid = await complaint(gateway, "w1")
    event = await next_event(ws_after, "conversation.queued", conversation_id=cid)
    assert event["seq"] > 0 and event["group"] == "售后"
    await after.call("POST", f"/conversations/{cid}/claim")
    assigned = await next_event(ws_after, "conversation.assigned", conversation_id=cid)
    assert assigned["data"]["agent_name"] == "售后甲" and assigned["seq"] > event["seq"]
    await customer_says(gateway, "w1", "快点处理")
    pushed = await next_event(ws_after, "message.customer", conversation_id=cid)
    assert pushed["data"]["text"] == "快点处理"
    # The 售前 console heard none of it (only its own presence change).
    heard = []
    with contextlib.suppress(TimeoutError):
        while True:
            heard.append(await ws_pre.receive_json(timeout=0.5))
    assert [f.get("conversation_id") for f in heard if f.get("conversation_id") is not None] == []
    await ws_after.close()
    await ws_pre.close()


async def test_a_reconnecting_console_resumes_what_it_missed_even_after_a_restart(
    aiohttp_client: Any, settings: Any
) -> None:
    first = await aiohttp_client(create_app(settings))
    a = await make_agent(first, "丙")
    ws = await a.ws()
    cid1 = await complaint(first, "r1")
    seen = await next_event(ws, "conversation.queued", conversation_id=cid1)
    await ws.close()
    await eventually(lambda: _presence(a, "offline"))
    # Missed: the console is disconnected (so nobody is online and it becomes a 留言).
    cid2 = await complaint(first, "r2")
    await first.close()

    second = await aiohttp_client(create_app(settings))
    a.client = second
    ws = await a.ws()
    await ws.send_json({"type": "resume", "after": seen["seq"]})
    missed = await next_event(ws, "ticket.created")
    assert missed["conversation_id"] == cid2 and missed["seq"] > seen["seq"]
    while (frame := await ws.receive_json(timeout=5))["type"] != "resumed":
        # Nothing from before the cursor again (a later event of cid1, e.g. its notice's delivery
        # report, may come: it is new).
        assert frame.get("seq", seen["seq"] + 1) > seen["seq"], frame
        assert (frame.get("event"), frame.get("conversation_id")) != ("conversation.queued", cid1)
    await ws.send_json({"type": "resume", "after": -1})
    assert (await next_frame(ws))["type"] == "error"
    await ws.close()


async def test_the_console_sends_its_token_as_a_subprotocol_not_in_the_url(
    gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    a = await make_agent(gateway, "丁")
    ws = await gateway.ws_connect("/api/v1/agent/ws", protocols=("kefu.agent", f"token.{a.token}"))
    assert ws.protocol == "kefu.agent"  # the token is never echoed back
    hello = await ws.receive_json(timeout=5)
    assert hello["type"] == "hello" and hello["agent"]["name"] == "丁"
    await ws.send_json({"type": "ping"})
    assert (await next_frame(ws))["type"] == "pong"
    await ws.close()

    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await gateway.ws_connect("/api/v1/agent/ws", protocols=("kefu.agent", "token.kefu_wrong"))
    assert err.value.status == 401
    # Without kefu.agent a browser would fail the handshake anyway: refused, the token not logged.
    with caplog.at_level(logging.DEBUG), pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await gateway.ws_connect("/api/v1/agent/ws", protocols=(f"token.{a.token}",))
    assert err.value.status == 400
    assert a.token not in caplog.text


async def test_a_token_in_the_url_still_works_with_a_one_time_deprecation_warning(
    gateway: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(agent_ws, "_query_token_warned", False)
    a = await make_agent(gateway, "戊")
    with caplog.at_level(logging.WARNING, logger="gateway.http.agent_ws"):
        for _ in range(2):
            ws = await gateway.ws_connect("/api/v1/agent/ws", params={"token": a.token})
            assert (await ws.receive_json(timeout=5))["type"] == "hello"
            await ws.close()
    warnings = [r for r in caplog.records if r.name == "gateway.http.agent_ws"]
    assert len(warnings) == 1 and "deprecated" in warnings[0].getMessage()
    assert a.token not in caplog.text
    # A bearer header or the subprotocol does not warn.
    caplog.clear()
    monkeypatch.setattr(agent_ws, "_query_token_warned", False)
    with caplog.at_level(logging.WARNING, logger="gateway.http.agent_ws"):
        ws = await a.ws()
        await ws.close()
        ws = await gateway.ws_connect("/api/v1/agent/ws", protocols=("kefu.agent", f"token.{a.token}"))
        await ws.close()
    assert not [r for r in caplog.records if r.name == "gateway.http.agent_ws"]
