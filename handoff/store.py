"""The storage contract the handoff logic relies on; the gateway implements it (SQLAlchemy), tests fake it.

Only the contract lives here. The rules every implementation must keep:
- State changes go through `check_transition` (handoff.state); an illegal one is refused, not applied.
- `claim`, `reassign` and `transfer` are atomic compare-and-set operations: of two agents claiming the
  same conversation at once exactly one gets `ClaimResult.ok`; a conversation is never assigned twice.
  The logic (queue.choose_agent / plan_assignments) only decides *who*; the store decides *whether*.
- `close` and `save_csat` are idempotent: a second close or rating returns False and changes nothing,
  so a double click never sends the customer two survey questions.
- Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from handoff.agents import AgentInfo
from handoff.permissions import ConversationRef
from handoff.presence import Presence
from handoff.queue import AgentLoad, QueueItem
from handoff.state import ConversationState
from handoff.wrapup import CloseReason

__all__ = ["ClaimOutcome", "ClaimResult", "CustomerMessageRead", "HandoffStore", "QueuedConversation"]


class ClaimOutcome(StrEnum):
    OK = "ok"
    TAKEN = "taken"  # someone else got it first (or it was reassigned meanwhile)
    NOT_QUEUED = "not_queued"  # it is back with the bot or closed
    AT_CAPACITY = "at_capacity"  # the agent already has max_chats open conversations
    NOT_FOUND = "not_found"


@dataclass(frozen=True, slots=True)
class ClaimResult:
    """The outcome of an atomic claim/reassign/transfer and who holds the conversation afterwards."""

    outcome: ClaimOutcome
    agent_id: str | None = None  # the assignee after the operation (the winner when TAKEN)

    @property
    def ok(self) -> bool:
        """True when this call made the change."""
        return self.outcome is ClaimOutcome.OK


@dataclass(frozen=True, slots=True)
class QueuedConversation:
    """What the orchestration reads of a conversation the pipeline just handed off."""

    id: int
    state: ConversationState
    handoff_reason: str | None
    group: str | None
    priority: str | None
    queued_at: datetime | None


@dataclass(frozen=True, slots=True)
class CustomerMessageRead:
    """What a message to a conversation on the human side needs, read in one trip with the message.

    `waiting_ticket` is asked only of a queued conversation, `position` only of a queued one that is not a
    留言 (None otherwise, as `queue_position` says for one not queued)."""

    conversation: ConversationRef | None
    waiting_ticket: bool
    position: int | None


@runtime_checkable
class HandoffStore(Protocol):
    """Async storage operations behind the handoff logic (one implementation: gateway.storage)."""

    async def get_conversation(self, conversation_id: str) -> ConversationRef | None:
        """The conversation's group, state and assignee, or None."""
        ...

    async def enqueue(self, item: QueueItem, *, position: bool = True) -> int:
        """Move a bot conversation to queued in `item.group` (a 留言 when `item.is_ticket`); its 1-based position.

        Idempotent: enqueuing a conversation that is already queued returns its current position.
        `position=False`: the caller names no place (a 留言's notice), so none is counted and 0 returned.
        """
        ...

    async def list_queue(self, groups: Collection[str] | None = None) -> Sequence[QueueItem]:
        """Every waiting conversation (tickets included), of the given groups or all; any order.

        O(queue): for exports and tests, never on a message's path (see queue_heads, queue_position).
        """
        ...

    async def queue_position(self, conversation_id: str) -> int | None:
        """1-based place of a queued conversation in its group's queue (one COUNT), None when not queued."""
        ...

    async def queue_heads(
        self, per_group: int, *, queued_before: datetime | None = None
    ) -> Sequence[QueueItem]:
        """The first `per_group` items of every group's queue in serving order (optionally only items
        queued before `queued_before`): what the assigner and the position notices read, never the whole
        queue."""
        ...

    async def queue_length(self, groups: Collection[str] | None = None) -> int:
        """How many conversations wait (tickets included), of the given groups or all."""
        ...

    async def claim_ticket_followup(self, conversation_id: int, at: datetime) -> bool:
        """True once per 留言: the conversation is a waiting ticket and its "补充已记录" notice was not
        claimed yet (atomic, so concurrent messages send it once)."""
        ...

    async def claim_position_note(self, conversation_id: int, position: int, at: datetime) -> bool:
        """True once per place in the queue of a queued conversation: "您仍在排队，前面还有 N 位" after a bot
        answer is news only when N changed (atomic, like claim_ticket_followup)."""
        ...

    async def waiting_ticket(self, conversation_id: int) -> bool:
        """True when the conversation is a 留言 still waiting in the queue (nobody was online for it)."""
        ...

    async def list_tickets(self, groups: Collection[str] | None = None) -> Sequence[QueueItem]:
        """The 留言 tickets still waiting, of the given groups or all."""
        ...

    async def claim(self, conversation_id: str, agent_id: str, *, by: str | None = None) -> ClaimResult:
        """Atomically assign a *queued* conversation to `agent_id` (by = the claimer, None = auto-assign).

        Checks the agent's capacity in the same transaction (AT_CAPACITY). TAKEN when already assigned.
        """
        ...

    async def reassign(
        self, conversation_id: str, to_agent_id: str, *, by: str, expected_agent_id: str | None
    ) -> ClaimResult:
        """Supervisor move: assign to `to_agent_id` only if the current assignee is still `expected_agent_id`."""
        ...

    async def transfer(
        self,
        conversation_id: str,
        *,
        by: str,
        expected_agent_id: str | None,
        to_group: str | None = None,
        to_agent_id: str | None = None,
    ) -> ClaimResult:
        """Hand to another group (back to queued there, original queued_at kept) or straight to an agent."""
        ...

    async def close(
        self, conversation_id: str, *, reason: CloseReason, by: str | None, tags: Sequence[str], at: datetime
    ) -> bool:
        """End the human part (closed, or bot for BACK_TO_BOT) with wrap-up tags; False if already ended."""
        ...

    async def load_by_agent(self, agent_ids: Collection[str] | None = None) -> Mapping[str, int]:
        """Open (assigned) conversations per agent; agents with none may be absent (= 0)."""
        ...

    async def agent_loads(self, group: str | None = None) -> Sequence[AgentLoad]:
        """Agents (of a group, or all) with effective presence, load and last assignment time."""
        ...

    async def last_assigned(self, group: str) -> str | None:
        """Id of the agent the group's latest automatic assignment went to (the round-robin cursor)."""
        ...

    async def record_heartbeat(self, agent_id: str, declared: Presence, at: datetime) -> None:
        """Store the console's heartbeat and the presence the agent chose (online/away)."""
        ...

    async def get_agent(self, agent_id: str) -> AgentInfo | None:
        """The agent with this id, or None."""
        ...

    async def agent_by_token_hash(self, token_hash: str) -> AgentInfo | None:
        """The enabled agent whose API token hashes to `token_hash` (agents.hash_token), or None."""
        ...

    async def awaiting_csat(self, conversation_id: str) -> bool:
        """True when the conversation was closed with the CSAT question and has no rating yet."""
        ...

    async def save_csat(self, conversation_id: str, rating: int, raw_text: str, at: datetime) -> bool:
        """Store the customer's 1–5 rating and their words; False (nothing stored) if already rated."""
        ...
