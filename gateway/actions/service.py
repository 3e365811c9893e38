"""The pipeline's custom-action hook: forms, slots and action calls for one inbound message.

`ActionService.prepare` runs before the message's unit of work (an action is network I/O and must not hold
SQLite's write lock): it reads the key's slots and form, lets `intents.forms.step` decide, asks the form's
`validate_<form>` about new slot values, runs the action (and its FollowupActions), and returns an
`ActionTurn`. The pipeline answers with the turn's replies and calls `ActionTurn.persist` inside the unit,
so slot changes commit with the message and its replies. Any failure becomes a polite apology with a next
step (`actions.on_error`), a log line naming the action, and a metric; never an exception to the webhook.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from gateway.actions.protocol import ActionReply, ActionResponse, HistoryItem, build_request, domain_for
from gateway.actions.runners import ActionFailed, ActionRunner, runner_for
from gateway.actions.settings import ActionsSettings
from gateway.message import Message, utcnow
from gateway.storage import Store, Unit, slots_store
from handoff.state import is_with_human
from intents import forms
from intents.prediction import Decision, Prediction
from kb.model import FaqEntry, KnowledgeBase
from kb.slots import ACTION_ONLY_ANSWER, intent_entry

if TYPE_CHECKING:
    from gateway.metrics import Metrics

logger = logging.getLogger(__name__)

HUMAN_OPTION = "转人工"
ACTION = "action"  # decision recorded on a message answered by a custom action
FORM = "form"  # decision recorded on a form turn (asked for a slot, cancelled...)
WANTS_HUMAN = frozenset({"asked_human", "complaint"})

ERROR_OFFER = "抱歉，查询系统暂时没有响应，没能为您查到结果。"
ERROR_NEXT = "您可以稍后再试，或回复“转人工”由人工客服为您处理。"
ERROR_HANDOFF = "抱歉，查询系统暂时没有响应，没能为您查到结果，已为您转接人工客服，请稍候。"

ReplyTuple = tuple[str, tuple[str, ...], str | None]


@dataclass(slots=True)
class ActionTurn:
    """The hook's decision for one message; `pass_through` leaves the answer to the normal pipeline."""

    conversation_key: str
    pass_through: bool = False
    decision: str = ACTION
    reason: str | None = None
    entry_id: str | None = None
    confidence: float | None = None
    replies: list[ReplyTuple] = field(default_factory=list)
    handoff_reason: str | None = None
    slot_changes: dict[str, Any] = field(default_factory=dict)
    form: slots_store.StoredForm | None = None
    form_changed: bool = False

    def persist(self, unit: Unit, now: datetime) -> None:
        """Store the slot and form changes inside the message's unit of work."""
        if self.slot_changes:
            slots_store.set_slots(unit, self.conversation_key, self.slot_changes, now)
        if self.form_changed:
            slots_store.set_form(unit, self.conversation_key, self.form, now)


@dataclass(frozen=True, slots=True)
class _State:
    slots: list[slots_store.StoredSlot]
    form: slots_store.StoredForm | None
    history: list[slots_store.HistoryRow]


