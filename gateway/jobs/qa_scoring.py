"""质检 scoring: every human conversation whose human part ended (closed, or handed back to the bot) is
scored once against the rules in use; the rules file is re-read when it changes. `qa_results` has one
row per conversation, so two processes scoring the same one keep the first result."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

from aiohttp import web

from gateway.keys import QA, RUNTIME
from gateway.qa_service import QaService
from gateway.storage import Store
from gateway.storage.job_lock import job_lock
from gateway.storage.qa_store import conversation_messages, pend_missed, save_result, unscored_conversations
from handoff.qa import score_conversation

logger = logging.getLogger(__name__)

# How often a round also looks through the whole history for finished conversations no close left to
# 质检 (`pend_missed`); the rounds in between read qa_pending only.
SWEEP_EVERY_S = 3600.0

__all__ = ["install_qa", "qa_jobs", "score_pending"]


async def score_pending(store: Store, qa: QaService, *, now: datetime | None = None, limit: int = 100) -> int:
    """Score the conversations whose human part ended and that have no result yet; how many were stored."""
    rules = qa.rules
    if rules is None:
        return 0
    stored = 0
    for item in await unscored_conversations(store, limit=limit):
        messages = await conversation_messages(store, item.conversation_id)
        result = score_conversation(messages, rules)
        if await save_result(store, item, result, rules_version=rules.version, at=now or datetime.now(UTC)):
            stored += 1
            if result.flagged:
                logger.info(
                    "qa flagged: conversation=%s score=%s rules=%s",
                    item.conversation_id,
                    result.score,
                    ",".join(result.rules_hit),
                )
    return stored


async def qa_jobs(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: load the rules, then reload them and score finished conversations periodically."""
    runtime = app[RUNTIME]
    qa = app[QA]
    settings = runtime.settings.qa
    if not settings.enabled:  # 质检 off: no rules read (a missing file is no error), none score or block
        yield
        return
    await qa.reload(force=True)

    async def loop() -> None:
        swept_at: float | None = None  # the first round sweeps
        while True:
            await asyncio.sleep(settings.job_interval_s)
            try:
                await qa.reload()
                async with job_lock(runtime.store, "qa") as mine:  # several processes: one scores a round
                    if mine:
                        now = asyncio.get_running_loop().time()
                        if swept_at is None or now - swept_at >= SWEEP_EVERY_S:
                            missed = await pend_missed(runtime.store)
                            swept_at = now
                            if missed:
                                logger.info(
                                    "qa: %d finished conversations found unscored, scored now", missed
                                )
                        await score_pending(runtime.store, qa)
            except Exception:  # a database outage: try again next round, the rows are not lost
                logger.exception("qa scoring round failed")

    task = asyncio.create_task(loop(), name="kefu-qa-jobs")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def install_qa(app: web.Application, path: str) -> QaService:
    """Attach the 质检 rules to the app (`app[QA]`); the job starts with the app, after the database."""
    qa = QaService(path)
    app[QA] = qa
    app.cleanup_ctx.append(qa_jobs)
    return qa
