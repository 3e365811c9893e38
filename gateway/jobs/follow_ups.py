"""Complaint follow-ups (回访): a ticket with a deadline opened when a complaint's human part ends.

`sla.follow_up_hours` after the close (optionally counted in business hours); an open one past its due
time is overdue — `overdue: true`, shown red in the console. The agent API lists and closes them
(gateway/http/follow_ups_api.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from gateway.message import utcnow
from gateway.storage.sla_store import (
    open_follow_up,
)
from handoff.sla import follow_up_due

if TYPE_CHECKING:  # pragma: no cover
    from gateway.handoff_service import HandoffService

logger = logging.getLogger(__name__)

__all__ = ["open_for_complaint"]

COMPLAINT = "complaint"
MAX_NOTE = 500


async def open_for_complaint(service: HandoffService, conversation_id: int, group: str | None) -> bool:
    """After a close: open the follow-up when the conversation was handed off as a complaint."""
    conv = await service.runtime.store.conversation(conversation_id)
    if conv is None or conv.handoff_reason != COMPLAINT:
        return False
    now = utcnow()
    due = follow_up_due(now, service.sla, service.hours.for_group(group))
    if not await open_follow_up(service.runtime.store, conversation_id, group, now, due):
        return False  # a second close of the same conversation (after a hand-back and a new complaint)
    await service._publish(  # its own event log: the group's agents and supervisors see it
        "follow_up.created", {"due_at": due.isoformat()}, conversation_id=conversation_id, group=group
    )
    logger.info("follow-up opened: conversation=%s group=%s due=%s", conversation_id, group, due.isoformat())
    return True
