"""The waiting queue: priority, FIFO, per-group positions, and who gets the next conversation."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum

from handoff.agents import AgentInfo
from handoff.presence import Presence, accepts_new_chats

__all__ = [
    "AgentLoad",
    "AssignmentPolicy",
    "Priority",
    "QueueItem",
    "choose_agent",
    "ineligibility",
    "is_group_staffed",
    "next_item",
    "order_queue",
    "plan_assignments",
    "position_changes",
    "position_of",
    "queue_sort_key",
    "requeue_for_transfer",
]


class Priority(StrEnum):
    # The same words as `RuleIntent.priority` / `Prediction.priority` in the kb, so no mapping is needed.
    NORMAL = "normal"
    HIGH = "high"  # complaints: served before everyone of normal priority in the same group

    @property
    def rank(self) -> int:
        """Higher is served first."""
        return _RANK[self]

    @classmethod
    def parse(cls, value: str | Priority | None) -> Priority:
        """The priority named by `value` (None = normal), or ValueError listing the allowed values."""
        if value is None:
            return cls.NORMAL
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            allowed = ", ".join(p.value for p in cls)
            raise ValueError(f"priority must be one of {allowed}, got {value!r}") from None


_RANK = {Priority.NORMAL: 0, Priority.HIGH: 1}


@dataclass(frozen=True, slots=True)
class QueueItem:
    """A conversation waiting for an agent of `group`; `is_ticket` = a 留言 left while nobody was online."""

    conversation_id: str
    group: str
    priority: Priority
    queued_at: datetime  # when the customer was handed off: FIFO order and the wait shown to agents
    is_ticket: bool = False

    def __post_init__(self) -> None:
        # Accept "high"/"normal" straight from storage rows.
        object.__setattr__(self, "priority", Priority.parse(self.priority))


def queue_sort_key(item: QueueItem) -> tuple[int, int, datetime, int, str]:
    """Sort key of the one queue order: priority, then 留言 tickets, then FIFO, then id for stability."""
    # Why tickets come before live chats of the same priority: a 留言 was left while nobody was online,
    # so its customer has already waited the longest and agents are told to see them first. A complaint
    # (high) still beats a normal ticket: "complaints first" is the stronger promise.
    # The id by length first: stored ids are decimal, so "9" comes before "10", as the database's numeric
    # id does in `ORDER BY queue_key, id` (gateway/storage/serving_key.py); any other id still sorts stably.
    cid = item.conversation_id
    return (-item.priority.rank, 0 if item.is_ticket else 1, item.queued_at, len(cid), cid)


def order_queue(items: Iterable[QueueItem], group: str | None = None) -> list[QueueItem]:
    """The queue in serving order (see `queue_sort_key`), optionally only one group's items."""
    chosen = [i for i in items if group is None or i.group == group]
    return sorted(chosen, key=queue_sort_key)


def next_item(items: Iterable[QueueItem], group: str) -> QueueItem | None:
    """The item an agent of `group` should be given (or shown) next, or None when the group's queue is empty."""
    ordered = order_queue(items, group)
    return ordered[0] if ordered else None


def position_of(conversation_id: str, items: Iterable[QueueItem], group: str | None = None) -> int | None:
    """1-based place of the conversation within its group's queue (as told to the customer); None if absent."""
    items = list(items)
    if group is None:
        own = next((i for i in items if i.conversation_id == conversation_id), None)
        if own is None:
            return None
        group = own.group
    for index, item in enumerate(order_queue(items, group), start=1):
        if item.conversation_id == conversation_id:
            return index
    return None


def position_changes(before: Iterable[QueueItem], after: Iterable[QueueItem]) -> dict[str, int]:
    """Live (non-ticket) conversations whose position differs between two snapshots: id -> new position."""
    # Tickets are excluded: their customer was told "已留言", a queue position would contradict that.
    old = _positions(before)
    new = _positions(after)
    return {cid: pos for cid, pos in new.items() if old.get(cid) != pos}


def _positions(items: Iterable[QueueItem]) -> dict[str, int]:
    items = list(items)
    result: dict[str, int] = {}
    for group in {i.group for i in items}:
        for index, item in enumerate(order_queue(items, group), start=1):
            if not item.is_ticket:
                result[item.conversation_id] = index
    return result


def requeue_for_transfer(item: QueueItem, to_group: str) -> QueueItem:
    """The queue entry after a transfer to another group: same priority, original queued_at kept."""
    # Keeping queued_at means the customer does not go to the back of a new line after already waiting;
    # a transfer is the service's choice, not theirs.
    return replace(item, group=to_group, is_ticket=False)


class AssignmentPolicy(StrEnum):
    LEAST_BUSY = "least_busy"  # the online agent with the fewest open chats (default)
    ROUND_ROBIN = "round_robin"  # agents in turn, by id, skipping those who cannot take a chat
    MANUAL = "manual"  # nobody is assigned automatically: agents claim from the queue


