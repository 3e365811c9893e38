"""A task that does one thing each time a wake-up flag is set (or every poll interval), until stopped.

The outbox worker and the agent console's and web visitor's sockets run this way. Stopping sets a flag as
well as cancelling: on Python 3.11, `asyncio.wait_for` returns normally when a cancel arrives just as the
awaited flag is set, so a cancel alone can be lost and the loop would poll on for ever, holding up the
shutdown that waits for it (the outbox worker hung a CI run exactly so).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


class WakeLoop:
    """Runs `step()` after each wake-up of `flag`, and at least every `poll_s`, while `alive()` holds;
    with `step_first`, once at the start too. `step` returning False ends the loop (e.g. the socket was
    reset). A wake-up that comes while a step runs is kept: the next wait ends at once."""

    def __init__(
        self,
        flag: asyncio.Event,
        poll_s: float,
        step: Callable[[], Awaitable[bool]],
        alive: Callable[[], bool] = lambda: True,
        *,
        step_first: bool = False,
    ) -> None:
        self._flag = flag
        self._poll_s = poll_s
        self._step = step
        self._alive = alive
        self._step_first = step_first
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self, name: str) -> None:
        self._task = asyncio.create_task(self._run(), name=name)
        self._task.add_done_callback(_said_if_failed)

    @property
    def task(self) -> asyncio.Task[None] | None:
        """The loop's task while it is started and not yet stopped."""
        return self._task

    @property
    def stopping(self) -> bool:
        """Set by stop(): a step that loops by itself checks it between rounds."""
        return self._stopping

    async def stop(self, *, finish_s: float = 0.0) -> None:
        """End the loop and wait for it: a step under way gets `finish_s` to end, then is cancelled."""
        self._stopping = True
        task, self._task = self._task, None
        if task is None:
            return
        if finish_s > 0:
            self._flag.set()  # a loop waiting for a wake-up sees the flag and returns
            await asyncio.wait({task}, timeout=finish_s)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def _run(self) -> None:
        wait = not self._step_first
        while self._alive() and not self._stopping:
            if wait:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flag.wait(), self._poll_s)
                if self._stopping:
                    return
                self._flag.clear()
            wait = True
            if not await self._step():
                return


def _said_if_failed(task: asyncio.Task[None]) -> None:
    # A step that raised ends the loop (a socket no longer pushed to): said when it happens, not swallowed
    # by the stop() that comes later.
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.error("%s ended: its step failed", task.get_name(), exc_info=error)
