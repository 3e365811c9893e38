"""The pipeline's pure decision for one message (`Outcome`), and what it is while a human is involved.

Split from gateway/pipeline.py (at its size limit): the rules of handoff.waiting applied to a
classified message of a queued or assigned conversation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.message import Message
from handoff.state import ConversationState
from handoff.waiting import QUEUED_ANSWERED, QUEUED_UNANSWERED, UNANSWERED_REASONS, bot_answers_while
from intents.prediction import Decision, Prediction

__all__ = ["WITH_HUMAN", "Outcome", "while_with_human"]

WITH_HUMAN = "with_human"  # a human owns the conversation (queued or assigned): stored, pushed to agents


@dataclass(slots=True)
class Outcome:
    """The pure decision for one message, before anything is written."""

    decision: str
    reason: str | None = None
    confidence: float | None = None
    entry_id: str | None = None
    replies: list[tuple[str, tuple[str, ...], str | None]] = field(default_factory=list)
    miss_streak: int | None = None  # None = unchanged
    handoff_reason: str | None = None
    priority: str = "normal"
    group: str | None = None

    def say(self, text: str, suggestions: Sequence[str] = (), entry_id: str | None = None) -> None:
        self.replies.append((text, tuple(suggestions), entry_id))


def while_with_human(message: Message, state: ConversationState, prediction: Prediction | None) -> Outcome:
    """A message of a queued/assigned conversation: assigned, the bot is silent; queued, it answers a
    question it is confident about (the usual thresholds) and marks the ones it cannot answer."""
    outcome = Outcome(WITH_HUMAN, reason=state.value)
    if not bot_answers_while(state) or prediction is None or message.kind not in ("text", "voice"):
        return outcome
    outcome.confidence = prediction.confidence
    if prediction.decision is Decision.ANSWER and prediction.entry is not None:
        outcome.reason, outcome.entry_id = QUEUED_ANSWERED, prediction.entry.id
        outcome.say(prediction.entry.answer_for(message.channel), (), prediction.entry.id)
    elif prediction.decision is Decision.SUGGEST or prediction.reason in UNANSWERED_REASONS:
        outcome.reason = QUEUED_UNANSWERED
    return outcome
