"""One OneBot v11 reverse-WebSocket connection: API calls out (`{"action","params","echo"}`) matched to
their responses (`{"status","retcode","data","echo"}`) by echo, with timeouts.

The OneBot implementation (NapCat, Lagrange, go-cqhttp, LLOneBot) is the WebSocket client; kefu is the
server. Events arriving on the same socket are handed to the adapter; this class only does the API side.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from gateway.channels.base import SendError

logger = logging.getLogger(__name__)

ROLES = ("universal", "api", "event")  # X-Client-Role values (case-insensitive)
DEFAULT_API_TIMEOUT_S = 10.0


class OneBotConnection:
    """A connected OneBot client: its role, its self id and the API calls waiting for an answer."""

    _ids = itertools.count(1)  # echo values unique across connections, so a late answer never matches

    def __init__(self, ws: web.WebSocketResponse, role: str, self_id: str | None) -> None:
        self.ws = ws
        self.role = role
        self.self_id = self_id
        self._pending: dict[str, asyncio.Future[Mapping[str, Any]]] = {}
        self.closed_reason: str | None = None

    def __repr__(self) -> str:
        return f"OneBotConnection(role={self.role!r}, self_id={self.self_id!r})"

    @property
    def api_capable(self) -> bool:
        """Universal and API clients answer API calls."""
        return self.role in ("universal", "api")

    @property
    def event_capable(self) -> bool:
        """Universal and Event clients push events."""
        return self.role in ("universal", "event")

    @property
    def open(self) -> bool:
        """True while API calls can be sent."""
        return self.closed_reason is None and not self.ws.closed

    async def call(self, action: str, params: Mapping[str, Any], timeout_s: float) -> Mapping[str, Any]:
        """Send one API frame and wait for its response frame; SendError(retryable) on timeout or close."""
        if not self.open:
            raise SendError(
                f"OneBot reverse WebSocket is closed ({self.closed_reason or 'closed'})", retryable=True
            )
        echo = f"kefu-{next(self._ids)}"
        future: asyncio.Future[Mapping[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[echo] = future
        try:
            try:
                await self.ws.send_json({"action": action, "params": dict(params), "echo": echo})
            except (ConnectionError, RuntimeError) as exc:
                # aiohttp raises ConnectionResetError / RuntimeError when the socket is closing.
                raise SendError(
                    f"OneBot reverse WebSocket send failed: {type(exc).__name__}", retryable=True
                ) from None
            try:
                async with asyncio.timeout(timeout_s):
                    return await future
            except TimeoutError:
                # The frame went out: the implementation may have sent the message all the same.
                raise SendError(
                    f"OneBot API call {action} got no answer within {timeout_s:g}s (reverse WebSocket)",
                    retryable=True,
                    maybe_delivered=True,
                ) from None
        finally:
            self._pending.pop(echo, None)

    def resolve(self, frame: Mapping[str, Any]) -> bool:
        """Hand a response frame to the call waiting for its echo; False when nobody waits (late or foreign)."""
        future = self._pending.get(str(frame.get("echo")))
        if future is None or future.done():
            return False
        future.set_result(frame)
        return True

    def fail_all(self, reason: str) -> None:
        """The socket is gone: every waiting call fails now (the outbox retries) instead of at its timeout."""
        self.closed_reason = self.closed_reason or reason
        for future in self._pending.values():
            if not future.done():
                # Its frame went out before the socket went: the message may have been sent.
                future.set_exception(
                    SendError(f"OneBot reverse WebSocket {reason}", retryable=True, maybe_delivered=True)
                )
        self._pending.clear()

    async def close(self, reason: str, code: int = 1000) -> None:
        """Close the socket (e.g. replaced by a newer connection of the same bot)."""
        self.fail_all(reason)
        if not self.ws.closed:
            await self.ws.close(code=code, message=reason.encode("utf-8")[:120])
