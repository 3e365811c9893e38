"""Handoff orchestration: what happens around the queue, in order, with the texts from handoff.notices.

The pure rules live in `handoff/` (who is next, who may do what, what the customer is told); this module
applies them to the database (`HandoffDb`), the customer's channel (messages + outbox, so a reply that
cannot be delivered yet is retried, never lost) and the agents' consoles (stored, numbered events that
the WebSocket pushes; the coordination bus wakes the sockets of every process, gateway/coord/events.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.channels.base import Outgoing
from gateway.coord.events import AGENT_EVENTS
from gateway.delivery_state import delivery_view
from gateway.handoff_actions import AgentActions
from gateway.handoff_events import HandoffError, visible_to
from gateway.handoff_steps import HandoffSteps
from gateway.message import Attachment, Message, Reply
from gateway.norms import group_hours, sla_policy
from gateway.storage import MessageRow, OutboxRow, Unit
from gateway.storage.csat import pending_csat, skip_csat
from gateway.storage.events import EventRow
from gateway.storage.handoff_base import STOP_BATCH
from gateway.storage.handoff_store import HandoffDb, session_of
from gateway.storage.notices import store_notice
from gateway.storage.shifts_store import next_shift_start_of, shifts_now
from handoff import notices
from handoff.agents import AgentInfo
from handoff.csat import parse_rating
from handoff.lifecycle import LifecycleRules
from handoff.queue import AssignmentPolicy, Priority, QueueItem
from handoff.routing import RoutingRules
from handoff.service import Clock, HandoffFlow, NoAgentText, SystemClock
from handoff.state import ConversationState
from handoff.store import QueuedConversation

if TYPE_CHECKING:
    from gateway.pipeline import PipelineResult
    from gateway.runtime import Runtime
    from gateway.settings import HandoffSettings

logger = logging.getLogger(__name__)

WITH_HUMAN = "with_human"  # gateway.pipeline.WITH_HUMAN (not imported: the pipeline imports us lazily)
CSAT_DECISION = "csat"
# Messages read per step when _category walks a conversation back from its end.
CATEGORY_PAGE = 20
# A delayed notice's wake-up comes this much after it is due (the loop's timer and the clock differ slightly).
_WAKE_SLACK = 0.02
# The queue API's page size: default and maximum.
QUEUE_PAGE = 50
QUEUE_PAGE_MAX = 500


@dataclass(frozen=True, slots=True)
class Customer:
    """Addressing for a notice: the conversation's channel, account, key and the last inbound target."""

    channel: str
    account: str
    conversation_key: str
    target: dict[str, Any]


@dataclass(slots=True)
class _Together:
    """The writes a customer message's handoff step collected: one unit of work at its end."""

    works: list[Callable[[Unit], Any]] = field(default_factory=list)
    after: list[Callable[[], None]] = field(default_factory=list)  # wake-ups once they are stored
    open: bool = True  # False once stored: a task spawned inside (it copies the context) writes alone


# Set while `HandoffService._together` collects (per task: concurrent messages never share one).
_TOGETHER: ContextVar[_Together | None] = ContextVar("kefu_handoff_together", default=None)


def _collecting() -> _Together | None:
    batch = _TOGETHER.get()
    return batch if batch is not None and batch.open else None


def _stored_together(works: list[Callable[[Unit], Any]], unit: Unit) -> None:
    for work in works:
        if work(unit) is STOP_BATCH:  # the conversation was served before its handoff was routed
            return