class ActionService:
    """Runs custom actions for the pipeline (see the module docstring)."""

    def __init__(
        self,
        settings: ActionsSettings,
        store: Store,
        *,
        metrics: Metrics | None = None,
        runner: ActionRunner | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.store = store
        self.runner = runner or runner_for(settings.url, settings.modules, settings.timeout_s)
        self.clock = clock
        self._names: frozenset[str] | None = None
        self._kb_uses: tuple[str, bool] | None = None  # (kb version, does it use actions)
        self._runs = self._failures = None
        if metrics is not None:
            from prometheus_client import Counter

            self._runs = Counter(
                "kefu_action_runs",
                "Custom action calls by outcome",
                ["action", "outcome"],
                registry=metrics.registry,
            )
            self._failures = Counter(
                "kefu_action_failures",
                "Failed custom action calls by kind",
                ["action", "kind"],
                registry=metrics.registry,
            )

    async def start(self) -> None:
        """Load the in-process modules or open the action server's session; learn the action names."""
        if self.runner is None:
            return
        await self.runner.start()
        await self._known_names()

    async def close(self) -> None:
        """Release the runner."""
        if self.runner is not None:
            await self.runner.close()

    async def _known_names(self) -> frozenset[str] | None:
        if self._names is None and self.runner is not None:
            try:
                self._names = frozenset(await self.runner.names())
            except Exception as exc:  # the server may come up later; validation waits for it
                logger.warning("actions: could not list the action server's actions: %s", type(exc).__name__)
        return self._names

    def _uses_actions(self, kb: KnowledgeBase) -> bool:
        if self._kb_uses is None or self._kb_uses[0] != kb.version:
            uses = any(e.action for e in kb.entries) or any(i.custom_action for i in kb.intents)
            self._kb_uses = (kb.version, uses)
        return self._kb_uses[1]

    async def lookup(self, action: str, conversation_key: str, channel: str, kb: KnowledgeBase) -> list[str]:
        """Run `action` for the agent console with the conversation's tracker (slots, recent history).

        The texts it utters come back to the caller (`actions.order_info`: the customer panel's 订单信息);
        nothing is stored, no slot changes, nothing is sent to the customer. ActionFailed when it fails.
        """
        if self.runner is None:
            raise ActionFailed(action, "not_configured")

        def read(unit: Unit) -> tuple[list[slots_store.StoredSlot], list[slots_store.HistoryRow]]:
            return slots_store.load_slots(unit, conversation_key), slots_store.history(unit, conversation_key)

        slots, past = await self.store.read(read)
        last_in = next((h.text for h in reversed(past) if h.direction == "in"), "")
        request = build_request(
            action=action,
            sender_id=conversation_key,
            text=last_in,
            intent=None,
            confidence=None,
            slots={s.name: s.value for s in slots},
            entities={},
            history=[HistoryItem(h.direction, h.text, h.created_at, h.entry_id) for h in past],
            domain=domain_for(kb),
            channel=channel,
        )
        response = await self._call(action, request)
        return [_text(r) for r in response.replies]

    # --- the hook ----------------------------------------------------------------------------------

    async def prepare(
        self, message: Message, kb: KnowledgeBase, prediction: Prediction | None
    ) -> ActionTurn | None:
        """The action/form decision for a message, or None when the normal pipeline answers it."""
        if self.runner is None or not self._uses_actions(kb):
            return None
        if message.kind not in ("text", "voice") or not message.text.strip():
            return None
        if message.chat_type == "group" and not message.to_bot:
            return None
        state = await self.store.read(lambda unit: self._read(unit, message))
        if state is None:
            return None
        try:
            return await self._turn(message, kb, prediction, state)
        except Exception as exc:  # a bug here must cost the customer an apology, not the webhook a 500
            logger.exception("actions: turn failed for %s", message.channel)
            return self._failed(
                ActionTurn(conversation_key=message.conversation_key),
                ActionFailed("kefu", "exception", type(exc).__name__),
                None,
            )

    async def _turn(
        self, message: Message, kb: KnowledgeBase, prediction: Prediction | None, state: _State
    ) -> ActionTurn | None:
        now = self.clock()
        stored = {s.name: forms.SlotValue(s.value, s.set_at) for s in state.slots}
        live = forms.live_slots(stored, kb.slots, now)
        form = None
        stale = False
        if state.form is not None:
            f = state.form
            form = forms.FormState(f.entry_id, f.action, f.form, f.required, f.requested, f.retries)
            ttl = timedelta(minutes=self.settings.form_ttl_minutes)
            if f.asked_at is not None and now - f.asked_at > ttl:
                # A question left unanswered for long: the customer has moved on, so must the form.
                form, stale = None, True
        answered = None
        if prediction is not None and prediction.decision is Decision.ANSWER:
            if prediction.entry is not None:
                answered = kb.get(prediction.entry.id) or prediction.entry
            elif prediction.intent is not None:
                answered = _entry(kb, f"intent.{prediction.intent}")
        wants_human = (
            prediction is not None
            and prediction.decision is Decision.HANDOFF
            and (prediction.reason or "") in WANTS_HUMAN
        )
        turn = forms.Turn(message.text, answered, wants_human)
        replies = kb.replies.texts
        step = forms.step(form, turn, kb.slots, live, now, replies)
        out = ActionTurn(conversation_key=message.conversation_key)
        # Expired slots are dropped from the table when the key next changes anything.
        expired = {name: None for name in stored if name not in live}
        if step.kind == "pass":
            if not step.form_changed and not stale:
                return None
            out.pass_through, out.form_changed, out.slot_changes = True, True, expired
            return out
        out.entry_id = step.entry_id
        out.confidence = prediction.confidence if prediction is not None else None
        out.slot_changes = {**expired, **step.filled}
        out.form_changed = step.form_changed or stale
        if step.kind in ("cancelled", "gave_up"):
            out.decision, out.reason = FORM, step.kind
            suggestions = (HUMAN_OPTION,) if step.kind == "gave_up" else ()
            out.replies.append((step.text or "", suggestions, None))
            return out
        entry = _entry(kb, step.entry_id or "")
        context = _Context(message, kb, state, step, entry)
        slots_now = {name: slot.value for name, slot in step.slots.items()}
        form_name = (entry.form_name if entry is not None else None) or step.action or ""
        if step.filled and form_name:
            try:
                rejected, said, slots_now = await self._validate(context, form_name, slots_now)
            except ActionFailed as exc:
                return self._failed(out, exc, entry)
            if rejected:
                out.slot_changes.update({name: None for name in rejected})
                return self._reask(out, step, entry, kb, said, slots_now, form)
            out.slot_changes.update({k: v for k, v in slots_now.items() if k in step.filled})
            out.replies.extend(said)
        if step.kind == "ask":
            out.decision, out.reason = FORM, f"ask:{step.asked}"
            out.replies.append((step.text or "", (), step.entry_id))
            out.form = _stored(step.form)
            return out
        # run: every required slot is filled
        out.decision, out.reason = ACTION, step.action
        out.form, out.form_changed = None, out.form_changed or state.form is not None
        return await self._run(out, context, step.action or "", slots_now)

    def _read(self, unit: Unit, message: Message) -> _State | None:
        """What prepare needs, in one read; None for a platform retry or a conversation with a human."""
        if message.channel_msg_id is not None and unit.find_message(
            message.channel, message.account, message.channel_msg_id
        ):
            return None  # the pipeline answers a retry from the stored replies
        conversation = unit.open_conversation(message.conversation_key)
        if conversation is not None and is_with_human(conversation.state):
            return None
        key = message.conversation_key
        return _State(
            slots_store.load_slots(unit, key),
            slots_store.load_form(unit, key),
            slots_store.history(unit, key),
        )

    async def _validate(
        self, context: _Context, form_name: str, slots: dict[str, Any]
    ) -> tuple[list[str], list[ReplyTuple], dict[str, Any]]:
        """Ask `validate_<form_name>` (when the action set has one) about this message's new slot values."""
        validator = f"validate_{form_name}"
        names = await self._known_names()
        if names is None or validator not in names:
            return [], [], slots
        candidates = dict(context.step.filled)
        known = {k: v for k, v in slots.items() if k not in candidates}
        request = context.request(validator, known, candidates, active_form=form_name)
        response = await self._call(validator, request)
        validated = dict(slots)
        rejected: list[str] = []
        for name, value in response.slot_sets.items():
            if name == "requested_slot":
                continue
            validated[name] = value
            if value is None and name in candidates:
                rejected.append(name)
        said = [(_text(r), r.suggestions, None) for r in response.replies]
        return rejected, said, {k: v for k, v in validated.items() if v is not None}

    def _reask(
        self,
        out: ActionTurn,
        step: forms.Step,
        entry: FaqEntry | None,
        kb: KnowledgeBase,
        said: list[ReplyTuple],
        slots: dict[str, Any],
        form: forms.FormState | None,
    ) -> ActionTurn:
        """A validator rejected a value: say why and ask again (the form stays open)."""
        required = entry.required_slots if entry is not None else (form.required if form else ())
        missing = [name for name in required if name not in slots]
        asked = missing[0] if missing else (step.asked or "")
        retries = (form.retries + 1) if form is not None else 1
        out.decision, out.reason = FORM, f"invalid:{asked}"
        out.replies.extend(said)
        if retries > forms.MAX_FORM_RETRIES:
            out.reason = "gave_up"
            out.replies.append((forms._phrase("form_gave_up", kb.replies.texts), (HUMAN_OPTION,), None))
            out.form, out.form_changed = None, True
            return out
        out.replies.append((forms.ask_text(asked, kb.slots, kb.replies.texts), (), step.entry_id))
        action = step.action or (entry.action if entry is not None else "") or ""
        out.form = slots_store.StoredForm(
            step.entry_id or "",
            action,
            (entry.form_name if entry is not None else None) or action,
            tuple(required),
            asked,
            retries,
        )
        out.form_changed = True
        return out

    async def _run(
        self, out: ActionTurn, context: _Context, action: str, slots: dict[str, Any]
    ) -> ActionTurn:
        """Run the action and its FollowupActions; map replies, slots and a handoff onto the turn."""
        next_action: str | None = action
        calls = 0
        while next_action and next_action != "action_listen" and calls <= self.settings.max_followups:
            request = context.request(next_action, slots, {}, active_form=None)
            try:
                response = await self._call(next_action, request)
            except ActionFailed as exc:
                return self._failed(out, exc, context.entry)
            calls += 1
            for reply in response.replies:
                out.replies.append((_text(reply), reply.suggestions, out.entry_id))
            for name, value in response.slot_sets.items():
                if name == "requested_slot":
                    continue
                out.slot_changes[name] = value
                if value is None:
                    slots.pop(name, None)
                else:
                    slots[name] = value
            if response.handoff_reason is not None:
                out.handoff_reason = f"action:{response.handoff_reason}"[:64]
                break
            next_action = response.followup
        if not out.replies and out.handoff_reason is None:
            # An action that says nothing must not leave the customer without an answer.
            entry = context.entry
            fallback = entry.answer if entry is not None and entry.answer != ACTION_ONLY_ANSWER else None
            out.replies.append(
                (fallback or context.kb.replies.get("fallback"), (HUMAN_OPTION,), out.entry_id)
            )
        return out

    async def _call(self, action: str, request: dict[str, Any]) -> ActionResponse:
        assert self.runner is not None
        try:
            response = await self.runner.run(request)
        except ActionFailed:
            raise
        except Exception as exc:  # a runner bug must not become a 500 either
            raise ActionFailed(action, "exception", type(exc).__name__) from exc
        if self._runs is not None:
            self._runs.labels(action, "ok").inc()
        return response

    def _failed(self, out: ActionTurn, exc: ActionFailed, entry: FaqEntry | None) -> ActionTurn:
        """The apology and next step for a failed action (`actions.on_error`), logged and counted."""
        logger.warning("action %s failed (%s): %s", exc.action, exc.kind, exc.detail)
        if self._runs is not None and self._failures is not None:
            self._runs.labels(exc.action, "error").inc()
            self._failures.labels(exc.action, exc.kind).inc()
        out.decision, out.reason = ACTION, f"action_error:{exc.kind}"
        out.form, out.form_changed = None, True
        if self.settings.on_error == "handoff":
            out.replies = [(ERROR_HANDOFF, (), None)]
            out.handoff_reason = "action_error"
            return out
        text = ERROR_OFFER
        if entry is not None and entry.answer and entry.answer != ACTION_ONLY_ANSWER:
            text = f"{text}\n{entry.answer}"
        out.replies = [(f"{text}\n{ERROR_NEXT}", (HUMAN_OPTION,), None)]
        return out


@dataclass(slots=True)
class _Context:
    """Everything a request for this message needs."""

    message: Message
    kb: KnowledgeBase
    state: _State
    step: forms.Step
    entry: FaqEntry | None

    def request(
        self, action: str, slots: Mapping[str, Any], candidates: Mapping[str, Any], *, active_form: str | None
    ) -> dict[str, Any]:
        history = [HistoryItem(h.direction, h.text, h.created_at, h.entry_id) for h in self.state.history]
        all_slots = dict(slots)
        if active_form and self.step.asked:
            all_slots["requested_slot"] = self.step.asked
        return build_request(
            action=action,
            sender_id=self.message.conversation_key,
            text=self.message.text,
            intent=self.step.entry_id,
            confidence=1.0,
            slots=all_slots,
            entities=dict(self.step.filled),
            history=history,
            domain=domain_for(self.kb),
            channel=self.message.channel,
            active_form=active_form,
            candidates=candidates,
        )


def _entry(kb: KnowledgeBase, entry_id: str) -> FaqEntry | None:
    """An FAQ entry, or a rule intent with a custom action (as `intent.<name>`)."""
    if entry_id.startswith("intent."):
        for intent in kb.intents:
            if f"intent.{intent.name}" == entry_id:
                return intent_entry(intent)
        return None
    return kb.get(entry_id)


def _stored(form: forms.FormState | None) -> slots_store.StoredForm | None:
    if form is None:
        return None
    return slots_store.StoredForm(
        form.entry_id, form.action, form.form, form.required, form.requested, form.retries
    )


def _text(reply: ActionReply) -> str:
    """A reply's text; an image goes along as its URL until channels send images (web shows the link)."""
    if reply.image:
        return f"{reply.text}\n{reply.image}" if reply.text else reply.image
    return reply.text
