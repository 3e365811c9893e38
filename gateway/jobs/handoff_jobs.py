"""The handoff timers: every `handoff.job_interval_s` the idle sweep (reminders, auto-close), the
first-response notices (first_response.py) and the catch-up assignment; run for the app's lifetime."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from aiohttp import web

from gateway.canned_seed import seed_canned
from gateway.handoff_events import HandoffError
from gateway.handoff_service import HandoffService
from gateway.jobs.first_response import first_response_sweep
from gateway.keys import HANDOFF
from gateway.storage.job_lock import job_lock
from handoff import notices
from handoff.lifecycle import IdleAction, idle_action
from handoff.presence import accepts_new_chats, has_left
from handoff.service import NOTICE_DELAY
from handoff.state import ConversationState
from handoff.wrapup import CloseReason

logger = logging.getLogger(__name__)


async def idle_sweep(service: HandoffService, now: datetime | None = None) -> None:
    """Remind silent customers and auto-close after the configured silence (handoff.lifecycle rules)."""
    now = now or service.clock.now()
    for candidate in await service.db.idle_candidates():
        action = idle_action(
            ConversationState.ASSIGNED,
            candidate.last_customer_at,
            candidate.last_agent_at,
            candidate.reminded_at,
            now,
            service.lifecycle,
        )
        if action is IdleAction.REMIND:
            # Claimed before it is sent: with several processes sweeping, one of them sends it.
            if not await service.db.set_reminded(
                candidate.conversation_id, now, previous=candidate.reminded_at
            ):
                continue
            left = service.lifecycle.human_idle - (service.lifecycle.idle_reminder or timedelta(0))
            minutes = int(left.total_seconds() // 60)
            await service.notify(candidate.conversation_id, notices.idle_reminder(minutes or None))
        elif action is IdleAction.CLOSE:
            with contextlib.suppress(HandoffError):  # the agent closed it meanwhile
                await service.close(None, str(candidate.conversation_id), reason=CloseReason.IDLE)


async def offline_sweep(service: HandoffService, now: datetime | None = None) -> int:
    """Conversations of agents gone for `heartbeat_timeout_s` + `offline_grace_s` (the console closed,
    the network lost) go back to their group's queue, the customer is told, and the assigner may give
    them to another online agent at once; returns how many were moved."""
    now = now or service.clock.now()
    timeout = timedelta(seconds=service.settings.heartbeat_timeout_s)
    grace = timedelta(seconds=service.settings.offline_grace_s)
    moved = 0
    for conversation_id, agent_id, group, signs in await service.db.held_since(now - timeout - grace):
        if not has_left(signs, now, timeout, grace):
            continue
        target = group or service.rules.default_group
        before = await service.flow.snapshot()
        result = await service.db.transfer(
            str(conversation_id), by="system", expected_agent_id=agent_id, to_group=target
        )
        if not result.ok:
            continue  # closed, transferred or claimed meanwhile: nothing to move
        moved += 1
        logger.info(
            "handoff: agent %s offline, conversation %s back to %s", agent_id, conversation_id, target
        )
        loads = await service.db.agent_loads(target)
        others = any(accepts_new_chats(a.presence) and a.agent.id != agent_id for a in loads)
        await service.notify(conversation_id, notices.agent_left(others))
        payload = {"from_agent_id": agent_id, "to_group": target, "reason": "agent_offline"}
        await service.publish("conversation.requeued", payload, conversation_id=conversation_id, group=target)
        await service.publish(
            "conversation.requeued", payload, conversation_id=conversation_id, agent_id=agent_id
        )
        await service.flow.assign_waiting(before, delay=NOTICE_DELAY)
    return moved


async def repair_queue_keys(service: HandoffService) -> None:
    """Serving keys a process of an older release left behind (a rolling upgrade) put right: at start-up
    and every round, so such a conversation is neither invisible to the queue nor holding a head slot."""
    repaired = await service.db.repair_queue_keys()
    if repaired:
        logger.warning(
            "handoff: %d queue key(s) disagreed with their conversation's state; repaired", repaired
        )


async def run_jobs(service: HandoffService) -> None:
    """Forever: the idle sweep and a catch-up assignment (covers other processes and missed triggers)."""
    while True:
        await asyncio.sleep(service.settings.job_interval_s)
        try:
            async with job_lock(service.runtime.store, "handoff") as mine:  # one process's round at a time
                if mine:
                    await repair_queue_keys(service)
                    await idle_sweep(service)
                    await offline_sweep(
                        service
                    )  # chats of agents who closed the console go back to the queue
                    await first_response_sweep(service)  # 客服正忙，请稍候 once, breach shown to supervisors
                    await service.assign_waiting(catch_up=True)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("handoff: periodic job failed; retrying next round")


async def close_agent_sockets(app: web.Application) -> None:
    """on_shutdown: close the agents' console WebSockets before aiohttp waits for open handlers. Each one
    blocks in receive() (no heartbeat of the server's): left open, it held the shutdown for aiohttp's two
    10-s waits, past the 20 s after which `kefu serve --workers` kills a worker (its clean-up then never
    ran). Closing twice is harmless (handoff_jobs' clean-up calls it again)."""
    for ws in list(app[HANDOFF].sockets):
        with contextlib.suppress(Exception):
            await ws.close(code=1001, message=b"server shutdown")


async def handoff_jobs(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the periodic handoff job; on shutdown, close the agent WebSockets (if still open)."""
    service = app[HANDOFF]
    await seed_canned(service)  # the deployment's starter canned replies, once
    await repair_queue_keys(service)
    task = asyncio.create_task(run_jobs(service), name="kefu-handoff-jobs")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await close_agent_sockets(app)  # done by the shutdown hook already (then a no-op)
