"""Queue order and positions: complaints first, 留言 tickets before live chats, FIFO, per group."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from handoff.queue import (
    Priority,
    QueueItem,
    next_item,
    order_queue,
    position_changes,
    position_of,
    requeue_for_transfer,
)

T0 = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


def item(
    cid: str, minute: int, group: str = "售前", priority: str = "normal", ticket: bool = False
) -> QueueItem:
    return QueueItem(cid, group, Priority(priority), T0 + timedelta(minutes=minute), is_ticket=ticket)


def ids(items: list[QueueItem]) -> list[str]:
    return [i.conversation_id for i in items]


def test_fifo_within_the_same_priority() -> None:
    items = [item("c", 3), item("a", 1), item("b", 2)]
    assert ids(order_queue(items)) == ["a", "b", "c"]


def test_a_complaint_goes_before_everyone_who_waited_longer() -> None:
    items = [item("early", 1), item("complaint", 9, priority="high"), item("later", 5)]
    assert ids(order_queue(items)) == ["complaint", "early", "later"]


def test_high_priority_items_are_fifo_among_themselves() -> None:
    items = [item("h2", 8, priority="high"), item("n", 0), item("h1", 4, priority="high")]
    assert ids(order_queue(items)) == ["h1", "h2", "n"]


def test_tickets_come_first_within_their_priority_but_after_complaints() -> None:
    items = [
        item("live-old", 1),
        item("ticket-new", 5, ticket=True),
        item("complaint", 7, priority="high"),
    ]
    assert ids(order_queue(items)) == ["complaint", "ticket-new", "live-old"]


def test_same_time_ties_break_by_id_so_order_is_stable() -> None:
    items = [item("b", 1), item("a", 1)]
    assert ids(order_queue(items)) == ids(order_queue(list(reversed(items)))) == ["a", "b"]


def test_order_for_one_group_excludes_the_others() -> None:
    items = [item("pre", 1, "售前"), item("post", 0, "售后")]
    assert ids(order_queue(items, "售前")) == ["pre"]
    assert next_item(items, "售后") == items[1]
    assert next_item(items, "物流") is None


def test_position_counts_only_the_own_group() -> None:
    items = [item("p1", 1, "售前"), item("s1", 2, "售后"), item("p2", 3, "售前"), item("s2", 4, "售后")]
    assert position_of("p2", items) == 2
    assert position_of("s2", items) == 2
    assert position_of("s1", items, "售后") == 1


def test_position_reflects_a_complaint_jumping_ahead() -> None:
    items = [item("a", 1), item("b", 2), item("angry", 3, priority="high")]
    assert [position_of(c, items) for c in ("angry", "a", "b")] == [1, 2, 3]


def test_position_of_an_absent_conversation_is_none() -> None:
    assert position_of("ghost", [item("a", 1)]) is None
    assert position_of("a", [item("a", 1)], "售后") is None


def test_priority_parses_config_words_and_rejects_others() -> None:
    assert Priority.parse("HIGH") is Priority.HIGH
    assert Priority.parse(None) is Priority.NORMAL
    assert QueueItem("x", "g", "high", T0).priority is Priority.HIGH  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="normal, high"):
        Priority.parse("urgent")


def test_position_changes_reports_only_live_customers_who_moved() -> None:
    before = [item("a", 1), item("b", 2), item("c", 3), item("t", 0, ticket=True)]
    after = [i for i in before if i.conversation_id != "a"]  # a was assigned
    # t (a ticket) moved too, but its customer was told "留言", so no queue notice for it.
    assert position_changes(before, after) == {"b": 2, "c": 3}
    assert position_changes(before, before) == {}


def test_position_changes_tell_a_customer_pushed_back_by_a_complaint() -> None:
    before = [item("a", 1)]
    after = [*before, item("angry", 2, priority="high")]
    assert position_changes(before, after) == {"a": 2, "angry": 1}


def test_a_transfer_keeps_the_wait_and_priority() -> None:
    original = item("c", 1, "售前", "high", ticket=True)
    moved = requeue_for_transfer(original, "售后")
    assert (moved.group, moved.priority, moved.queued_at, moved.is_ticket) == (
        "售后",
        Priority.HIGH,
        original.queued_at,
        False,
    )


def test_a_tie_at_the_same_instant_goes_to_the_lower_id_as_the_database_orders_it() -> None:
    # Stored ids are decimal: "9" before "10" (as text "10" < "9"), the order of `ORDER BY queue_key, id`.
    assert ids(order_queue([item("10", 0), item("9", 0), item("100", 0)])) == ["9", "10", "100"]
