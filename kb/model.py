"""Immutable knowledge-base snapshot types shared by kb, intents, handoff and gateway."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class SourceRef:
    """Where a thing was defined: a file and a 1-based line."""

    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding of `kb check` / `kb lint`, printed as `file:line: entry <id>: message`."""

    file: str
    line: int
    message: str
    entry_id: str | None = None
    column: int | None = None
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        if self.column is not None:
            where += f":{self.column}"
        who = f" entry {self.entry_id}:" if self.entry_id else ""
        return f"{where}:{who} {self.message}"


@dataclass(frozen=True, slots=True)
class FaqEntry:
    """One FAQ entry: a stable id, the questions that ask for it, and its answer."""

    id: str
    question: str
    answer: str
    similar: tuple[str, ...] = ()
    # Per-channel variants of the answer, e.g. {"wechat": "...", "web": "..."}; `answer` is the default.
    answers: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    category: str | None = None
    keywords: tuple[str, ...] = ()
    enabled: bool = True
    source: SourceRef | None = None
    # A custom action (rasa-sdk) that answers instead of, or after, `answer` (issue 15).
    action: str | None = None
    # Slots the action needs; missing ones are asked for first (a form).
    required_slots: tuple[str, ...] = ()
    # The form's name for `validate_<form>`; defaults to the action's name.
    form: str | None = None

    @property
    def form_name(self) -> str | None:
        """The name `validate_<form>` is looked up with (None for an entry without an action)."""
        return self.form or self.action

    @property
    def questions(self) -> tuple[str, ...]:
        """The canonical question followed by every similar question."""
        return (self.question, *self.similar)

    def answer_for(self, channel: str | None) -> str:
        """The answer variant for a channel, or the default answer."""
        if channel and channel in self.answers:
            return self.answers[channel]
        return self.answer


@dataclass(frozen=True, slots=True)
class RuleIntent:
    """A rule intent that wins over FAQ matches (complaint, human request, small talk, ...)."""

    name: str
    action: Literal["handoff", "smalltalk", "answer"]
    keywords: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()
    priority: Literal["normal", "high"] = "normal"
    reply: str | None = None
    # Skill group a handoff from this intent is routed to (handoff issue); None = default group.
    group: str | None = None
    source: SourceRef | None = None
    # A custom action to run for this intent (issue 15), beside its `action` kind.
    custom_action: str | None = None
    required_slots: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SlotSpec:
    """A slot declared in the FAQ's top-level `slots:`: how to extract it, how to ask for it, how long it lives."""

    name: str
    regex: str | None = None
    ask: str | None = None
    ttl_minutes: float | None = None
    # Fixed values that fill the slot when the text contains one (e.g. 顺丰, 圆通).
    values: tuple[str, ...] = ()
    source: SourceRef | None = None


# Default service phrases, Chinese customer-service norms: greet with 您好, never a bare 不知道,
# apologise and give a next step when the bot cannot help. A kb's `replies:` overrides any of them.
DEFAULT_REPLIES: Mapping[str, str] = MappingProxyType(
    {
        "greeting": "您好，欢迎咨询！我是智能客服，请直接输入您的问题，例如“怎么退货”。需要人工服务请回复“转人工”。",
        "fallback": "抱歉，这个问题我暂时没能理解。您可以换个说法再问一次，或回复“转人工”由人工客服为您处理。",
        "suggest_prefix": "您是不是想问：",
        "handoff": "好的，正在为您转接人工客服。",
        "handoff_no_match": "抱歉，这个问题我暂时无法准确回答，已为您转接人工客服。",
        "handoff_complaint": "非常抱歉给您带来不好的体验，已为您优先转接人工客服处理。",
        "non_text": "您好，目前我只能识别文字消息。请用文字描述您的问题，或回复“转人工”联系人工客服。",
    }
)


@dataclass(frozen=True, slots=True)
class Replies:
    """Service phrases by key (greeting, fallback, suggest_prefix, handoff, ...)."""

    texts: Mapping[str, str] = field(default_factory=lambda: DEFAULT_REPLIES)
    # Where each phrase the kb overrides was written (for lint's file:line); defaults have none.
    sources: Mapping[str, SourceRef] = field(default_factory=lambda: MappingProxyType({}))

    def get(self, key: str) -> str:
        return self.texts.get(key) or DEFAULT_REPLIES.get(key, "")


@dataclass(frozen=True, slots=True)
class KnowledgeBase:
    """An immutable, validated snapshot of the FAQ files; `version` is a hash of their content."""

    entries: tuple[FaqEntry, ...]
    version: str
    synonyms: tuple[tuple[str, ...], ...] = ()
    words: tuple[str, ...] = ()
    intents: tuple[RuleIntent, ...] = ()
    replies: Replies = field(default_factory=Replies)
    sources: tuple[str, ...] = ()
    loaded_at: float = 0.0
    slots: Mapping[str, SlotSpec] = field(default_factory=lambda: MappingProxyType({}))

    def get(self, entry_id: str) -> FaqEntry | None:
        """The entry with this id, or None."""
        for entry in self.entries:
            if entry.id == entry_id:
                return entry
        return None

    @property
    def enabled_entries(self) -> tuple[FaqEntry, ...]:
        return tuple(e for e in self.entries if e.enabled)
