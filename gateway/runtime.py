"""The Runtime: everything a running gateway shares, in one object (`app[gateway.keys.RUNTIME]`).

Adapters receive it at construction (before startup) and use its resources when requests or sends
arrive (after startup): `http` exists only between startup and cleanup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from gateway.channels.base import ChannelAdapter
from gateway.channels.spool import Spool
from gateway.coord import Coordination
from gateway.jobs.outbox import Outbox
from gateway.kb_reload import KbService
from gateway.media import Media
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.settings import Settings
from gateway.storage import Store
from gateway.typing_relay import TypingRelay

if TYPE_CHECKING:
    from gateway.handoff_service import HandoffService

logger = logging.getLogger(__name__)

AdapterKey = tuple[str, str]  # (channel, account)


@dataclass(eq=False)
class Runtime:
    """Shared services of one gateway app."""

    settings: Settings
    store: Store
    kb: KbService
    pipeline: Pipeline
    outbox: Outbox
    metrics: Metrics
    adapters: dict[AdapterKey, ChannelAdapter] = field(default_factory=dict)
    # What several processes share (Redis with `redis.url`, this process's memory without).
    coord: Coordination = field(default_factory=Coordination)
    # Uploads, stored images and files, signed URLs (`uploads:`); its key is loaded at startup.
    media: Media | None = None
    # Typing notices between web visitors and agents (in-process, never stored).
    typing: TypingRelay = field(default_factory=TypingRelay)
    # The human side (queue, agents, CSAT); set by create_app.
    handoff: HandoffService | None = None
    # Late inbound messages, durable on disk until stored (gateway/channels/spool.py); None: in-memory db.
    spool: Spool | None = None
    # True under `kefu serve`: SIGHUP reloads the FAQ. Tests leave signals alone.
    handle_signals: bool = False
    _http: aiohttp.ClientSession | None = None
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def http(self) -> aiohttp.ClientSession:
        """The shared outbound HTTP session (platform APIs, web callbacks); exists while the app runs."""
        if self._http is None or self._http.closed:
            raise RuntimeError("the HTTP session exists only while the app is running")
        return self._http

    def attach_http(self, session: aiohttp.ClientSession | None) -> None:
        """Set (at startup) or clear (at cleanup) the shared outbound session."""
        self._http = session

    def add_adapter(self, adapter: ChannelAdapter) -> None:
        """Register a channel account; the outbox delivers its rows through it."""
        key = (adapter.channel, adapter.account)
        if key in self.adapters:
            raise ValueError(f"two adapters for {adapter.channel}/{adapter.account}")
        self.adapters[key] = adapter

    def spawn(
        self, coro: Coroutine[Any, Any, Any], *, name: str | None = None, awaited: bool = False
    ) -> asyncio.Task[Any]:
        """Run a background coroutine that the app tracks, logs if it fails, and cancels on shutdown.

        `awaited`: its caller reports a failure (it awaits the task, or logs what nobody awaited), so the
        runtime does not log it a second time."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard if awaited else self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def drain_tasks(self, grace_s: float = 5.0) -> None:
        """Let background tasks finish (up to grace_s), then cancel what is left."""
        if not self._tasks:
            return
        _done, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
