"""The agent WebSocket over real HTTP (SQLite and PostgreSQL): auth before the upgrade, pushed events with
sequence numbers, resume after a reconnect (also across a restart), and the heartbeat driving presence."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import socket
import struct
from typing import Any

import aiohttp
import pytest

from gateway.app import create_app
from gateway.http import agent_ws
from gateway.keys import HANDOFF
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
    ws = await second.ws_connect("/api/v1/agent/ws", headers=a.headers)
    hello = await ws.receive_json(timeout=5)
    await ws.send_json({"type": "resume", "after": seen["seq"]})
    events = await events_until_resumed(ws)
    seqs = [e["seq"] for e in events]
    # Exactly once, nothing from before the cursor again. Events newer than the cursor are all due, also
    # ones of the first conversation (its notice's delivery update may be stored after the cursor).
    assert len(set(seqs)) == len(seqs) and min(seqs) > seen["seq"]
    assert [e["conversation_id"] for e in events if e["event"] == "ticket.created"] == [cid2]
    # In order: the replayed ones (stored before this socket opened), and those pushed live since.
    replayed = [s for s in seqs if s <= hello["seq"]]
    live = [s for s in seqs if s > hello["seq"]]
    assert replayed == sorted(replayed) and live == sorted(live) and replayed
    # Resuming again from the same cursor sends nothing this socket already sent.
    await ws.send_json({"type": "resume", "after": seen["seq"]})
    assert not {e["seq"] for e in await events_until_resumed(ws)} & set(seqs)
    await ws.send_json({"type": "resume", "after": -1})
    assert (await next_frame(ws))["type"] == "error"
    await ws.close()


async def events_until_resumed(ws: Any) -> list[dict[str, Any]]:
    """The events pushed on `ws` up to the `resumed` answer."""
    events = []
    while (frame := await ws.receive_json(timeout=5))["type"] != "resumed":
        if frame["type"] == "event":
            events.append(frame)
    return events


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


async def test_a_console_that_hangs_up_at_the_upgrade_leaves_nothing_behind(
    gateway: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Found by fault injection: a console reset right after its upgrade made the hello's write raise before
    # the socket's clean-up was in place: "database error on GET /api/v1/agent/ws" with a traceback, and the
    # agent's open connection counted for good (closing their real console no longer took them offline).
    a = await make_agent(gateway, "丁")
    caplog.set_level(logging.INFO)
    for _ in range(3):
        await _reset_after_upgrade(gateway, a.headers["Authorization"])
    await eventually(lambda: _no_sockets(gateway))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    ws = await a.ws()
    await ws.send_json({"type": "ping"})
    assert (await next_frame(ws))["type"] == "pong"
    assert await _presence(a, "online")
    await ws.close()
    await eventually(lambda: _presence(a, "offline"))  # at once: no connection of the resets still counted


async def _reset_after_upgrade(gateway: Any, authorization: str) -> None:
    """Upgrade, then reset the connection (SO_LINGER 0) as soon as the 101 is read: the server is still
    between its upgrade and the hello (a presence write and a read of the event cursor)."""
    reader, writer = await asyncio.open_connection(gateway.server.host, gateway.server.port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /api/v1/agent/ws HTTP/1.1\r\nHost: kefu\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: {authorization}\r\n\r\n".encode()
    )
    await writer.drain()
    assert (await reader.readline()).startswith(b"HTTP/1.1 101")
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()


async def _no_sockets(gateway: Any) -> bool:
    return not gateway.app[HANDOFF].sockets
