"""The handoff service's periodic job in the app's lifetime (cleanup_ctx): idle sweep, first-response
notices and catch-up assignment every `handoff.job_interval_s` (HandoffService.run_jobs)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from gateway.keys import HANDOFF


async def handoff_jobs(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the periodic handoff job; on shutdown, close the agent WebSockets."""
    service = app[HANDOFF]
    task = asyncio.create_task(service.run_jobs(), name="kefu-handoff-jobs")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    for ws in list(service.sockets):
        with contextlib.suppress(Exception):
            await ws.close(code=1001, message=b"server shutdown")
