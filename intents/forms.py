"""Slots and forms, as pure functions: extract slot values from a customer's text, decide what a form does next.

A FAQ entry with `action` and `required_slots` is a form: kefu asks each missing slot's `ask` text, takes
the next messages as answers (validated by the slot's regex), lets the customer leave (取消 / 转人工 / a
clearly different question), and runs the action when every slot is filled. Nothing here does I/O: the
gateway loads the conversation's slots, calls `step`, runs the action it names and stores the result.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

from kb.model import FaqEntry, SlotSpec
from kb.slots import slot_problem

# Slot regexes only ever see the head of a message: a customer's order number is in the first
# few hundred characters, and a bounded input keeps even a slow pattern's worst case small.
MAX_SCAN_CHARS = 512
# Wrong answers in a row before kefu stops asking and offers a human.
MAX_FORM_RETRIES = 2

CANCEL_WORDS = frozenset({"取消", "不查了", "算了", "不用了", "退出", "cancel", "q", "quit"})

FORM_REPLIES: Mapping[str, str] = {
    "form_cancelled": "好的，已为您取消。还有其他可以帮您的吗？",
    "form_retry": "抱歉，没能识别您发送的内容。",
    "form_gave_up": "抱歉，还是没能识别您提供的信息。您可以稍后再试，或回复“转人工”由人工客服为您处理。",
    "slot_ask": "您好，请提供{slot}，我帮您查询。",
}

StepKind = Literal["pass", "ask", "run", "cancelled", "gave_up"]


@dataclass(frozen=True, slots=True)
class SlotValue:
    """A filled slot and when it was filled (for its TTL)."""

    value: Any
    set_at: datetime


@dataclass(frozen=True, slots=True)
class FormState:
    """The form a conversation is in: which entry, which slot was asked for last, wrong answers so far."""

    entry_id: str
    action: str
    form: str
    required: tuple[str, ...]
    requested: str | None
    retries: int = 0


@dataclass(frozen=True, slots=True)
class Turn:
    """What a customer's message means for slots and forms (the input the gateway acts on)."""

    text: str
    # The FAQ entry the classifier picked with confidence (None when it did not answer), and whether
    # the message asked for a human (complaint, 转人工): those always leave a form.
    answered_entry: FaqEntry | None = None
    wants_human: bool = False


@dataclass(frozen=True, slots=True)
class Step:
    """The decision for one message.

    kind: `pass` — not a form matter, the normal pipeline answers (a form left is in `form=None`);
    `ask` — reply `text` and wait for the answer; `run` — run `action` now (slots are complete);
    `cancelled` / `gave_up` — the form ended, reply `text`.
    """

    kind: StepKind
    form: FormState | None
    slots: Mapping[str, SlotValue] = field(default_factory=dict)
    # Slots newly filled by this message (the gateway stores them; validate_<form> may reject them).
    filled: Mapping[str, Any] = field(default_factory=dict)
    action: str | None = None
    entry_id: str | None = None
    text: str | None = None
    asked: str | None = None
    form_changed: bool = False


def is_cancel(text: str) -> bool:
    """True when the whole message says "stop this form" (取消, 算了...)."""
    return text.strip().strip("。.!！~").lower() in CANCEL_WORDS


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str] | None:
    return None if slot_problem(pattern) else re.compile(pattern)


def extract(text: str, spec: SlotSpec) -> str | None:
    """The slot's value in a customer's text: the regex's match (group 1 if it has one) or a listed value."""
    head = text[:MAX_SCAN_CHARS]
    if spec.regex:
        pattern = _compiled(spec.regex)
        if pattern is not None:
            match = pattern.search(head)
            if match is not None:
                return match.group(1) if pattern.groups else match.group(0)
    for value in spec.values:
        if value and value in head:
            return value
    return None


def live_slots(
    slots: Mapping[str, SlotValue], specs: Mapping[str, SlotSpec], now: datetime
) -> dict[str, SlotValue]:
    """The slots whose TTL has not run out (a slot without a TTL lives as long as the conversation key)."""
    live: dict[str, SlotValue] = {}
    for name, slot in slots.items():
        spec = specs.get(name)
        ttl = spec.ttl_minutes if spec is not None else None
        if ttl is not None and now - slot.set_at > timedelta(minutes=ttl):
            continue
        if slot.value is None:
            continue
        live[name] = slot
    return live


