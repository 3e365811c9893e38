"""What happens to each inbound message: dedupe, store, route, classify, collect replies.

One unit of work per message (`Store.run`): the inbound row, its classification, the replies and the
conversation state commit together (on SQLite in a group commit with other messages' units, each in its
own savepoint), so a database error leaves nothing half-written and the platform's retry is handled from
scratch. Replies are collected, not sent (rasa-sdk's CollectingDispatcher); for a channel that may answer
later (`outbox=`, see gateway.channels.delivery) each reply's outbox row is written in the same unit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Protocol

from gateway.channels.base import Outgoing
from gateway.message import Message, Reply, utcnow
from gateway.outcome import WITH_HUMAN, while_with_human
from gateway.outcome import Outcome as _Outcome
from gateway.settings import PipelineSettings
from gateway.storage import Conflict, ConversationRow, MessageRow, Store, Unit
from handoff.canned import render_canned
from handoff.lifecycle import LifecycleRules, is_expired
from handoff.state import ConversationState, check_transition, is_with_human
from intents.choices import intent_group, picked_entry, picked_number, suggested_questions
from intents.prediction import Decision, Prediction
from kb.model import DEFAULT_REPLIES, KnowledgeBase, Replies

if TYPE_CHECKING:
    from gateway.jobs.outbox import Outbox
    from gateway.metrics import Metrics

logger = logging.getLogger(__name__)

# Decisions recorded on inbound messages besides intents.prediction.Decision's values.
NOT_ADDRESSED = "not_addressed"  # a group message that did not @ the bot
EVENT = "event"  # an event that needs no answer (unsubscribe, view...)
NON_TEXT = "non_text"  # an image or other non-text message

HUMAN_EVENT_KEYS = frozenset({"human", "转人工", "人工客服"})
HUMAN_OPTION = "转人工"
# A conflict means a concurrent twin wrote first; one more round re-reads what it wrote.
MAX_CONFLICT_RETRIES = 4
# A held reply row waits this long for the passive-reply decision; undecided (a crash) the worker sends
# it. Longer than WeChat's retries (3 × 5 s), so a retry after a restart can still answer passively.
HOLD_S = 30.0
# The semantic stage's own threads: a backlog of new texts waiting for the encoder (one text per e5 object,
# one object per core) must not fill the default executor, where the spool's fsynced writes (the
# deadline's fallback) run.
_CLASSIFY = ThreadPoolExecutor(min(32, (os.cpu_count() or 1) + 4), thread_name_prefix="kefu-classify")
# Replies only in the webhook answer (None: web), held rows settled by the passive-reply decision, or pending.
OutboxMode = Literal["held", "pending"] | None


class Classifies(Protocol):
    """What the pipeline needs from the intents index: a pure, fast classify."""

    def classify(self, text: str) -> Prediction:
        """The decision for one customer text."""
        ...


class KbSource(Protocol):
    """Where the pipeline gets the current knowledge base and its index (see gateway.kb_reload)."""

    def snapshot(self) -> tuple[KnowledgeBase, Classifies] | None:
        """The current knowledge base and its classifier (None when none could be loaded)."""
        ...


@dataclass(frozen=True, slots=True)
class PipelineResult:
    """What handling one message produced; a duplicate carries the replies stored the first time."""

    conversation_id: int
    message_id: int
    replies: list[Reply]
    duplicate: bool
    decision: str | None
    channel: str = ""
    account: str = ""
    conversation_key: str = ""
    # Ids of the stored reply messages, parallel to `replies` (push_replies enqueues them once each).
    reply_ids: tuple[int, ...] = ()
    # Addressing for later pushes: user_id, chat_type, group_id, channel_msg_id.
    target: Mapping[str, Any] = field(default_factory=dict)
    handoff: bool = False
    reason: str | None = None
    # The replies' outbox rows (id, status), parallel to `replies`; empty without an outbox mode.
    outbox: tuple[tuple[int, str], ...] = ()


class Interceptor(Protocol):
    """May answer a message before the bot sees it (the handoff service: a CSAT rating after a close)."""

    def claims(self, unit: Unit, message: Message, now: datetime) -> bool:
        """Inside the message's unit of work, when its key has no open conversation: True = mine.

        Sync and cheap (it runs for every first message of a conversation, on the database's trip); a
        claimed message is handed to `intercept` outside the unit.
        """
        ...

    async def intercept(self, message: Message) -> PipelineResult | None:
        """Answer a claimed message (in its own transaction), or None to let the bot handle it after all."""
        ...


class ActionTurnLike(Protocol):
    """What the custom-action hook decided (gateway.actions.service.ActionTurn)."""

    pass_through: bool
    decision: str
    reason: str | None
    entry_id: str | None
    confidence: float | None
    replies: list[tuple[str, tuple[str, ...], str | None]]
    handoff_reason: str | None

    def persist(self, unit: Unit, now: datetime) -> None:
        """Store slot and form changes inside the message's unit of work."""
        ...


class ActionHook(Protocol):
    """Custom actions and forms (gateway.actions): asked before the unit of work, as actions do I/O."""

    async def prepare(
        self, message: Message, kb: KnowledgeBase, prediction: Prediction | None
    ) -> ActionTurnLike | None:
        """The turn for a message, or None when the FAQ answers it as usual."""
        ...


# An observer hears about every handled message after it is committed.
Observer = Callable[["PipelineResult"], Awaitable[None]]


class Pipeline:
    """Handles inbound messages for every channel."""

    def __init__(
        self,
        store: Store,
        kb: KbSource,
        settings: PipelineSettings,
        lifecycle: LifecycleRules,
        *,
        outbox: Outbox | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.kb = kb
        self.settings = settings
        self.lifecycle = lifecycle
        self.outbox = outbox
        self.metrics = metrics
        self.clock = clock
        self.hold = timedelta(seconds=HOLD_S)
        self.interceptors: list[Interceptor] = []
        self.observers: list[Observer] = []
        self.actions: ActionHook | None = None
        self.placeholders: Mapping[str, str] = {}  # {service_hours} etc. in answers (gateway.norms)
        # (channel, account)s whose handoffs another tool serves: no bot answers or acknowledgements there.
        self.quiet_while_queued: set[tuple[str, str]] = set()

    async def handle(self, message: Message, *, outbox: OutboxMode = None) -> PipelineResult:
        """Dedupe, store and answer one message (`outbox`: its replies' rows, in the same unit of work)."""
        started = time.perf_counter()
        snapshot = self.kb.snapshot()
        # Classified before the unit of work (the unit holds SQLite's write lock): lexically on the
        # event loop (~0.2 ms); with the semantic stage a text not remembered goes to a worker thread,
        # since embedding it takes milliseconds (the encoder releases the GIL meanwhile).
        prediction = _remembered(message, snapshot)
        if prediction is None:
            if snapshot is not None and getattr(snapshot[1], "semantic", None) is not None:
                loop = asyncio.get_running_loop()
                prediction = await loop.run_in_executor(_CLASSIFY, _predict, message, snapshot)
            else:
                prediction = _predict(message, snapshot)
        turn = None
        if self.actions is not None and snapshot is not None:
            # Outside the unit too: an action is a network call (the hook never raises for a failed one).
            turn = await self.actions.prepare(message, snapshot[0], prediction)
        result = await self._handle_with_retries(
            message, snapshot, prediction, claims=True, turn=turn, outbox=outbox
        )
        if result is None:  # an interceptor claimed it
            result = await self._intercepted(message)
            if result is None:
                result = await self._handle_with_retries(
                    message, snapshot, prediction, claims=False, turn=turn, outbox=outbox
                )
        assert result is not None, "an unclaimed message always has a result"
        if outbox is not None and len(result.outbox) < len(result.replies):
            # An interceptor's replies (a CSAT rating's thanks) were stored in its own transaction.
            result = await self._add_rows(result, outbox)
        if self.metrics is not None:
            self.metrics.observe_handled(
                message.channel,
                result.decision,
                len(result.replies),
                time.perf_counter() - started,
                duplicate=result.duplicate,
            )
        for observe in self.observers:
            try:
                await observe(result)
            except Exception:
                # The message and replies are committed; a follow-up failing must not fail the webhook.
                logger.exception("pipeline observer failed for conversation %s", result.conversation_id)
        return result

    async def _intercepted(self, message: Message) -> PipelineResult | None:
        for interceptor in self.interceptors:
            result = await interceptor.intercept(message)
            if result is not None:
                return result
        return None

    async def _handle_with_retries(
        self,
        message: Message,
        snapshot: tuple[KnowledgeBase, Classifies] | None,
        prediction: Prediction | None,
        *,
        claims: bool,
        turn: ActionTurnLike | None = None,
        outbox: OutboxMode = None,
    ) -> PipelineResult | None:
        for attempt in range(MAX_CONFLICT_RETRIES + 1):
            try:
                # Optimistic (PostgreSQL): reads, then the turn as one statement, no BEGIN and COMMIT; in
                # a transaction when the unit writes more (a first message, a form's slots) or races.
                return await self.store.run(
                    lambda unit, dedupe=attempt > 0: self._handle(
                        unit, message, snapshot, prediction, claims=claims, turn=turn, outbox=outbox,
                        dedupe=dedupe,
                    ),
                    optimistic=turn is None,
                )  # committed  # fmt: skip
            except Conflict:
                if attempt == MAX_CONFLICT_RETRIES:
                    raise
                logger.debug(
                    "pipeline: conflict on %s, re-reading (attempt %d)", message.channel, attempt + 1
                )
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _add_rows(self, result: PipelineResult, status: Literal["held", "pending"]) -> PipelineResult:
        ids = await self.push_replies(result, status=status)  # idempotent; awaited before any ack
        return replace(result, outbox=tuple((i, status) for i in ids))

    async def push_replies(self, result: PipelineResult, *, status: str = "pending") -> list[int]:
        """Deliver a result's replies through the outbox (idempotent: each stored reply is enqueued once)."""
        assert self.outbox is not None, "pipeline has no outbox to push through"
        ids: list[int] = []
        for reply, message_id in zip(result.replies, result.reply_ids, strict=True):
            outgoing = Outgoing(
                channel=result.channel,
                account=result.account,
                conversation_key=result.conversation_key,
                text=reply.text,
                sender=reply.sender,
                target=result.target,
            )
            held_until = self.clock() + self.hold if status == "held" else None
            ids.append(await self.outbox.enqueue(
                outgoing, message_id=message_id, status=status, next_attempt_at=held_until
            ))  # fmt: skip
        return ids

    # --- one unit of work (sync: it runs whole on the database's side, see gateway.storage.unit) -----

    def _handle(
        self,
        tx: Unit,
        message: Message,
        snapshot: tuple[KnowledgeBase, Classifies] | None,
        prediction: Prediction | None,
        *,
        claims: bool,
        turn: ActionTurnLike | None = None,
        outbox: OutboxMode = None,
        dedupe: bool = True,
    ) -> PipelineResult | None:
        # The first attempt skips the dedupe read: a repeated channel message id fails the inbound INSERT
        # (uq_messages_channel_msg), the unit rolls back, and the retry reads the stored answer.
        if message.channel_msg_id is not None and dedupe:
            existing = tx.find_message(message.channel, message.account, message.channel_msg_id)
            if existing is not None:
                return self._duplicate(tx, existing)

        now = self.clock()
        kb = snapshot[0] if snapshot else None
        conversation = tx.open_conversation(message.conversation_key)
        if conversation is not None and is_expired(
            conversation.state, conversation.last_activity_at, now, self.lifecycle
        ):
            check_transition(conversation.state, ConversationState.CLOSED)
            tx.update_conversation(
                conversation.id, state=ConversationState.CLOSED, closed_at=now, closed_reason="idle"
            )
            conversation = None
        if conversation is None and claims and any(i.claims(tx, message, now) for i in self.interceptors):
            return None
        if conversation is None:
            customer_id = tx.upsert_customer(
                message.channel, message.account, message.user_id, message.user_name, now
            )
            conversation = tx.create_conversation(
                customer_id=customer_id,
                channel=message.channel,
                account=message.account,
                conversation_key=message.conversation_key,
                now=now,
                kb_version=kb.version if kb else None,
            )
        elif message.user_name:  # the display name may have changed (a WeChat customer's never does)
            tx.upsert_customer(message.channel, message.account, message.user_id, message.user_name, now)

        offered: tuple[str, ...] = ()
        if message.kind == "text" and picked_number(message.text) is not None:
            # "2" right after 您是不是想问 means the second suggestion, not a new question.
            offered = tx.last_suggestions(conversation.id)
        outcome = self._decide(message, conversation, snapshot, offered, prediction, turn)
        target = message.target()
        stored = dict(
            conversation_id=conversation.id,
            conversation_key=message.conversation_key,
            channel=message.channel,
            account=message.account,
            kb_version=kb.version if kb else None,
        )
        inbound_row = dict(
            **stored,
            direction="in",
            sender="customer",
            sender_name=message.user_name,
            text=message.text,
            **message.stored_kind(),
            channel_msg_id=message.channel_msg_id,
            decision=outcome.decision,
            reason=outcome.reason,
            entry_id=outcome.entry_id,
            confidence=outcome.confidence,
            target=target,
            created_at=message.received_at if message.received_at.tzinfo else now,
        )
        # Unknown {names} stay as they are (kb lint warns about them).
        texts = [render_canned(template, self.placeholders) for template, _, _ in outcome.replies]
        reply_rows = [
            dict(**stored, direction="out", sender="bot", text=text, decision=outcome.decision,
                 entry_id=entry_id, suggestions=suggestions, created_at=now)
            for text, (_, suggestions, entry_id) in zip(texts, outcome.replies, strict=True)
        ]  # fmt: skip
        where = {k: getattr(message, k) for k in ("channel", "account", "conversation_key")}
        due = now + self.hold if outbox == "held" else now
        boxes = None if outbox is None else [
            dict(**where, text=text, sender="bot", target=target, now=now, status=outbox, next_attempt_at=due)
            for text in texts
        ]  # fmt: skip
        changes: dict[str, Any] = {"last_activity_at": now}
        if kb is not None:
            changes["kb_version"] = kb.version
        if outcome.miss_streak is not None:
            changes["miss_streak"] = outcome.miss_streak
        if outcome.handoff_reason is not None:
            check_transition(conversation.state, ConversationState.QUEUED)
            changes.update(
                state=ConversationState.QUEUED,
                priority=outcome.priority,
                handoff_reason=outcome.handoff_reason,
                group=outcome.group,
                queued_at=now,
                miss_streak=0,
            )
            logger.info(
                "handoff conversation=%s channel=%s reason=%s priority=%s",
                conversation.id,
                message.channel,
                outcome.handoff_reason,
                outcome.priority,
            )
        # The message, its replies, their outbox rows and the conversation's update: one statement on
        # PostgreSQL (gateway/storage/turns.py).
        inbound, stored_replies, box_ids = tx.add_turn(
            inbound_row, reply_rows, boxes, (conversation.id, changes)
        )
        replies = [_reply(row) for row in stored_replies]
        reply_ids = [row.id for row in stored_replies]
        rows = [(box_id, outbox) for box_id in box_ids]
        if turn is not None and outcome.decision != WITH_HUMAN:
            turn.persist(tx, now)
        return PipelineResult(
            conversation_id=conversation.id,
            message_id=inbound.id,
            replies=replies,
            duplicate=False,
            decision=outcome.decision,
            channel=message.channel,
            account=message.account,
            conversation_key=message.conversation_key,
            reply_ids=tuple(reply_ids),
            target=target,
            handoff=outcome.handoff_reason is not None,
            reason=outcome.handoff_reason or outcome.reason,
            outbox=tuple(rows),
        )

    def _duplicate(self, tx: Unit, existing: MessageRow) -> PipelineResult:
        rows = tx.replies_to(existing.id)
        outbox = tuple(found for r in rows if (found := tx.outbox_for(r.id)) is not None)
        return PipelineResult(
            conversation_id=existing.conversation_id,
            message_id=existing.id,
            replies=[_reply(r) for r in rows],
            duplicate=True,
            decision=existing.decision,
            channel=existing.channel,
            account=existing.account,
            conversation_key=existing.conversation_key,
            reply_ids=tuple(r.id for r in rows),
            target=existing.target,
            reason=existing.reason,
            outbox=outbox,
        )

    # --- the decision (pure) -----------------------------------------------------------------------

    def _decide(
        self,
        message: Message,
        conversation: ConversationRow,
        snapshot: tuple[KnowledgeBase, Classifies] | None,
        offered: tuple[str, ...] = (),
        prediction: Prediction | None = None,
        turn: ActionTurnLike | None = None,
    ) -> _Outcome:
        replies = snapshot[0].replies if snapshot else Replies(DEFAULT_REPLIES)
        if is_with_human(conversation.state):  # agents are told; queued, the bot answers what it is sure of
            quiet = (message.channel, message.account) in self.quiet_while_queued or snapshot is None
            return while_with_human(message, conversation.state, None if quiet else prediction)
        if message.chat_type == "group" and not message.to_bot:
            return _Outcome(NOT_ADDRESSED)
        if snapshot is None:
            # No knowledge base could be loaded at all: be honest and get a human.
            outcome = _Outcome(Decision.HANDOFF.value, reason="no_kb")
            return self._handoff(outcome, replies, "handoff_no_match", "no_kb")
        kb, classifier = snapshot

        if message.kind == "event":
            return self._event(message, kb)
        if message.kind not in ("text", "voice") or not (message.text.strip() or message.kind == "text"):
            outcome = _Outcome(NON_TEXT, reason=message.kind)
            outcome.say(replies.get("non_text"), (HUMAN_OPTION,))
            return outcome
        if turn is not None and not turn.pass_through:
            return _action_outcome(turn)

        picked = picked_entry(kb, offered, message.text)
        if picked is not None:
            outcome = _Outcome(
                Decision.ANSWER.value, reason="picked_suggestion", entry_id=picked.id, confidence=1.0
            )
            outcome.miss_streak = 0
            outcome.say(picked.answer_for(message.channel), (), picked.id)
            return outcome

        if prediction is None:
            prediction = classifier.classify(message.text)
        outcome = _Outcome(
            prediction.decision.value, reason=prediction.reason, confidence=prediction.confidence
        )
        decision = prediction.decision
        if decision is Decision.ANSWER:
            outcome.miss_streak = 0
            if prediction.entry is not None:
                outcome.entry_id = prediction.entry.id
                outcome.say(prediction.entry.answer_for(message.channel), (), prediction.entry.id)
            else:  # a rule intent with its own answer
                outcome.say(prediction.reply or replies.get("fallback"))
            return outcome
        if decision is Decision.SMALLTALK or prediction.reason == "empty":
            outcome.say(prediction.reply or replies.get("greeting"))
            return outcome
        if decision is Decision.SUGGEST:
            streak = conversation.miss_streak + 1
            if streak >= self.settings.misses_before_handoff:
                return self._handoff(outcome, replies, "handoff_no_match", "repeated_misses")
            outcome.miss_streak = streak
            questions = suggested_questions(kb, prediction)
            if not questions:
                outcome.say(replies.get("fallback"), (HUMAN_OPTION,))
                return outcome
            numbered = "\n".join(f"{i}. {q}" for i, q in enumerate(questions, 1))
            outcome.say(f"{replies.get('suggest_prefix')}\n{numbered}", questions)
            return outcome
        # Decision.HANDOFF: complaint, asked for a human, or nothing matched.
        if prediction.reason == "complaint":
            outcome.priority = "high"
            key = "handoff_complaint"
        elif prediction.reason == "asked_human":
            key = "handoff"
        else:
            key = "handoff_no_match"
        outcome.group = intent_group(kb, prediction.intent)
        return self._handoff(outcome, replies, key, prediction.reason or "handoff", text=prediction.reply)

    def _event(self, message: Message, kb: KnowledgeBase) -> _Outcome:
        event = (message.event or "").lower()
        if event == "subscribe":
            outcome = _Outcome(Decision.SMALLTALK.value, reason="subscribe")
            outcome.say(kb.replies.get("greeting"))
            return outcome
        if event == "click" and message.event_key:
            key = message.event_key.strip()
            entry = kb.get(key)
            if entry is not None and entry.enabled:
                outcome = _Outcome(Decision.ANSWER.value, reason="menu", entry_id=entry.id, confidence=1.0)
                outcome.miss_streak = 0
                outcome.say(entry.answer_for(message.channel), (), entry.id)
                return outcome
            if key.lower() in HUMAN_EVENT_KEYS:
                outcome = _Outcome(Decision.HANDOFF.value, reason="asked_human", confidence=1.0)
                return self._handoff(outcome, kb.replies, "handoff", "asked_human")
            logger.warning("menu click with unknown key %r on %s/%s", key, message.channel, message.account)
            outcome = _Outcome(EVENT, reason="unknown_menu_key")
            outcome.say(kb.replies.get("fallback"), (HUMAN_OPTION,))
            return outcome
        return _Outcome(EVENT, reason=event or None)

    @staticmethod
    def _handoff(
        outcome: _Outcome,
        replies: Replies,
        reply_key: str,
        reason: str,
        *,
        text: str | None = None,
    ) -> _Outcome:
        outcome.decision = Decision.HANDOFF.value
        outcome.handoff_reason = reason
        outcome.say(text or replies.get(reply_key))
        return outcome


def _remembered(message: Message, snapshot: tuple[KnowledgeBase, Classifies] | None) -> Prediction | None:
    """The classifier's memoised prediction for this message's text, without computing anything."""
    memoised = getattr(snapshot[1], "memoised", None) if snapshot is not None else None
    if memoised is None or message.kind not in ("text", "voice") or not message.text.strip():
        return None
    if message.chat_type == "group" and not message.to_bot:
        return None
    return memoised(message.text)


def _action_outcome(turn: ActionTurnLike) -> _Outcome:
    """A custom action's (or form's) answer as the pipeline's outcome."""
    outcome = _Outcome(turn.decision, reason=(turn.reason or "")[:32] or None, confidence=turn.confidence)
    outcome.entry_id = turn.entry_id
    outcome.miss_streak = 0
    outcome.replies.extend(turn.replies)
    if turn.handoff_reason is not None:
        outcome.decision = Decision.HANDOFF.value
        outcome.handoff_reason = turn.handoff_reason
    return outcome


def _predict(message: Message, snapshot: tuple[KnowledgeBase, Classifies] | None) -> Prediction | None:
    """The classification `_decide` will want for this message, or None when it wants none."""
    if snapshot is None or message.kind not in ("text", "voice") or not message.text.strip():
        return None
    if message.chat_type == "group" and not message.to_bot:
        return None
    return snapshot[1].classify(message.text)


def _reply(row: MessageRow) -> Reply:
    return Reply(
        conversation_key=row.conversation_key,
        text=row.text,
        sender=row.sender,  # type: ignore[arg-type]
        suggestions=row.suggestions,
        entry_id=row.entry_id,
        sender_name=row.sender_name,
    )
