"""While a customer waits for a human: what the bot may still say, and how each message is acknowledged.

Queued (or a 留言 with nobody online), the bot still answers what it is confident about, with the same
thresholds as usual; everything else is acknowledged, so no message goes unanswered, and reaches the
admin's unanswered list. Once an agent has the conversation the bot says nothing (it must not talk over
a human). Pure: the pipeline and the handoff service apply these rules.
"""

from __future__ import annotations

from handoff.state import ConversationState

__all__ = [
    "QUEUED_ANSWERED",
    "QUEUED_UNANSWERED",
    "UNANSWERED_REASONS",
    "bot_answers_while",
    "queued_ack",
    "still_queued",
    "ticket_ack",
]

# Reasons recorded on a customer message of a queued conversation (decision `with_human`).
QUEUED_ANSWERED = "queued_answered"  # the bot answered it from the FAQ
QUEUED_UNANSWERED = "queued_unanswered"  # a question the bot could not answer: the admin's unanswered list
# Intents that are no question for the FAQ (the customer already asked for a human or complained).
UNANSWERED_REASONS = frozenset({"no_match", "unsure", "no_kb", "suggest", "repeated_misses"})


def bot_answers_while(state: ConversationState) -> bool:
    """True while the bot may still answer confident FAQ questions: queued, not yet with an agent."""
    return state is ConversationState.QUEUED


def _ahead(position: int) -> str:
    if position <= 1:
        return "您仍在排队，您是下一位，客服接入后会第一时间回复您。"
    return f"您仍在排队，前面还有 {position - 1} 位，客服接入后会第一时间回复您。"


def still_queued(position: int) -> str:
    """After the bot answered a queued customer: where they stand (they still want a human)."""
    return f"如仍需人工服务，{_ahead(position)}"


_QUEUED_ACKS = (
    "收到，您的消息已转达给人工客服。",
    "好的，已为您记下，客服接入后会一并看到。",
    "明白，这条消息也已转给人工客服。",
)


def queued_ack(position: int, turn: int) -> str:
    """A queued customer's message the bot could not answer: acknowledged, with the place in the queue.

    `turn` varies the wording (e.g. the message id), so several messages in a row do not read like a
    machine repeating itself.
    """
    return _QUEUED_ACKS[turn % len(_QUEUED_ACKS)] + _ahead(position)


_TICKET_ACKS = (
    "收到，这条也已记入您的留言，客服上线后会一并为您处理。",
    "好的，已为您补充到留言里，客服上线后会第一时间回复您。",
    "已记下，感谢您的耐心，客服上线后会一并为您处理。",
)


def ticket_ack(turn: int) -> str:
    """A further message to a 留言 after the first confirmation (handoff.notices.ticket_followup)."""
    return _TICKET_ACKS[turn % len(_TICKET_ACKS)]
