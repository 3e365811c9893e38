"""`kefu serve`'s shutdown order (gateway.serve.shut_down), through aiohttp's own runner: what must be done
before aiohttp marks the open connections closing and waits for their handlers."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web

from gateway.app import create_app
from gateway.keys import HANDOFF, RUNTIME
from gateway.serve import shut_down
from handoff.agents import Role, new_token


async def test_the_agents_consoles_are_closed_before_aiohttp_waits_for_open_handlers(
    settings_factory: Any,
) -> None:
    # Regression: the console sockets were closed only by a clean-up context, after aiohttp's wait for
    # open handlers; each blocks in receive(), so one open console held the shutdown for aiohttp's two
    # 10-s waits (21.6 s measured), past the 20 s after which `kefu serve --workers` kills a worker.
    app = create_app(settings_factory())
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    plain, hashed = new_token()
    await app[RUNTIME].handoff.db.add_agent(
        "小郑", role=Role.AGENT, groups=["售后"], max_chats=3, token_hash=hashed
    )
    sockets = app[HANDOFF].sockets
    seen: list[list[bool]] = []
    wait_for_handlers = runner.server.shutdown  # type: ignore[union-attr]

    async def recorded(*args: Any) -> None:
        seen.append([ws.closed for ws in sockets])  # what is still open when aiohttp starts waiting
        await wait_for_handlers(*args)

    runner.server.shutdown = recorded  # type: ignore[method-assign,union-attr]
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(
            f"http://127.0.0.1:{port}/api/v1/agent/ws", headers={"Authorization": f"Bearer {plain}"}
        )
        assert (await ws.receive_json(timeout=5))["type"] == "hello"
        assert len(sockets) == 1
        await shut_down(runner, site)
        assert seen == [[]] or seen == [[True]]
        message = await ws.receive(timeout=5)
        assert message.type is aiohttp.WSMsgType.CLOSE and message.data == 1001
