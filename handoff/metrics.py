"""The report metrics, each defined once: the admin dashboard (`gateway/http/admin_api.py`) and the 受理记录
summary (`handoff/reports.py`) both count with these functions, so their figures cannot disagree.

- Handed off: the conversation was queued for a human (`handed_off_at`), whatever happened next.
- Bot-resolved: not handed off, at least one FAQ answer, and the same customer's next conversation does not
  start with a human request (`HUMAN_REQUEST_REASONS`) within `recontact_window` of this one's end.
- Rates are over all conversations started in the period; None when there were none.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # reports.py imports this module for the definitions
    from handoff.reports import ConversationRecord

__all__ = [
    "HUMAN_REQUEST_REASONS",
    "RECONTACT_WINDOW",
    "ConversationRates",
    "bot_resolved_ids",
    "conversation_rates",
    "is_handed_off",
]

HUMAN_REQUEST_REASONS = frozenset({"asked_human", "complaint"})
RECONTACT_WINDOW = timedelta(minutes=30)


def is_handed_off(record: ConversationRecord) -> bool:
    """Whether the conversation was queued for a human."""
    return record.handed_off_at is not None


def bot_resolved_ids(
    records: Iterable[ConversationRecord], recontact_window: timedelta = RECONTACT_WINDOW
) -> set[str]:
    """The ids of the bot-resolved conversations among `records` (see the module doc)."""
    by_customer: dict[tuple[str, str], list[ConversationRecord]] = defaultdict(list)
    for r in records:
        by_customer[(r.channel, r.customer_id)].append(r)
    resolved: set[str] = set()
    for convs in by_customer.values():
        convs.sort(key=lambda r: (r.started_at, r.conversation_id))
        for i, r in enumerate(convs):
            if is_handed_off(r) or not r.faq_hits:
                continue
            end = r.ended_at or r.started_at
            followed = any(
                later.handoff_reason in HUMAN_REQUEST_REASONS and later.started_at - end <= recontact_window
                for later in convs[i + 1 :]
            )
            if not followed:
                resolved.add(r.conversation_id)
    return resolved


@dataclass(frozen=True, slots=True)
class ConversationRates:
    """Counts of a period's conversations and the rates the dashboard and the report show."""

    total: int
    handed_off: int
    bot_resolved: int

    @property
    def handoff_rate(self) -> float | None:
        """转人工率: handed off / all, 4 decimals."""
        return round(self.handed_off / self.total, 4) if self.total else None

    @property
    def bot_resolution_rate(self) -> float | None:
        """机器人解决率: bot-resolved / all, 4 decimals."""
        return round(self.bot_resolved / self.total, 4) if self.total else None


def conversation_rates(
    records: Iterable[ConversationRecord], recontact_window: timedelta = RECONTACT_WINDOW
) -> ConversationRates:
    """Total, handed off and bot-resolved conversations of a period."""
    recs = list(records)
    return ConversationRates(
        total=len(recs),
        handed_off=sum(1 for r in recs if is_handed_off(r)),
        bot_resolved=len(bot_resolved_ids(recs, recontact_window)),
    )