def ask_text(name: str, specs: Mapping[str, SlotSpec], replies: Mapping[str, str] | None = None) -> str:
    """What kefu says to ask for a slot: its `ask`, else a polite generic question."""
    spec = specs.get(name)
    if spec is not None and spec.ask:
        return spec.ask
    template = (replies or {}).get("slot_ask") or FORM_REPLIES["slot_ask"]
    return template.format(slot=name)


def _phrase(key: str, replies: Mapping[str, str] | None) -> str:
    return (replies or {}).get(key) or FORM_REPLIES[key]


def _fill(
    text: str,
    names: Sequence[str],
    specs: Mapping[str, SlotSpec],
    slots: Mapping[str, SlotValue],
    now: datetime,
) -> dict[str, Any]:
    """Values for the named slots found in the text (slots already filled keep theirs unless a new one is given)."""
    filled: dict[str, Any] = {}
    for name in names:
        spec = specs.get(name)
        if spec is None:
            continue
        value = extract(text, spec)
        if value is not None and (name not in slots or slots[name].value != value):
            filled[name] = value
    return filled


def start(
    entry: FaqEntry,
    text: str,
    specs: Mapping[str, SlotSpec],
    slots: Mapping[str, SlotValue],
    now: datetime,
    replies: Mapping[str, str] | None = None,
) -> Step:
    """An entry with an action was asked for: fill what the text holds, ask for the rest or run it."""
    assert entry.action is not None
    filled = _fill(text, entry.required_slots, specs, slots, now)
    merged = {**slots, **{k: SlotValue(v, now) for k, v in filled.items()}}
    missing = [name for name in entry.required_slots if name not in merged]
    if not missing:
        return Step("run", None, merged, filled, action=entry.action, entry_id=entry.id)
    form = FormState(
        entry_id=entry.id,
        action=entry.action,
        form=entry.form_name or entry.action,
        required=entry.required_slots,
        requested=missing[0],
    )
    return Step(
        "ask",
        form,
        merged,
        filled,
        action=entry.action,
        entry_id=entry.id,
        text=ask_text(missing[0], specs, replies),
        asked=missing[0],
        form_changed=True,
    )


def step(
    form: FormState | None,
    turn: Turn,
    specs: Mapping[str, SlotSpec],
    slots: Mapping[str, SlotValue],
    now: datetime,
    replies: Mapping[str, str] | None = None,
) -> Step:
    """What this message does to the conversation's form (see `Step`); `slots` must be live ones."""
    if form is None:
        entry = turn.answered_entry
        if entry is not None and entry.action is not None and not turn.wants_human:
            return start(entry, turn.text, specs, slots, now, replies)
        return Step("pass", None, slots)

    if is_cancel(turn.text):
        return Step("cancelled", None, slots, text=_phrase("form_cancelled", replies), form_changed=True)
    if turn.wants_human:
        return Step("pass", None, slots, form_changed=True)

    missing = [name for name in form.required if name not in slots]
    filled = _fill(turn.text, missing or form.required, specs, slots, now)
    if not filled:
        other = turn.answered_entry
        if other is not None and other.id != form.entry_id:
            # A clearly different question: leave the form and answer it (or start its own form).
            if other.action is not None:
                started = start(other, turn.text, specs, slots, now, replies)
                return replace(started, form_changed=True)
            return Step("pass", None, slots, form_changed=True)
        if form.retries + 1 > MAX_FORM_RETRIES:
            return Step("gave_up", None, slots, text=_phrase("form_gave_up", replies), form_changed=True)
        asked = form.requested or (missing[0] if missing else form.required[0])
        retry = f"{_phrase('form_retry', replies)}{ask_text(asked, specs, replies)}"
        return Step(
            "ask",
            replace(form, retries=form.retries + 1, requested=asked),
            slots,
            action=form.action,
            entry_id=form.entry_id,
            text=retry,
            asked=asked,
            form_changed=True,
        )
    merged = {**slots, **{k: SlotValue(v, now) for k, v in filled.items()}}
    still = [name for name in form.required if name not in merged]
    if still:
        return Step(
            "ask",
            replace(form, requested=still[0], retries=0),
            merged,
            filled,
            action=form.action,
            entry_id=form.entry_id,
            text=ask_text(still[0], specs, replies),
            asked=still[0],
            form_changed=True,
        )
    return Step("run", None, merged, filled, action=form.action, entry_id=form.entry_id, form_changed=True)
