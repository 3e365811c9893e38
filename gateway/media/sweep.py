"""Uploads nobody sent: a visitor who picked a picture and closed the page, an agent's send that failed.

A stored file is kept while a message (or an outbox row) refers to its key; one that no row has used
`uploads.unsent_keep_h` hours after it was stored is deleted — by an hourly round of one process
(`job_lock`), and by `kefu purge`. Files of purged conversations go with them (`kefu purge`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from gateway.keys import RUNTIME
from gateway.media.store import MediaStore
from gateway.storage.job_lock import job_lock
from gateway.storage.report_queries import attached_keys
from gateway.storage.store import Store

logger = logging.getLogger(__name__)

ROUND_S = 3600.0
BATCH = 1000  # files looked at per round (oldest first): a backlog clears over a few rounds


async def sweep_unsent(
    store: Store, files: MediaStore, *, keep_s: float, clock: Callable[[], float] = time.time
) -> int:
    """Delete the files older than `keep_s` that no message or outbox row refers to; how many went."""
    candidates = await files.older_than(clock() - keep_s, BATCH)
    if not candidates:
        return 0
    used = await attached_keys(store, candidates)
    removed = 0
    for key in candidates:
        if key not in used and await files.delete(key):
            removed += 1
    return removed


async def _rounds(app: web.Application) -> None:
    runtime = app[RUNTIME]
    assert runtime.media is not None
    keep_s = runtime.settings.uploads.unsent_keep_h * 3600.0
    while True:
        await asyncio.sleep(ROUND_S)
        try:
            async with job_lock(runtime.store, "uploads") as mine:
                removed = await sweep_unsent(runtime.store, runtime.media.store, keep_s=keep_s) if mine else 0
            if removed:
                logger.info("uploads: deleted %d file(s) no message used", removed)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("uploads: the unsent-file sweep failed; retrying next round")


async def upload_sweep(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the hourly sweep of unsent uploads."""
    task = asyncio.create_task(_rounds(app), name="kefu-upload-sweep") if app[RUNTIME].media else None
    yield
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
