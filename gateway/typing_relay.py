"""Typing notices between a web visitor and the agent serving them: in-process, throttled, never stored.

A notice is worth nothing a few seconds later, so it skips the outbox and `agent_events`; with several
gateway processes a notice reaches only the sockets of the process that received it (best effort).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

Send = Callable[[dict[str, Any]], Awaitable[None]]
# At most one notice per conversation and direction in this window (pages send one every ~2 s while typing).
THROTTLE_S = 1.5


class TypingRelay:
    """Agent sockets by agent id, and a per-key throttle for both directions."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._agents: dict[str, set[Send]] = {}
        self._last: dict[tuple[str, str], float] = {}

    def join(self, agent_id: str, send: Send) -> None:
        """An agent's console socket opened."""
        self._agents.setdefault(agent_id, set()).add(send)

    def leave(self, agent_id: str, send: Send) -> None:
        """An agent's console socket closed."""
        sends = self._agents.get(agent_id)
        if sends is not None:
            sends.discard(send)
            if not sends:
                self._agents.pop(agent_id, None)

    def allow(self, direction: str, key: str) -> bool:
        """True when a notice for this conversation and direction may go now (else it is dropped)."""
        now = self.clock()
        last = self._last.get((direction, key))
        if last is not None and now - last < THROTTLE_S:
            return False
        if len(self._last) > 10_000:  # old entries are worthless: start afresh rather than grow
            self._last.clear()
        self._last[(direction, key)] = now
        return True

    async def to_agent(self, agent_id: str, conversation_id: int) -> None:
        """Tell the agent's open consoles that the customer of this conversation is typing."""
        frame = {"type": "typing", "conversation_id": conversation_id, "who": "customer"}
        for send in list(self._agents.get(agent_id, ())):
            with contextlib.suppress(Exception):  # a closing socket: the notice is not worth an error
                await send(frame)
