"""What the classifier returns: a decision, the chosen entry and ranked alternatives."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from kb.model import FaqEntry


class Decision(StrEnum):
    ANSWER = "answer"  # confident: reply with the FAQ answer
    SUGGEST = "suggest"  # close but unsure: 您是不是想问 + alternatives
    HANDOFF = "handoff"  # complaint, asked for a human, or nothing matched
    SMALLTALK = "smalltalk"  # greeting/thanks etc.: a polite canned reply, never an FAQ answer


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Confidence cut-offs (0..1); they live in config (`matcher:` in gateway.yaml)."""

    answer: float = 0.62
    suggest: float = 0.35


@dataclass(frozen=True, slots=True)
class Candidate:
    """One ranked FAQ entry with the question it matched best and its score (0..1)."""

    entry_id: str
    question: str
    score: float


@dataclass(frozen=True, slots=True)
class Prediction:
    """The result of classify(text)."""

    decision: Decision
    confidence: float
    entry: FaqEntry | None = None
    alternatives: tuple[Candidate, ...] = ()
    # Name of the rule intent that fired (e.g. "complaint", "human", "smalltalk"), if any.
    intent: str | None = None
    priority: str = "normal"  # "high" for complaints
    # Why: "faq", "unsure", "no_match", "complaint", "asked_human", "smalltalk", "empty".
    reason: str = ""
    tokens: tuple[str, ...] = ()
    # A rule intent's own reply (small talk), if it has one.
    reply: str | None = None