@dataclass(frozen=True, slots=True)
class AgentLoad:
    """An agent as the assigner sees them: presence, open chats and when they last got one."""

    agent: AgentInfo
    presence: Presence
    load: int = 0  # conversations currently assigned to this agent, across all groups
    last_assigned_at: datetime | None = None  # None = never: waited the longest

    @property
    def free_slots(self) -> int:
        """How many more chats the agent can take before reaching max_chats."""
        return max(0, self.agent.max_chats - self.load)


def ineligibility(candidate: AgentLoad, group: str) -> str | None:
    """Why this agent cannot get a new chat of `group` right now, or None when they can."""
    agent = candidate.agent
    if not agent.enabled:
        return "disabled"
    if not agent.serves(group):
        return f"not in group {group}"
    if not accepts_new_chats(candidate.presence):
        return f"presence is {candidate.presence.value}"
    if candidate.load >= agent.max_chats:
        return f"at capacity ({candidate.load}/{agent.max_chats})"
    return None


def is_group_staffed(group: str, agents: Iterable[AgentLoad]) -> bool:
    """True when an enabled agent of the group is online (busy or not); False means: take a 留言."""
    # Capacity is deliberately ignored: all agents busy is a normal queue, nobody online is not.
    return any(a.agent.enabled and a.agent.serves(group) and accepts_new_chats(a.presence) for a in agents)


def choose_agent(
    policy: AssignmentPolicy,
    group: str,
    agents: Iterable[AgentLoad],
    last_assigned: str | None = None,
    on_shift: Collection[str] | None = None,
) -> str | None:
    """The id of the agent who gets the group's next conversation, or None (manual, or nobody can take it).

    `last_assigned` is the id of the agent the group's previous conversation went to (round-robin cursor).
    `on_shift`: ids of the agents scheduled now (handoff.shifts); when one of them can take the chat, only
    they are considered — an online agent off shift still helps when nobody on shift can.
    """
    policy = AssignmentPolicy(policy)
    if policy is AssignmentPolicy.MANUAL:
        return None
    eligible = [a for a in agents if ineligibility(a, group) is None]
    if not eligible:
        return None
    if on_shift:
        eligible = [a for a in eligible if a.agent.id in on_shift] or eligible
    if policy is AssignmentPolicy.ROUND_ROBIN:
        # Stateless rotation by id: the first eligible id after the cursor, wrapping around. An agent who
        # was skipped (busy, away) simply gets their turn on the next pass.
        ids = sorted(a.agent.id for a in eligible)
        if last_assigned is not None:
            for agent_id in ids:
                if agent_id > last_assigned:
                    return agent_id
        return ids[0]
    # Least busy: fewest open chats; on a tie the one who has waited longest since their last assignment
    # (never assigned counts as longest), then the id so the outcome is reproducible.
    best = min(eligible, key=_least_busy_key)
    return best.agent.id


def _least_busy_key(a: AgentLoad) -> tuple[int, bool, float, str]:
    # Never assigned sorts first (False < True) without comparing None to a datetime.
    assigned = a.last_assigned_at is not None
    waited_since = a.last_assigned_at.timestamp() if a.last_assigned_at is not None else 0.0
    return (a.load, assigned, waited_since, a.agent.id)


def plan_assignments(
    policy: AssignmentPolicy,
    items: Iterable[QueueItem],
    agents: Sequence[AgentLoad],
    now: datetime,
    last_assigned: Mapping[str, str] | None = None,
    on_shift: Mapping[str, Collection[str]] | None = None,
) -> list[tuple[str, str]]:
    """Who should get which waiting conversation now: [(conversation_id, agent_id)] in serving order.

    Run when an agent comes online, frees a slot or a conversation is queued. Load is shared across
    groups (one agent, one capacity), so items are taken in the global order. Tickets are included.
    The store still claims each pair atomically; a failed claim just means someone was faster.
    `on_shift` maps a group to the ids of its agents on shift now (preferred, see `choose_agent`).
    """
    policy = AssignmentPolicy(policy)
    if policy is AssignmentPolicy.MANUAL:
        return []
    state = {a.agent.id: a for a in agents}
    cursor = dict(last_assigned or {})
    plan: list[tuple[str, str]] = []
    for item in order_queue(items):
        scheduled = (on_shift or {}).get(item.group)
        agent_id = choose_agent(policy, item.group, state.values(), cursor.get(item.group), scheduled)
        if agent_id is None:
            continue  # this group is full; a later item of another group may still find an agent
        current = state[agent_id]
        state[agent_id] = replace(current, load=current.load + 1, last_assigned_at=now)
        cursor[item.group] = agent_id
        plan.append((item.conversation_id, agent_id))
    return plan
