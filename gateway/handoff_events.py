"""The handoff service's refusals (HandoffError → the API's HTTP status) and its event fan-out.

`visible_to` decides which stored events an agent may see (the wake-ups are gateway/coord/events.py).
"""

from __future__ import annotations

from gateway.storage.events import EventRow
from handoff.agents import AgentInfo
from handoff.permissions import Permission
from handoff.store import ClaimOutcome, ClaimResult


class HandoffError(Exception):
    """A refused agent action; `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def require(permission: Permission) -> None:
    if not permission:
        raise HandoffError(403, permission.reason)


CLAIM_STATUS = {
    ClaimOutcome.TAKEN: (409, "the conversation was taken by another agent"),
    ClaimOutcome.NOT_QUEUED: (409, "the conversation is no longer waiting for an agent"),
    ClaimOutcome.AT_CAPACITY: (409, "that agent is at their limit of open conversations"),
    ClaimOutcome.NOT_FOUND: (404, "no such conversation or agent"),
}


def check_claim(result: ClaimResult) -> None:
    if not result.ok:
        status, message = CLAIM_STATUS[result.outcome]
        raise HandoffError(status, message)


def visible_to(event: EventRow, agent: AgentInfo) -> bool:
    """Supervisors see every event; agents their own and their groups' ones."""
    if agent.role.sees_everything:
        return True
    if event.agent_id is not None:
        return str(event.agent_id) == agent.id
    return event.group is not None and agent.serves(event.group)
