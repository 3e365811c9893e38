"""Handoff orchestration over Protocols: routing, enqueue, notices, auto-assignment, position updates.

Pure: it talks to storage through `HandoffStore` (handoff/store.py), to the customer through a
`Notifier`, to the agents' consoles through an `EventLog`, and reads the time from a `Clock`; the gateway
implements the four (gateway/handoff_service.py) and tests use fakes with a fake clock.

Every step costs a bounded number of store calls whatever the queue length: the position is a COUNT, the
assigner reads only the heads of the groups' queues (as many items as agents have free slots) and the
"your place moved" notices go to the first `POSITION_WINDOW` customers of each group. Notices are stored at
once (so a second message sees the first one's notice) and delivered `NOTICE_DELAY` later by the outbox,
never after a sleep: the bot's own reply to the same message goes out first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from handoff import notices, waiting
from handoff.hours import BusinessHours, GroupHours
from handoff.queue import (
    AgentLoad,
    AssignmentPolicy,
    Priority,
    QueueItem,
    is_group_staffed,
    plan_assignments,
    position_changes,
)
from handoff.routing import RoutingRules
from handoff.state import ConversationState
from handoff.store import CustomerMessageRead, HandoffStore, QueuedConversation

__all__ = [
    "CATCH_UP_GRACE",
    "NOTICE_DELAY",
    "POSITION_WINDOW",
    "Clock",
    "EventLog",
    "HandoffFlow",
    "Notifier",
    "SystemClock",
]

# Notices raised by a customer message (queue position, agent joined, 留言) are due this much later: the bot's
# own handoff reply goes out in the webhook response or through the outbox right away, and the customer
# should read "正在为您转接" before "当前排队第 1 位".
NOTICE_DELAY = timedelta(seconds=0.3)
# The periodic catch-up assignment leaves handoffs this young to their own on_queued.
CATCH_UP_GRACE = timedelta(seconds=5)
# Customers told when their place moves: the first this many of each group (those further back were told
# their place when queued; telling thousands on every claim would cost O(queue) sends per claim).
POSITION_WINDOW = 20
# The rule-intent names in handoff routing for the pipeline's handoff reasons.
REASON_INTENT = {"complaint": "complaint", "asked_human": "human"}


class Clock(Protocol):
    """The time source (UTC, timezone-aware)."""

    def now(self) -> datetime: ...


class SystemClock:
    """The wall clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


class Shifts(Protocol):
    """The 排班 schedule: who is on shift, when the next shift starts."""

    async def next_shift_start(self, group: str, now: datetime) -> datetime | None: ...

    async def on_shift(self, now: datetime) -> Mapping[str, Collection[str]]: ...


class Notifier(Protocol):
    """Tells the customer something: stored as an outbound message and queued for delivery."""

    async def notify(
        self, conversation_id: int, text: str, *, delay: timedelta | None = None, while_queued: bool = False
    ) -> int:
        """Store and queue `text` (delivered no earlier than `delay` from now); the message id.

        `while_queued`: only if the conversation is still queued when the text is stored (0: it was not).
        A place in the queue, or a 留言's "nobody is online", told after an assignment made elsewhere
        meanwhile would follow "客服 X 为您服务" and be wrong."""
        ...


class EventLog(Protocol):
    """The agents' consoles: stored, numbered events."""

    async def publish(
        self,
        type_: str,
        payload: Mapping[str, Any],
        *,
        conversation_id: int | None = None,
        agent_id: str | None = None,
        group: str | None = None,
    ) -> int:
        """Store one event; its sequence number."""
        ...


@dataclass(frozen=True, slots=True)
class NoAgentText:
    """What the honest 留言 notice says about service hours (from the deployment's settings)."""

    service_hours: str | None = None  # handoff.service_hours, shown as is
    hours_configured: bool = False  # business_hours configured: say when agents are back


def _local_lock() -> Callable[[], AbstractAsyncContextManager[None]]:
    lock = asyncio.Lock()

    def hold() -> AbstractAsyncContextManager[None]:
        return lock

    return hold


