"""Handoff orchestration: what happens around the queue, in order, with the texts from handoff.notices.

The pure rules live in `handoff/` (who is next, who may do what, what the customer is told); this module
applies them to the database (`HandoffDb`), the customer's channel (messages + outbox, so a reply that
cannot be delivered yet is retried, never lost) and the agents' consoles (stored, numbered events that
the WebSocket pushes; `EventBus` wakes the sockets of this process, others poll the table).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.channels.base import Outgoing
from gateway.handoff_actions import AgentActions
from gateway.handoff_events import (
    EventBus,
    HandoffError,
    visible_to,
)
from gateway.message import Message, Reply, utcnow
from gateway.norms import group_hours, sla_policy
from gateway.storage import Unit
from gateway.storage.csat import pending_csat, skip_csat
from gateway.storage.events import EventRow
from gateway.storage.handoff_store import HandoffDb, session_of
from gateway.storage.shifts_store import next_shift_start_of, shifts_now
from handoff import notices
from handoff.agents import AgentInfo
from handoff.csat import parse_rating
from handoff.hours import BusinessHours
from handoff.lifecycle import LifecycleRules
from handoff.queue import (
    AssignmentPolicy,
    Priority,
    QueueItem,
    is_group_staffed,
    plan_assignments,
    position_changes,
    position_of,
)
from handoff.routing import RoutingRules
from handoff.state import ConversationState

if TYPE_CHECKING:
    from gateway.pipeline import PipelineResult
    from gateway.runtime import Runtime
    from gateway.settings import HandoffSettings

logger = logging.getLogger(__name__)

WITH_HUMAN = "with_human"  # gateway.pipeline.WITH_HUMAN (not imported: the pipeline imports us lazily)
CSAT_DECISION = "csat"
# The pipeline's handoff reasons that are rule-intent names in handoff routing.
REASON_INTENT = {"complaint": "complaint", "asked_human": "human"}


# Notices raised by a customer message (queue position, agent joined, 留言) wait this long: the bot's own
# handoff reply goes out in the webhook response or through the outbox right after the pipeline returns,
# and the customer should read "正在为您转接" before "当前排队第 1 位".
FOLLOW_UP_DELAY_S = 0.3
# The periodic catch-up assignment leaves handoffs this young to their own on_queued (see assign_waiting).
CATCH_UP_GRACE = timedelta(seconds=5)
# Messages read per step when _category walks a conversation back from its end.
CATEGORY_PAGE = 20
_held: ContextVar[list[tuple[int, str]] | None] = ContextVar("kefu_held_notices", default=None)


@dataclass(frozen=True, slots=True)
class Customer:
    """Addressing for a notice: the conversation's channel, account, key and the last inbound target."""

    channel: str
    account: str
    conversation_key: str
    target: dict[str, Any]


