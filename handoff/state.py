"""Conversation states and the transitions allowed between them, written down once."""

from __future__ import annotations

from enum import StrEnum


class ConversationState(StrEnum):
    BOT = "bot"  # the bot answers
    QUEUED = "queued"  # handed off, waiting for an agent
    ASSIGNED = "assigned"  # an agent has it; the bot stays quiet
    CLOSED = "closed"  # ended; the next customer message opens a new conversation


HUMAN_STATES = frozenset({ConversationState.QUEUED, ConversationState.ASSIGNED})

ALLOWED_TRANSITIONS: dict[ConversationState, frozenset[ConversationState]] = {
    ConversationState.BOT: frozenset({ConversationState.QUEUED, ConversationState.CLOSED}),
    ConversationState.QUEUED: frozenset(
        {ConversationState.ASSIGNED, ConversationState.BOT, ConversationState.CLOSED}
    ),
    ConversationState.ASSIGNED: frozenset(
        {ConversationState.QUEUED, ConversationState.BOT, ConversationState.CLOSED}
    ),
    ConversationState.CLOSED: frozenset(),
}


class InvalidTransition(ValueError):
    """A state change the lifecycle does not allow (e.g. closing a closed conversation)."""


def check_transition(current: ConversationState, new: ConversationState) -> None:
    """Raise InvalidTransition unless `current -> new` is allowed."""
    if new not in ALLOWED_TRANSITIONS[current]:
        raise InvalidTransition(f"conversation cannot go from {current.value} to {new.value}")


def is_with_human(state: ConversationState) -> bool:
    """True while a human owns the conversation (queued or assigned): the bot must stay quiet."""
    return state in HUMAN_STATES
