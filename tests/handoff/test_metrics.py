"""handoff.metrics: the one definition of handed off, bot-resolved and their rates."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from handoff.metrics import bot_resolved_ids, conversation_rates
from handoff.reports import ConversationRecord, FaqHit

T0 = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)


def record(cid: str, customer: str, minutes: int, **values: object) -> ConversationRecord:
    start = T0 + timedelta(minutes=minutes)
    return ConversationRecord(cid, start, "wechat", customer, ended_at=start, **values)  # type: ignore[arg-type]


def test_resolved_needs_an_faq_answer_no_handoff_and_no_human_request_soon_after() -> None:
    hit = (FaqHit("return-how"),)
    records = [
        record("answered", "a", 0, faq_hits=hit),
        record("small-talk", "b", 0),
        record("handed-off", "c", 0, faq_hits=hit, handoff_reason="misses", handed_off_at=T0),
        record("then-asked-human", "d", 0, faq_hits=hit),
        record("d-again", "d", 20, handoff_reason="asked_human", handed_off_at=T0),
        record("later-complaint-ok", "e", 0, faq_hits=hit),
        record("e-again", "e", 45, handoff_reason="complaint", handed_off_at=T0),
    ]
    assert bot_resolved_ids(records) == {"answered", "later-complaint-ok"}
    assert bot_resolved_ids(records, timedelta(minutes=60)) == {"answered"}
    rates = conversation_rates(records)
    assert (rates.total, rates.handed_off, rates.bot_resolved) == (7, 3, 2)
    assert (rates.bot_resolution_rate, rates.handoff_rate) == (round(2 / 7, 4), round(3 / 7, 4))


def test_no_conversations_means_no_rate_rather_than_zero() -> None:
    rates = conversation_rates([])
    assert (rates.total, rates.bot_resolution_rate, rates.handoff_rate) == (0, None, None)
