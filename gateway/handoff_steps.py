"""A message's handoff step, run after its webhook answered: per conversation in order, bounded.

A handoff's step (route, enqueue, the 留言 or queue notice, the console event, the assignment) and a queued
customer's message's step (the console event, the acknowledgement) were awaited by the webhook: under a
rush the handoff's answer waited for a few more reads and writes than a FAQ answer does, which made the
tail of the handoff mix's latency. The step's outcome never goes in the webhook's answer (its notices
go through the outbox, `NOTICE_DELAY` after they are stored), so the answer need not wait for it.

What the webhook's wait gave is kept:
- Order: the steps of one conversation run one after another, in the order of its messages (a second
  message is acknowledged as an addition to the 留言 its first created, not as a place in a queue).
- Back-pressure: with more than `MAX_BEHIND` conversations' steps running, a webhook waits for its own
  step as before, so an overload slows the answers instead of piling up steps and their memory.
- Shutdown: the steps are the runtime's background tasks, which `Runtime.drain_tasks` lets finish first.
A crash before a step is stored loses it, as it did while the webhook waited (the platform's retry of
that message is a duplicate, which has no step); the conversation itself is queued by the message's own
unit of work, and the periodic assigner serves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.runtime import Runtime

logger = logging.getLogger(__name__)

# Conversations whose step may run behind their answered webhook; past this a webhook waits for its own.
MAX_BEHIND = 256


class HandoffSteps:
    """Runs each conversation's handoff steps in order, after the webhooks that raised them answered."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.max_behind = MAX_BEHIND
        self._last: dict[int, asyncio.Task[None]] = {}  # each conversation's newest step

    async def follow(self, conversation_id: int, step: Callable[[], Awaitable[None]]) -> None:
        """Run `step` after the conversation's earlier steps; return at once unless too many are behind."""
        earlier = self._last.get(conversation_id)
        task = self.runtime.spawn(
            self._run(conversation_id, earlier, step), name=f"handoff-step-{conversation_id}", awaited=True
        )
        self._last[conversation_id] = task
        self.runtime.metrics.handoff_steps_behind.set(len(self._last))
        task.add_done_callback(lambda done: self._done(conversation_id, done))
        if len(self._last) > self.max_behind:
            await asyncio.shield(task)  # back-pressure: this webhook waits for its own step

    async def _run(
        self, conversation_id: int, earlier: asyncio.Task[None] | None, step: Callable[[], Awaitable[None]]
    ) -> None:
        if earlier is not None:
            with contextlib.suppress(Exception):  # it logged its own failure; this step goes on
                await earlier
        try:
            await step()
        except Exception:
            # The customer's message is stored; the periodic job re-runs assignment.
            logger.exception("handoff: follow-up of conversation %s failed", conversation_id)

    def _done(self, conversation_id: int, task: asyncio.Task[None]) -> None:
        if self._last.get(conversation_id) is task:
            del self._last[conversation_id]
            self.runtime.metrics.handoff_steps_behind.set(len(self._last))

    async def settled(self) -> None:
        """Wait until no step runs (tests; a shutdown waits through `Runtime.drain_tasks`)."""
        while self._last:
            await asyncio.gather(*self._last.values(), return_exceptions=True)