class HandoffService(AgentActions):
    """The gateway half of the handoff (one per app, on `runtime.handoff`)."""

    def __init__(self, runtime: Runtime, settings: HandoffSettings, clock: Clock | None = None) -> None:
        self.runtime = runtime
        self.clock = clock or SystemClock()
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
        self.db.joins = self._join  # a 留言's enqueue is stored with its notice (see _together)
        # Wakes the agent WebSockets of every process (gateway/coord/events.py) when an event is stored.
        self.bus = runtime.coord.bus.topic(AGENT_EVENTS)
        self.sockets: set[web.WebSocketResponse] = set()
        self.steps = HandoffSteps(runtime)  # each message's step, after its webhook answered
        # Service norms (gateway.norms): business hours per group, the SLA timers.
        self.hours = group_hours(runtime.settings)
        self.sla = sla_policy(runtime.settings)
        configured = getattr(runtime.settings, "business_hours", None) is not None
        # The orchestration (handoff/service.py) over this class's Notifier and EventLog and HandoffDb.
        self.flow = HandoffFlow(
            self.db,
            self,
            self,
            self.clock,
            rules=self.rules,
            policy=self.policy,
            hours=self.hours,
            groups_configured=bool(settings.groups),
            no_agent=NoAgentText(settings.service_hours, configured),
            shifts=self,
            assign_lock=runtime.coord.assign_lock.hold,
        )

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
        now = self.clock.now()
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
        """Called by the pipeline after each stored message: queue a handoff, or tell the agent. The step
        runs after the webhook answered, each conversation's in order (gateway/handoff_steps.py)."""
        if result.duplicate:
            return
        cid = result.conversation_id
        if result.handoff:
            await self.steps.follow(cid, partial(self.on_queued, cid))
        elif result.decision == WITH_HUMAN:
            # The bot may have answered a queued customer (its reply is in `replies`); where another
            # tool serves the handoffs (WeCom's own staff) kefu acknowledges nothing.
            quiet = (result.channel, result.account) in self.runtime.pipeline.quiet_while_queued
            step = partial(
                self.on_customer_message, cid, result.message_id, bool(result.replies), quiet=quiet
            )
            await self.steps.follow(cid, step)

    def route(
        self, reason: str | None, group: str | None, priority: str | None, category: str | None = None
    ) -> tuple[str, Priority]:
        """Group and priority for a handoff (handoff.service.HandoffFlow.route)."""
        return self.flow.route(reason, group, priority, category)

    async def _category(self, conversation_id: int, first: list[MessageRow] | None = None) -> str | None:
        """The FAQ category the bot last thought the customer meant (its answer or its first suggestion).

        `first`: the newest CATEGORY_PAGE messages when the caller read them already."""
        snapshot = self.runtime.kb.snapshot()
        if snapshot is None:
            return None
        kb = snapshot[0]
        # Newest first, a page at a time: the bot's last answer is nearly always among the latest few
        # messages, so a long conversation is not read whole to find it.
        before: int | None = None
        while page := (
            first
            if first is not None and before is None
            else await self.runtime.store.recent_messages(conversation_id, before=before, limit=CATEGORY_PAGE)
        ):
            for row in page:
                entry = kb.get(row.entry_id) if row.entry_id else None
                if entry is None and row.suggestions:
                    entry = next((e for e in kb.entries if e.question == row.suggestions[0]), None)
                if entry is not None:
                    return entry.category
            if len(page) < CATEGORY_PAGE:  # the conversation's first message: no page before it
                return None
            before = page[-1].id
        return None

    @asynccontextmanager
    async def _together(self) -> AsyncIterator[None]:
        """Store the system notices and console events raised inside as ONE unit of work at the end.

        A handoff raised a notice unit and an event unit (and a queued customer's message its event and
        its acknowledgement): each a trip through the group commit with its own futures and wake-ups. Their
        ids are not needed by the handoff steps, so `notify` and `publish` return 0 meanwhile. A 留言's
        enqueue joins too (`HandoffDb.joins`: no position is counted for it), first, so the step makes one
        write instead of two; if the conversation was served meanwhile it stops the rest.
        """
        batch = _Together()
        token = _TOGETHER.set(batch)
        try:
            yield
        finally:
            _TOGETHER.reset(token)
            batch.open = False
            if batch.works:
                await self.runtime.store.run(partial(_stored_together, batch.works))
                for wake in dict.fromkeys(batch.after):  # each wake-up once, in order
                    wake()

    def _join(self, work: Callable[[Unit], Any]) -> bool:
        """HandoffDb.joins: a write of the storage layer (a 留言's enqueue) joins the open batch."""
        batch = _collecting()
        if batch is None:
            return False
        batch.works.append(work)
        return True

    async def on_queued(self, conversation_id: int) -> None:
        """The pipeline queued a conversation: route it, tell the customer where they stand, assign."""
        # The conversation and the newest page of its messages (for the category) in one trip; no messages
        # when no group is routed by category (reading and decoding 20 rows was a third of the trip).
        # The agents' loads in the same trip: whether the group is staffed (a 留言 or a place in the queue).
        by_category = self.rules.uses_categories
        conv, recent, loads = await self.db.handoff_reads(
            conversation_id, CATEGORY_PAGE if by_category else 0
        )
        if conv is None or conv.state is not ConversationState.QUEUED:
            return
        queued = QueuedConversation(
            conv.id, conv.state, conv.handoff_reason, conv.group, conv.priority, conv.queued_at
        )
        category = await self._category(conv.id, recent) if by_category else None
        async with self._together():
            position = await self.flow.on_queued(queued, category, loads)
        if position is None:
            logger.info("handoff conversation=%s was taken before it was routed", conv.id)

    async def on_customer_message(
        self, conversation_id: int, message_id: int, answered: bool = False, *, quiet: bool = False
    ) -> None:
        """A customer wrote to a queued/assigned conversation: push it to the agent (stored either way)."""
        # The message, its conversation, whether it is a waiting 留言 and its place: one trip (up to four).
        row, read = await self.db.customer_message_reads(conversation_id, message_id, place=not quiet)
        if row is None or row.conversation_id != conversation_id:
            return
        payload = {"message_id": row.id, "text": row.text, "sender_name": row.sender_name, "kind": row.kind}
        async with self._together():
            await self.flow.on_customer_message(
                conversation_id, payload, answered=answered, quiet=quiet, read=read
            )

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
        delay: timedelta | None = None,
        idempotency_key: str | None = None,
        attachment: Attachment | None = None,
        while_queued: bool = False,
    ) -> int:
        """Store an outbound text and queue it in the outbox (one transaction); returns the message id.

        `while_queued` (system notices): stored only if the conversation is still queued then; 0 if not.

        With `delay` the outbox sends it no earlier than that (a notice raised while the pipeline is still
        answering must not overtake the bot's own reply); it is stored at once, so it is seen at once.
        `idempotency_key` (an agent's `Idempotency-Key`): stored as the message's channel message id, so the
        same key returns the message stored the first time and nothing is sent again.
        """
        now = self.clock.now()
        if idempotency_key is None and agent_id is None:
            # A system notice: one unit of work (on SQLite it joins the group commit of the messages being
            # stored, no write transaction of its own; on PostgreSQL one transaction, four statements).
            outbox_now = self.runtime.outbox.clock()

            def work(unit: Unit) -> int | None:
                return store_notice(
                    unit, conversation_id, text, sender, sender_name, now, outbox_now, delay, while_queued
                )

            batch = _collecting()
            if batch is not None:  # stored with the step's other writes (see _together)
                batch.works.append(work)
                batch.after.append(
                    self.runtime.outbox.wake if not delay else lambda: self._wake_outbox(delay)
                )
                return 0
            stored = await self.runtime.store.run(work)
            if stored is None:
                raise HandoffError(404, f"no conversation {conversation_id}")
            self._wake_outbox(delay)
            return stored
        customer = await self._customer(conversation_id)
        if customer is None:
            raise HandoffError(404, f"no conversation {conversation_id}")
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
                kind=attachment.kind if attachment else "text",
                attachment=attachment.as_json() if attachment else None,
            )
            outgoing = Outgoing(
                channel=customer.channel,
                account=customer.account,
                conversation_key=customer.conversation_key,
                text=text,
                sender=sender,
                target=customer.target,
                attachment=attachment,
            )
            await self.runtime.outbox.enqueue_in(tx, outgoing, message_id=row.id, delay=delay)
            if agent_id is not None:
                await self.db.agent_spoke(session_of(tx), conversation_id, now)
        self._wake_outbox(delay)
        return row.id

    def _wake_outbox(self, delay: timedelta | None) -> None:
        if delay:  # a timer, not a sleep: the worker looks again when the row is due
            asyncio.get_running_loop().call_later(
                delay.total_seconds() + _WAKE_SLACK, self.runtime.outbox.wake
            )
        else:
            self.runtime.outbox.wake()

    async def sent_with_key(self, conversation_id: int, key: str) -> int | None:
        """The message already stored with this idempotency key in the conversation's channel, if any."""
        customer = await self._customer(conversation_id)
        if customer is None:
            return None
        async with self.runtime.store.transaction() as tx:
            found = await tx.find_message(customer.channel, customer.account, key)
        return found.id if found is not None else None

    async def delivery_changed(self, row: OutboxRow, status: str, error: str | None) -> None:
        """The outbox finished a send: the consoles showing its conversation get `message.delivery`.

        Agent replies and notices always (a failed one must be seen); the bot's own replies only when
        they did not arrive. Conversations no agent ever had are nobody's console's business.
        """
        if row.message_id is None or (row.sender == "bot" and status == "sent"):
            return
        # The message's conversation and assignee in one read (every notice of a handoff comes here).
        ref = await self.db.conversation_of_message(row.message_id)
        if ref is None or (ref.assigned_agent_id is None and ref.state is not ConversationState.QUEUED):
            return
        payload = {"message_id": row.message_id, "delivery": delivery_view(status, error)}
        where = {"agent_id": ref.assigned_agent_id} if ref.assigned_agent_id else {"group": ref.group}
        await self._publish("message.delivery", payload, conversation_id=int(ref.id), **where)

    # --- assignment -----------------------------------------------------------------------------

    async def assign_waiting(
        self, before: Sequence[QueueItem] | None = None, *, catch_up: bool = False
    ) -> int:
        """Give waiting conversations to free online agents per the policy (HandoffFlow.assign_waiting)."""
        return await self.flow.assign_waiting(before, catch_up=catch_up)

    async def _assigned(
        self, conversation_id: int, agent_id: str, *, auto: bool, by: str | None = None
    ) -> None:
        await self.flow.assigned(conversation_id, agent_id, auto=auto, by=by)

    async def _positions(self, before: Sequence[QueueItem]) -> None:
        await self.flow.update_positions(before)

    # --- events ---------------------------------------------------------------------------------------

    async def next_shift_start(self, group: str, now: datetime) -> datetime | None:
        """The Shifts of handoff.service: when the group's next 排班 shift starts (None: no schedule)."""
        return await next_shift_start_of(self.runtime.store, group, now)

    async def on_shift(self, now: datetime) -> dict[str, set[str]]:
        """The Shifts of handoff.service: group → agents on shift now (empty: no schedule)."""
        return await shifts_now(self.runtime.store, now)

    async def publish(
        self,
        type_: str,
        payload: Mapping[str, Any],
        *,
        conversation_id: int | None = None,
        agent_id: str | None = None,
        group: str | None = None,
    ) -> int:
        """The EventLog of handoff.service: store the event, wake this process's agent sockets."""
        return await self._publish(
            type_, dict(payload), conversation_id=conversation_id, agent_id=agent_id, group=group
        )

    async def _publish(
        self,
        type_: str,
        payload: dict[str, Any],
        *,
        conversation_id: int | None = None,
        agent_id: str | None = None,
        group: str | None = None,
    ) -> int:
        batch = _collecting()
        if batch is not None:  # stored with the step's other writes (see _together)
            work = self.db.event_work(
                type_, payload, conversation_id=conversation_id, agent_id=agent_id, group=group
            )
            batch.works.append(work)
            batch.after.append(self.bus.publish)
            return 0
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

    async def queue_for(
        self, agent: AgentInfo, *, limit: int = QUEUE_PAGE, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None, int]:
        """A page of the queue the agent may see (their groups; everything for supervisors), in serving
        order, each with its position in its group; the cursor of the next page (None at the end); and
        how many wait in all. Two statements whatever the queue length; ValueError for a bad cursor.
        """
        groups: Collection[str] | None = None if agent.role.sees_everything else agent.groups
        page = await self.db.queue_page(groups, limit=limit, cursor=cursor)
        now = self.clock.now()
        out = []
        for row in page.rows:
            item = self.db.page_item(row)
            out.append(
                {
                    "conversation_id": row["id"],
                    "group": item.group,
                    "priority": item.priority.value,
                    "ticket": item.is_ticket,
                    "position": row["pos"],
                    "queued_at": item.queued_at.isoformat(),
                    "waiting_s": round((now - item.queued_at).total_seconds(), 1),
                    "handoff_reason": row["handoff_reason"],
                    "channel": row["channel"],
                    "customer": {"name": row["customer_name"], "user_id": row["customer_user_id"]},
                    "last_message": row["last_message"],
                }
            )
        return out, page.next_cursor, await self.db.queue_length(groups)