class HandoffFlow:
    """The orchestration of the handoff, one per app (the gateway's HandoffService holds it)."""

    def __init__(
        self,
        store: HandoffStore,
        notifier: Notifier,
        events: EventLog,
        clock: Clock,
        *,
        rules: RoutingRules,
        policy: AssignmentPolicy,
        hours: GroupHours,
        groups_configured: bool,
        no_agent: NoAgentText | None = None,
        shifts: Shifts | None = None,
        assign_lock: Callable[[], AbstractAsyncContextManager[None]] | None = None,
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.events = events
        self.clock = clock
        self.rules = rules
        self.policy = policy
        self.hours = hours
        self.groups_configured = groups_configured
        self.no_agent = no_agent or NoAgentText()
        self.shifts = shifts
        # One assigner at a time: this process's lock, or one shared by the processes (gateway/coord/).
        self._assign_lock = assign_lock or _local_lock()

    # --- routing and queuing ----------------------------------------------------------------------------

    def route(
        self, reason: str | None, group: str | None, priority: str | None, category: str | None = None
    ) -> tuple[str, Priority]:
        """Group and priority for a handoff: the kb intent's group when configured, else the routing rules."""
        intent = REASON_INTENT.get(reason or "")
        routed = self.rules.route(intent=intent, category=category, declared=priority)
        # The kb intent's own group stands when configured, or when the deployment configured no groups
        # at all: then the FAQ's groups are the groups.
        if group and (self.rules.get(group) is not None or not self.groups_configured):
            return group, routed.priority
        return routed.group, routed.priority

    async def on_queued(
        self,
        conv: QueuedConversation,
        category: str | None = None,
        loads: Sequence[AgentLoad] | None = None,
    ) -> int | None:
        """The pipeline queued `conv`: route it, tell the customer where they stand, assign; its position.

        None when it was not queued any more (served meanwhile); 0 for a 留言 (nobody to wait for).
        `loads`: the agents' loads (`HandoffStore.agent_loads`, any groups) when the caller read them with
        the conversation; otherwise they are read here.
        """
        if conv.state is not ConversationState.QUEUED:
            return None
        group, priority = self.route(conv.handoff_reason, conv.group, conv.priority, category)
        now = self.clock.now()
        hours = self.hours.for_group(group)
        # Outside business hours a handoff is a 留言, even if someone happens to be online.
        open_now = hours.is_open(now)
        if open_now and loads is None:
            loads = await self.store.agent_loads(group)
        staffed = open_now and is_group_staffed(group, loads or ())
        before = await self.snapshot() if staffed and self.policy is not AssignmentPolicy.MANUAL else None
        item = QueueItem(str(conv.id), group, priority, conv.queued_at or now, is_ticket=not staffed)
        try:
            # A 留言's notice names no place: no position counted for it.
            position = await self.store.enqueue(item, position=staffed)
        except ValueError:
            return None  # claimed (by an agent, or another process's job) before it was routed: served
        payload = {"priority": priority.value, "reason": conv.handoff_reason, "ticket": not staffed}
        if not staffed:
            # Honest: nobody can answer now. The 留言 waits at the front of the queue for the next agent.
            next_shift = await self.shifts.next_shift_start(group, now) if self.shifts else None
            await self.notifier.notify(
                conv.id,
                self.no_agent_notice(hours, now, open_now, next_shift),
                delay=NOTICE_DELAY,
                while_queued=True,
            )
            await self.events.publish("ticket.created", payload, conversation_id=conv.id, group=group)
            return position
        # Stored with this handoff's other writes, after the assignment below, or one that another
        # request's assigner makes meanwhile: then it is not said at all (while_queued).
        await self.notifier.notify(conv.id, notices.queued(position), delay=NOTICE_DELAY, while_queued=True)
        await self.events.publish(
            "conversation.queued", {**payload, "position": position}, conversation_id=conv.id, group=group
        )
        await self.assign_waiting(before, delay=NOTICE_DELAY)
        return position

    def no_agent_notice(
        self, hours: BusinessHours, now: datetime, open_now: bool, next_shift: datetime | None = None
    ) -> str:
        """The honest 留言 notice: when agents are back (the next shift's start, else the next opening of
        business hours when closed) and the service hours."""
        configured = self.no_agent.hours_configured
        service_hours = self.no_agent.service_hours or (hours.describe() if configured else None)
        if hours.round_the_clock and not self.no_agent.service_hours:
            service_hours = None  # 24×7: nobody online is just that, not "outside the service hours"
        resumes = None if open_now or not configured else hours.next_opening(now)
        if next_shift is not None:
            resumes = next_shift.astimezone(hours.timezone)
        return notices.no_agent_online(
            resumes, now=now.astimezone(hours.timezone), service_hours=service_hours
        )

    async def on_customer_message(
        self,
        conversation_id: int,
        payload: Mapping[str, Any],
        *,
        answered: bool = False,
        quiet: bool = False,
        read: CustomerMessageRead | None = None,
    ) -> None:
        """A customer wrote to a queued/assigned conversation: push it to the agent (stored either way).

        Queued, every message gets a reply: the bot's answer (`answered`, then where they stand in the
        queue) or an acknowledgement; with an agent, the agent answers and the bot says nothing. `quiet`:
        another tool serves this channel's handoffs (WeCom's own staff), so kefu acknowledges nothing.
        `read`: what the caller read with the message (the conversation, the 留言 state, the place);
        otherwise each is read here when needed.
        """
        ref = (
            read.conversation if read is not None else await self.store.get_conversation(str(conversation_id))
        )
        if ref is None:
            return
        if ref.state is ConversationState.ASSIGNED:
            await self.events.publish(
                "message.customer", payload, conversation_id=conversation_id, agent_id=ref.assigned_agent_id
            )
            return
        await self.events.publish(
            "message.customer", payload, conversation_id=conversation_id, group=ref.group
        )
        if ref.state is not ConversationState.QUEUED or quiet:
            return
        turn = int(payload.get("message_id") or 0)
        ticket = read.waiting_ticket if read is not None else await self.store.waiting_ticket(conversation_id)
        if ticket:
            # The first addition to a 留言 gets the full confirmation, claimed atomically in the store so
            # two messages arriving together cannot both send it; later ones a shorter, varied one.
            if answered:
                return  # the bot's answer is the reply; the 留言 itself was confirmed when it was made
            first = await self.store.claim_ticket_followup(conversation_id, self.clock.now())
            text = notices.ticket_followup() if first else waiting.ticket_ack(turn)
        else:
            position = (
                read.position if read is not None else await self.store.queue_position(str(conversation_id))
            )
            if position is None:
                return
            if answered:
                # After the bot's answer the place in the queue is news only when it changed.
                if not await self.store.claim_position_note(conversation_id, position, self.clock.now()):
                    return
                text = waiting.still_queued(position)
            else:
                text = waiting.queued_ack(position, turn)
        # Stored at the end of the step: an agent who took the conversation meanwhile answers it instead.
        await self.notifier.notify(conversation_id, text, delay=NOTICE_DELAY, while_queued=True)

    # --- assignment -------------------------------------------------------------------------------------

    async def snapshot(self) -> Sequence[QueueItem]:
        """The first POSITION_WINDOW of every group's queue: the 'before' of a position update."""
        return await self.store.queue_heads(POSITION_WINDOW)

    async def assign_waiting(
        self,
        before: Sequence[QueueItem] | None = None,
        *,
        catch_up: bool = False,
        delay: timedelta | None = None,
    ) -> int:
        """Give waiting conversations to free online agents per the policy; returns how many.

        Reads only the heads of the queues: an agent can take at most their free slots, so no item
        further back than the group's free slots can be assigned now. `catch_up` (the periodic job) leaves
        handoffs younger than CATCH_UP_GRACE to their own `on_queued`, which routes and notifies first.
        """
        if self.policy is AssignmentPolicy.MANUAL:
            if before is not None:
                await self.update_positions(before, delay=delay)
            return 0
        async with self._assign_lock():  # the store's CAS guards anyway; the lock saves wasted races
            if before is None:
                before = await self.snapshot()
            now = self.clock.now()
            loads = await self.store.agent_loads()
            free = sum(a.free_slots for a in loads if a.agent.enabled)
            done = 0
            if free:
                cutoff = now - CATCH_UP_GRACE if catch_up else None
                items = await self.store.queue_heads(free, queued_before=cutoff)
                groups = {i.group for i in items}
                cursors = {g: c for g in groups if (c := await self.store.last_assigned(g))}
                on_shift = await self.shifts.on_shift(now) if self.shifts and items else {}
                plan = plan_assignments(self.policy, items, loads, now, cursors, on_shift)
                for conversation_id, agent_id in plan:
                    result = await self.store.claim(conversation_id, agent_id, by=None)
                    if result.ok:
                        done += 1
                        await self.assigned(int(conversation_id), agent_id, auto=True, delay=delay)
            await self.update_positions(before, delay=delay)
            return done

    async def assigned(
        self,
        conversation_id: int,
        agent_id: str,
        *,
        auto: bool,
        by: str | None = None,
        delay: timedelta | None = None,
    ) -> None:
        """Tell the customer who joined and the consoles who got it."""
        agent = await self.store.get_agent(agent_id)
        ref = await self.store.get_conversation(str(conversation_id))
        name = agent.name if agent else None
        await self.notifier.notify(conversation_id, notices.agent_joined(name), delay=delay)
        payload = {"agent_id": agent_id, "agent_name": name, "auto": auto, "by": by}
        group = ref.group if ref else None
        await self.events.publish(
            "conversation.assigned", payload, conversation_id=conversation_id, group=group
        )
        if agent is not None and group is not None and not agent.serves(group):
            # The assignee is outside the group (a supervisor's pick): tell them directly too.
            await self.events.publish(
                "conversation.assigned", payload, conversation_id=conversation_id, agent_id=agent_id
            )

    async def update_positions(self, before: Sequence[QueueItem], *, delay: timedelta | None = None) -> None:
        """Tell the customers at the front whose place moved since `before` (a `snapshot()`)."""
        after = await self.snapshot()
        known = {i.conversation_id for i in before}
        for conversation_id, position in position_changes(before, after).items():
            if conversation_id in known:  # a newcomer got the `queued` notice already
                await self.notifier.notify(
                    int(conversation_id), notices.position_update(position), delay=delay, while_queued=True
                )
