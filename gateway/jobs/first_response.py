"""The first-response timer: "客服正忙，请稍候" once per live handoff no agent answered in time.

Run by the handoff service's periodic job. The decision is `handoff.sla.should_send_busy_notice`
(business hours aware: a handoff at lunch is due one minute after 13:00); the once-only guarantee is the
`sla_notices` row inserted before sending (gateway.storage.sla_store). Supervisors get an
`sla.first_response_breached` event (an event without agent or group is for supervisors only).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING

from gateway.message import utcnow
from gateway.storage.sla_store import FIRST_RESPONSE, mark_notice, unanswered_handoffs
from handoff.sla import BUSY_NOTICE, ConversationTimes, first_response_due, should_send_busy_notice

if TYPE_CHECKING:  # pragma: no cover
    from gateway.handoff_service import HandoffService

logger = logging.getLogger(__name__)

__all__ = ["first_response_sweep"]


async def first_response_sweep(service: HandoffService, now: datetime | None = None) -> int:
    """Send the busy notice to every live handoff past its first-response time; returns how many were sent."""
    now = now or utcnow()
    policy = service.sla
    sent = 0
    for handoff in await unanswered_handoffs(service.runtime.store, now - policy.first_response):
        hours = service.hours.for_group(handoff.group)
        times = ConversationTimes(opened_at=handoff.handed_off_at, handed_off_at=handoff.handed_off_at)
        if not should_send_busy_notice(times, notice_sent_at=None, now=now, policy=policy, hours=hours):
            continue  # handed off outside hours: the minute starts at the next opening
        if not await mark_notice(
            service.runtime.store, handoff.conversation_id, handoff.handed_off_at, FIRST_RESPONSE, now
        ):
            continue  # another process got there first
        await service.notify(handoff.conversation_id, BUSY_NOTICE)
        due = first_response_due(handoff.handed_off_at, policy, hours)
        await service._publish(  # its own event log; no agent/group = supervisors only
            "sla.first_response_breached",
            {
                "group": handoff.group,
                "handed_off_at": handoff.handed_off_at.isoformat(),
                "due_at": due.isoformat(),
            },
            conversation_id=handoff.conversation_id,
        )
        logger.info(
            "first response overdue: conversation=%s group=%s", handoff.conversation_id, handoff.group
        )
        sent += 1
    return sent