class HandoffService(AgentActions):
    """The gateway half of the handoff (one per app, on `runtime.handoff`)."""

    def __init__(self, runtime: Runtime, settings: HandoffSettings) -> None:
        self.runtime = runtime
        self.settings = settings
        self.rules = RoutingRules.from_config(
            {"groups": settings.groups, "default_group": settings.default_group}
        )
        self.policy = AssignmentPolicy(settings.assignment)
        conversation = runtime.settings.conversation
        reminder = (
            timedelta(minutes=settings.idle_reminder_minutes) if settings.idle_reminder_minutes else None
        )
        self.lifecycle = LifecycleRules(
            bot_idle=timedelta(minutes=conversation.bot_idle_minutes),
            human_idle=timedelta(minutes=conversation.human_idle_minutes),
            idle_reminder=reminder,
        )
        self.db = HandoffDb(
            runtime.store,
            heartbeat_timeout=timedelta(seconds=settings.heartbeat_timeout_s),
            default_group=self.rules.default_group,
        )
        self.bus = EventBus()
        self._assign_lock = asyncio.Lock()
        self._connections: dict[str, int] = {}
        self.sockets: set[web.WebSocketResponse] = set()
        # Service norms (gateway.norms): business hours per group, the SLA timers.
        self.hours = group_hours(runtime.settings)
        self.sla = sla_policy(runtime.settings)

    # --- the customer side ----------------------------------------------------------------------

    def claims(self, unit: Unit, message: Message, now: datetime) -> bool:
        """The pipeline asks, in the unit of work of a key's first message: is this a CSAT rating?

        A question instead of a rating ends the survey here (the bot answers it); a rating goes to
        `intercept`, which stores it in its own transaction.
        """
        if message.kind != "text" or not message.text.strip():
            return False
        cid = pending_csat(unit, message.conversation_key, now)
        if cid is None:
            return False
        if parse_rating(message.text) is None:
            skip_csat(unit, cid)
            return False
        return True

    async def intercept(self, message: Message) -> PipelineResult | None:
        """A CSAT answer while a rating is pending: stored with the closed conversation, thanked; else None.

        Runs before classification, so "差评" after the survey is a rating, not a complaint handoff.
        """
        if message.kind != "text" or not message.text.strip():
            return None
        now = utcnow()
        cid = await self.db.pending_csat_for_key(message.conversation_key, now)
        if cid is None:
            return None
        rating = parse_rating(message.text)
        if rating is None:
            await self.db.skip_csat(cid)  # a new question: the bot handles it, the survey is over
            return None
        from gateway.pipeline import PipelineResult  # the pipeline imports this module's users

        thanks = notices.thanks_for_rating(rating)
        target = message.target()
        store = self.runtime.store
        async with store.transaction() as tx:
            if message.channel_msg_id is not None and await tx.find_message(
                message.channel, message.account, message.channel_msg_id
            ):
                return None  # a platform retry: the pipeline answers it from the stored replies
            saved = await self.db.save_csat_in(session_of(tx), cid, rating, message.text, now)
            if not saved:
                return None
            common = {
                "conversation_id": cid,
                "conversation_key": message.conversation_key,
                "channel": message.channel,
                "account": message.account,
            }
            inbound = await tx.add_message(
                **common,
                direction="in",
                sender="customer",
                sender_name=message.user_name,
                text=message.text,
                channel_msg_id=message.channel_msg_id,
                decision=CSAT_DECISION,
                reason=str(rating),
                target=target,
                created_at=now,
            )
            reply = await tx.add_message(
                **common,
                direction="out",
                sender="system",
                text=thanks,
                reply_to=inbound.id,
                decision=CSAT_DECISION,
                created_at=now,
            )
        logger.info("csat conversation=%s rating=%s", cid, rating)
        await self._publish(
            "csat.received", {"rating": rating}, conversation_id=cid, agent_id=await self._last_agent(cid)
        )
        return PipelineResult(
            conversation_id=cid,
            message_id=inbound.id,
            replies=[Reply(message.conversation_key, thanks, sender="system")],
            duplicate=False,
            decision=CSAT_DECISION,
            channel=message.channel,
            account=message.account,
            conversation_key=message.conversation_key,
            reply_ids=(reply.id,),
            target=target,
            reason=str(rating),
        )

    async def after_message(self, result: PipelineResult) -> None:
        """Called by the pipeline after each stored message: queue a handoff, or tell the agent."""
        if result.duplicate:
            return
        held: list[tuple[int, str]] = []
        token = _held.set(held)
        try:
            if result.handoff:
                await self.on_queued(result.conversation_id)
            elif result.decision == WITH_HUMAN:
                await self.on_customer_message(result.conversation_id, result.message_id)
        except Exception:
            # The customer's message is stored; the periodic job re-runs assignment. Never fail the webhook.
            logger.exception("handoff: follow-up of conversation %s failed", result.conversation_id)
        finally:
            _held.reset(token)
        if held:
            self.runtime.spawn(self._send_held(held), name=f"kefu-handoff-notices-{result.conversation_id}")

    async def _send_held(self, held: list[tuple[int, str]]) -> None:
        await asyncio.sleep(FOLLOW_UP_DELAY_S)
        for conversation_id, text in held:  # in order: "排队第 1 位" before "客服 X 为您服务"
            await self.notify(conversation_id, text)

    def route(
        self, reason: str | None, group: str | None, priority: str | None, category: str | None = None
    ) -> tuple[str, Priority]:
        """Group and priority for a handoff: the kb intent's group when configured, else the routing rules."""
        intent = REASON_INTENT.get(reason or "")
        routed = self.rules.route(intent=intent, category=category, declared=priority)
        # The kb intent's own group (RuleIntent.group) stands when configured, or when the deployment
        # configured no groups at all: then the FAQ's groups are the groups.
        if group and (self.rules.get(group) is not None or not self.settings.groups):
            return group, routed.priority
        return routed.group, routed.priority

    async def _category(self, conversation_id: int) -> str | None:
        """The FAQ category the bot last thought the customer meant (its answer or its first suggestion)."""
        snapshot = self.runtime.kb.snapshot()
        if snapshot is None:
            return None
        kb = snapshot[0]
        # Newest first, a page at a time: the bot's last answer is nearly always among the latest few
        # messages, so a long conversation is not read whole to find it.
        before: int | None = None
        while page := await self.runtime.store.recent_messages(
            conversation_id, before=before, limit=CATEGORY_PAGE
        ):
            for row in page:
                entry = kb.get(row.entry_id) if row.entry_id else None
                if entry is None and row.suggestions:
                    entry = next((e for e in kb.entries if e.question == row.suggestions[0]), None)
                if entry is not None:
                    return entry.category
            before = page[-1].id
        return None

    async def on_queued(self, conversation_id: int) -> None:
        """The pipeline queued a conversation: route it, tell the customer where they stand, assign."""
        conv = await self.runtime.store.conversation(conversation_id)
        if conv is None or conv.state is not ConversationState.QUEUED:
            return
        category = await self._category(conv.id)
        group, priority = self.route(conv.handoff_reason, conv.group, conv.priority, category)
        loads = await self.db.agent_loads(group)
        now = utcnow()
        hours = self.hours.for_group(group)
        # Outside business hours a handoff is a 留言, even if someone happens to be online.
        open_now = hours.is_open(now)
        staffed = open_now and is_group_staffed(group, loads)
        before = await self.db.list_queue()
        item = QueueItem(str(conv.id), group, priority, conv.queued_at or utcnow(), is_ticket=not staffed)
        try:
            position = await self.db.enqueue(item)
        except ValueError:
            # Claimed (by an agent, or another process's job) between our read and this write: it is served.
            logger.info("handoff conversation=%s was taken before it was routed", conv.id)
            return
        payload = {"priority": priority.value, "reason": conv.handoff_reason, "ticket": not staffed}
        if not staffed:
            # Honest: nobody can answer now. The 留言 waits at the front of the queue for the next agent.
            scheduled = await next_shift_start_of(self.runtime.store, group, now)
            await self.notify(conv.id, self._no_agent_notice(hours, now, open_now, scheduled))
            await self._publish("ticket.created", payload, conversation_id=conv.id, group=group)
            logger.info("handoff conversation=%s group=%s: nobody online, ticket", conv.id, group)
            return
        await self.notify(conv.id, notices.queued(position))
        await self._publish(
            "conversation.queued", {**payload, "position": position}, conversation_id=conv.id, group=group
        )
        await self.assign_waiting(before=before)

    def _no_agent_notice(
        self, hours: BusinessHours, now: datetime, open_now: bool, next_shift: datetime | None = None
    ) -> str:
        """The honest 留言 notice: when agents are back (the next shift's start, else the next opening of
        business hours when closed) and the service hours."""
        configured = getattr(self.runtime.settings, "business_hours", None) is not None
        service_hours = self.settings.service_hours or (hours.describe() if configured else None)
        resumes = None if open_now or not configured else hours.next_opening(now)
        if next_shift is not None:
            resumes = next_shift.astimezone(hours.timezone)
        local_now = now.astimezone(hours.timezone)
        return notices.no_agent_online(resumes, now=local_now, service_hours=service_hours)

    async def on_customer_message(self, conversation_id: int, message_id: int) -> None:
        """A customer wrote to a queued/assigned conversation: push it to the agent (stored either way)."""
        ref = await self.db.get_conversation(str(conversation_id))
        if ref is None:
            return
        row = await self.runtime.store.message(message_id)
        if row is None or row.conversation_id != conversation_id:
            return
        payload = {"message_id": row.id, "text": row.text, "sender_name": row.sender_name, "kind": row.kind}
        if ref.state is ConversationState.ASSIGNED:
            await self._publish(
                "message.customer", payload, conversation_id=conversation_id, agent_id=ref.assigned_agent_id
            )
            return
        await self._publish("message.customer", payload, conversation_id=conversation_id, group=ref.group)
        if await self.db.is_waiting_ticket(conversation_id):
            followup = notices.ticket_followup()
            # Confirm once, not after every line.
            if not await self.runtime.store.has_message_text(conversation_id, followup):
                await self.notify(conversation_id, followup)

    async def _customer(self, conversation_id: int) -> Customer | None:
        conv = await self.runtime.store.conversation(conversation_id)
        if conv is None:
            return None
        inbound = await self.runtime.store.last_inbound(conversation_id)
        target = dict(inbound.target) if inbound else {}
        target.pop("channel_msg_id", None)  # a later push is not a reply to one platform message
        return Customer(conv.channel, conv.account, conv.conversation_key, target)

    async def notify(
        self,
        conversation_id: int,
        text: str,
        *,
        sender: str = "system",
        sender_name: str | None = None,
        agent_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Store an outbound text and queue it in the outbox (one transaction); returns the message id.

        `idempotency_key` (an agent's `Idempotency-Key`): stored as the message's channel message id, so the
        same key returns the message stored the first time and nothing is sent again.

        System notices raised while the pipeline is still answering are held back (0 is returned) and sent
        shortly after, in order, so they never overtake the bot's own reply to the same message.
        """
        held = _held.get()
        if held is not None and sender == "system":
            held.append((conversation_id, text))
            return 0
        customer = await self._customer(conversation_id)
        if customer is None:
            raise HandoffError(404, f"no conversation {conversation_id}")
        now = utcnow()
        if idempotency_key is not None:
            existing = await self.sent_with_key(conversation_id, idempotency_key)
            if existing is not None:
                return existing
        async with self.runtime.store.transaction() as tx:
            row = await tx.add_message(
                channel_msg_id=idempotency_key,
                conversation_id=conversation_id,
                conversation_key=customer.conversation_key,
                channel=customer.channel,
                account=customer.account,
                direction="out",
                sender=sender,
                sender_name=sender_name,
                text=text,
                target=customer.target,
                created_at=now,
            )
            outgoing = Outgoing(
                channel=customer.channel,
                account=customer.account,
                conversation_key=customer.conversation_key,
                text=text,
                sender=sender,
                target=customer.target,
            )
            await self.runtime.outbox.enqueue_in(tx, outgoing, message_id=row.id)
            if agent_id is not None:
                await self.db.agent_spoke(session_of(tx), conversation_id, now)
        self.runtime.outbox.wake()
        return row.id

    async def sent_with_key(self, conversation_id: int, key: str) -> int | None:
        """The message already stored with this idempotency key in the conversation's channel, if any."""
        customer = await self._customer(conversation_id)
        if customer is None:
            return None
        async with self.runtime.store.transaction() as tx:
            found = await tx.find_message(customer.channel, customer.account, key)
        return found.id if found is not None else None

    # --- assignment -----------------------------------------------------------------------------

    async def assign_waiting(
        self, before: Sequence[QueueItem] | None = None, *, catch_up: bool = False
    ) -> int:
        """Give waiting conversations to free online agents per the policy; returns how many.

        `catch_up` (the periodic job) leaves handoffs younger than CATCH_UP_GRACE to their own `on_queued`,
        so the job never assigns a conversation between its queuing and its routing and queue notice.
        """
        if self.policy is AssignmentPolicy.MANUAL:
            if before is not None:
                await self._positions(before)
            return 0
        async with self._assign_lock:  # one assigner per process; the store's CAS guards across processes
            if before is None:
                before = await self.db.list_queue()
            items = list(before)
            if catch_up:
                cutoff = utcnow() - CATCH_UP_GRACE
                items = [i for i in items if i.queued_at <= cutoff]
            loads = await self.db.agent_loads()
            cursors = {g: c for g in {i.group for i in items} if (c := await self.db.last_assigned(g))}
            now = utcnow()
            on_shift = await shifts_now(self.runtime.store, now) if items else {}
            plan = plan_assignments(self.policy, items, loads, now, cursors, on_shift)
            done = 0
            for conversation_id, agent_id in plan:
                result = await self.db.claim(conversation_id, agent_id, by=None)
                if result.ok:
                    done += 1
                    await self._assigned(int(conversation_id), agent_id, auto=True)
            await self._positions(before)
            return done

    async def _assigned(
        self, conversation_id: int, agent_id: str, *, auto: bool, by: str | None = None
    ) -> None:
        agent = await self.db.get_agent(agent_id)
        ref = await self.db.get_conversation(str(conversation_id))
        name = agent.name if agent else None
        await self.notify(conversation_id, notices.agent_joined(name))
        payload = {"agent_id": agent_id, "agent_name": name, "auto": auto, "by": by}
        group = ref.group if ref else None
        await self._publish("conversation.assigned", payload, conversation_id=conversation_id, group=group)
        if agent is not None and group is not None and not agent.serves(group):
            # The assignee is outside the group (a supervisor's pick): tell them directly too.
            await self._publish(
                "conversation.assigned", payload, conversation_id=conversation_id, agent_id=agent_id
            )

    async def _positions(self, before: Sequence[QueueItem]) -> None:
        after = await self.db.list_queue()
        known = {i.conversation_id for i in before}
        for conversation_id, position in position_changes(before, after).items():
            if conversation_id in known:  # a newcomer got the `queued` notice already
                await self.notify(int(conversation_id), notices.position_update(position))

    # --- events ---------------------------------------------------------------------------------------

    async def _publish(
        self,
        type_: str,
        payload: dict[str, Any],
        *,
        conversation_id: int | None = None,
        agent_id: str | None = None,
        group: str | None = None,
    ) -> int:
        seq = await self.db.add_event(
            type_, payload, conversation_id=conversation_id, agent_id=agent_id, group=group
        )
        self.bus.publish()
        return seq

    async def _last_agent(self, conversation_id: int) -> str | None:
        ref = await self.db.get_conversation(str(conversation_id))
        return ref.assigned_agent_id if ref else None

    async def events_for(self, agent: AgentInfo, after: int, limit: int = 500) -> list[EventRow]:
        """Stored events after `after` this agent may see (the WebSocket's resume)."""
        rows = await self.db.events_after(after, limit)
        return [r for r in rows if visible_to(r, agent)]

    # --- reads for the API ------------------------------------------------------------------------

    async def queue_for(self, agent: AgentInfo) -> list[dict[str, Any]]:
        """The queue the agent may see (their groups; everything for supervisors), 留言 first per priority."""
        groups: Collection[str] | None = None if agent.role.sees_everything else agent.groups
        items = await self.db.list_queue(groups)
        now = utcnow()
        out = []
        details = await self.runtime.store.queue_rows([int(item.conversation_id) for item in items])
        for item in items:
            found = details.get(int(item.conversation_id))
            if found is None:
                continue
            conv, customer, inbound = found
            out.append(
                {
                    "conversation_id": conv.id,
                    "group": item.group,
                    "priority": item.priority.value,
                    "ticket": item.is_ticket,
                    "position": position_of(item.conversation_id, items, item.group),
                    "queued_at": item.queued_at.isoformat(),
                    "waiting_s": round((now - item.queued_at).total_seconds(), 1),
                    "handoff_reason": conv.handoff_reason,
                    "channel": conv.channel,
                    "customer": {
                        "name": customer["name"] if customer else None,
                        "user_id": customer["user_id"] if customer else None,
                    },
                    "last_message": inbound.text if inbound else None,
                }
            )
        return out
