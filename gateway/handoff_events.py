"""The handoff service's refusals (HandoffError → the API's HTTP status) and its event fan-out.

`EventBus` wakes this process's agent WebSockets when an event is stored; `visible_to` decides which
stored events an agent may see.
"""

from __future__ import annotations

import asyncio

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


class EventBus:
    """Wakes this process's agent WebSockets when an event is stored (Redis pub/sub is the later step)."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Event] = set()

    def subscribe(self) -> asyncio.Event:
        """A flag set on every publish; the subscriber clears it after reading."""
        flag = asyncio.Event()
        self._waiters.add(flag)
        return flag

    def unsubscribe(self, flag: asyncio.Event) -> None:
        """Stop waking this flag."""
        self._waiters.discard(flag)

    def publish(self) -> None:
        """Something new is in agent_events."""
        for flag in self._waiters:
            flag.set()


def visible_to(event: EventRow, agent: AgentInfo) -> bool:
    """Supervisors see every event; agents their own and their groups' ones."""
    if agent.role.sees_everything:
        return True
    if event.agent_id is not None:
        return str(event.agent_id) == agent.id
    return event.group is not None and agent.serves(event.group)
