"""How a human conversation ended: the close reason and the agent's wrap-up tags (for reports)."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from enum import StrEnum

from handoff.state import ConversationState

__all__ = ["MAX_TAG_LENGTH", "MAX_TAGS", "CloseReason", "normalize_wrap_up_tags", "state_after"]

MAX_TAGS = 10
MAX_TAG_LENGTH = 20


class CloseReason(StrEnum):
    AGENT = "agent"  # the agent (or a supervisor) closed it
    IDLE = "idle"  # the customer stayed silent past the idle limit
    BACK_TO_BOT = "back_to_bot"  # handed back to the bot: the human part ends, the conversation goes on
    CUSTOMER = "customer"  # the customer ended it (e.g. the web widget's "结束会话")

    @property
    def asks_csat(self) -> bool:
        """Whether the customer is asked the satisfaction question after this ending."""
        # Not after an idle close (they are gone) nor a hand-back (the bot is still talking to them).
        return self in (CloseReason.AGENT, CloseReason.CUSTOMER)


def state_after(reason: CloseReason) -> ConversationState:
    """The conversation state an ending leads to: bot for a hand-back, closed otherwise."""
    return ConversationState.BOT if reason is CloseReason.BACK_TO_BOT else ConversationState.CLOSED


def normalize_wrap_up_tags(tags: Iterable[str], allowed: Iterable[str] | None = None) -> tuple[str, ...]:
    """Trimmed, de-duplicated wrap-up tags in the given order; ValueError names the tag to fix."""
    if isinstance(tags, str):
        raise ValueError(f"wrap-up tags must be a list, got the string {tags!r}")
    allowed_set = set(allowed) if allowed is not None else None
    result: list[str] = []
    for raw in tags:
        if not isinstance(raw, str):
            raise ValueError(f"wrap-up tag must be a string, got {raw!r}")
        tag = unicodedata.normalize("NFKC", raw).strip()
        if not tag:
            continue  # an empty chip in the console form is not worth an error
        if len(tag) > MAX_TAG_LENGTH:
            raise ValueError(f"wrap-up tag {tag!r} is longer than {MAX_TAG_LENGTH} characters")
        if any(unicodedata.category(ch).startswith("C") for ch in tag):
            raise ValueError(f"wrap-up tag {tag!r} contains control characters")
        if allowed_set is not None and tag not in allowed_set:
            raise ValueError(f"unknown wrap-up tag {tag!r}; allowed: {', '.join(sorted(allowed_set))}")
        if tag not in result:
            result.append(tag)
    if len(result) > MAX_TAGS:
        raise ValueError(f"at most {MAX_TAGS} wrap-up tags, got {len(result)}")
    return tuple(result)
