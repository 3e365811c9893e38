"""Fake upstream platform APIs served by real aiohttp servers in tests (after opsdroid's connector tests)."""

from __future__ import annotations

import asyncio
from collections.abc import Sized
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


async def wait_for_count(items: Sized, received: asyncio.Event, count: int, within: float) -> None:
    """Wait until `items` (what a fake recorded) holds `count` entries; `received` is set on each new one."""

    async def until() -> None:
        while len(items) < count:
            received.clear()
            await received.wait()

    await asyncio.wait_for(until(), within)


@dataclass
class FakeUpstream:
    """What every fake platform API shares: its URL, the sends it accepted or saw, issued tokens."""

    url: str = ""  # set by start(): the base URL to configure
    token_fetches: int = 0
    token_latency_s: float = 0.0  # delay before every token answer (widens races in single-flight tests)
    messages: list[dict[str, Any]] = field(default_factory=list)  # sends the platform accepted
    attempts: list[dict[str, Any]] = field(default_factory=list)  # every send request, accepted or not
    _valid_tokens: set[str] = field(default_factory=set)
    received: asyncio.Event = field(default_factory=asyncio.Event)

    def app(self) -> web.Application:
        """The fake's routes (each fake defines them)."""
        raise NotImplementedError

    def expire_tokens(self) -> None:
        """Invalidate every issued token: the next send with one is refused as expired."""
        self._valid_tokens.clear()

    async def wait_for_messages(self, count: int, within: float = 15.0) -> list[dict[str, Any]]:
        """Wait until at least `count` sends were accepted (the outbox delivers in the background)."""
        await wait_for_count(self.messages, self.received, count, within)
        return self.messages

    async def start(self, aiohttp_server: Any) -> Any:
        """Serve on 127.0.0.1 through pytest-aiohttp's `aiohttp_server` fixture."""
        # No access log: it would print secrets and tokens from the query strings (the platform's side).
        server = await aiohttp_server(self.app(), access_log=None)
        self.url = str(server.make_url("")).rstrip("/")
        return self
