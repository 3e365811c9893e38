"""Typing notices over the real sockets: the visitor's tab → the agent serving them, and the agent's console →
the visitor's tabs; throttled (an injected clock), never stored, never shown to anyone else."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.app import create_app
from gateway.keys import RUNTIME
from tests.gateway.test_agent_api import make_agent
from tests.gateway.test_handoff_flow import handoff_section
from tests.gateway.test_web_ws import frame_where

VISITOR = "vtyping0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def until_pong(ws: Any) -> list[dict[str, Any]]:
    """The frames that arrived before the answer to a ping just sent."""
    frames = []
    while (frame := await ws.receive_json(timeout=5))["type"] != "pong":
        frames.append(frame)
    return frames


@pytest.fixture
async def gateway(aiohttp_client: Any, settings_factory: Any) -> Any:
    return await aiohttp_client(create_app(settings_factory(handoff=handoff_section(assignment="manual"))))


async def test_typing_goes_both_ways_between_a_visitor_and_their_agent(gateway: Any) -> None:
    clock = Clock()
    gateway.app[RUNTIME].typing.clock = clock
    tab = await gateway.ws_connect(f"/web/ws?visitor={VISITOR}")
    assert (await tab.receive_json(timeout=5))["type"] == "history"
    await tab.send_json({"type": "message", "client_id": "c1", "text": "我要投诉"})
    await frame_where(tab, lambda f: f["type"] == "ack")

    agent = await make_agent(gateway, "小王")
    colleague = await make_agent(gateway, "小张")
    queue = await agent.call("GET", "/queue")
    cid = queue["queue"][0]["conversation_id"]
    await agent.call("POST", f"/conversations/{cid}/claim")
    console, other = await agent.ws(), await colleague.ws()

    await tab.send_json({"type": "typing"})
    seen = await frame_where(console, lambda f: f["type"] == "typing")
    assert seen == {"type": "typing", "conversation_id": cid, "who": "customer"}

    await console.send_json({"type": "typing", "conversation_id": cid})
    assert (await frame_where(tab, lambda f: f["type"] == "typing")) == {"type": "typing", "who": "agent"}

    # A colleague typing into a conversation that is not theirs shows nothing; within the throttle window a
    # second notice is dropped; after it the next one goes through. Pings prove the frames were read.
    clock.now += 10
    await other.send_json({"type": "typing", "conversation_id": cid})
    await other.send_json({"type": "ping"})
    await frame_where(other, lambda f: f["type"] == "pong")
    await tab.send_json({"type": "typing"})
    await tab.send_json({"type": "typing"})
    await tab.send_json({"type": "ping"})
    assert not [f for f in await until_pong(tab) if f["type"] == "typing"]  # not the colleague's
    clock.now += 10
    await tab.send_json({"type": "typing"})
    await tab.send_json({"type": "ping"})
    await frame_where(tab, lambda f: f["type"] == "pong")
    await console.send_json({"type": "ping"})
    frames = await until_pong(console)
    assert [f for f in frames if f["type"] == "typing"] == [seen, seen]  # one per window
    assert not [f for f in frames if f.get("event") == "typing"]  # nothing stored as an event
    for ws in (tab, console, other):
        await ws.close()
