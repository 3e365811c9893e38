"""The Store on real SQLite and PostgreSQL: constraints, transactions, timestamps, the outbox lease."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.storage import Conflict, Store, Unit
from handoff.state import ConversationState

NOW = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)


async def new_conversation(store: Store, key: str = "web:default:u1") -> int:
    def create(unit: Unit) -> int:
        customer = unit.upsert_customer("web", "default", key.rsplit(":", 1)[-1], "小王", NOW)
        conversation = unit.create_conversation(
            customer_id=customer,
            channel="web",
            account="default",
            conversation_key=key,
            now=NOW,
            kb_version="v1",
        )
        return conversation.id

    return await store.run(create)


async def add_inbound(store: Store, conversation_id: int, msg_id: str | None, text: str = "你好") -> int:
    async with store.transaction() as tx:
        row = await tx.add_message(
            conversation_id=conversation_id,
            conversation_key="web:default:u1",
            channel="web",
            account="default",
            direction="in",
            sender="customer",
            text=text,
            channel_msg_id=msg_id,
            created_at=NOW,
        )
    return row.id


async def test_create_all_is_idempotent_and_data_survives_a_new_store(db_url: str) -> None:
    first = Store.from_url(db_url)
    await first.create_all()
    conversation_id = await new_conversation(first)
    await first.dispose()

    second = Store.from_url(db_url)
    await second.create_all()  # a restart runs it again on existing tables
    try:
        conversation = await second.conversation(conversation_id)
        assert conversation is not None and conversation.state is ConversationState.BOT
        assert conversation.opened_at == NOW and conversation.opened_at.tzinfo is not None
    finally:
        await second.dispose()


async def test_channel_message_id_is_unique_per_channel_account(store: Store) -> None:
    conversation_id = await new_conversation(store)
    await add_inbound(store, conversation_id, "m1")
    with pytest.raises(Conflict):
        await add_inbound(store, conversation_id, "m1")
    # Messages without a platform id never clash.
    await add_inbound(store, conversation_id, None)
    await add_inbound(store, conversation_id, None)
    assert len(await store.messages(conversation_id)) == 3


async def test_a_failed_transaction_leaves_nothing(store: Store) -> None:
    conversation_id = await new_conversation(store)
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.add_message(
                conversation_id=conversation_id,
                conversation_key="web:default:u1",
                channel="web",
                account="default",
                direction="in",
                sender="customer",
                text="半截",
                created_at=NOW,
            )
            await tx.update_conversation(conversation_id, state=ConversationState.QUEUED, queued_at=NOW)
            raise RuntimeError("crash before commit")
    assert await store.messages(conversation_id) == []
    conversation = await store.conversation(conversation_id)
    assert conversation is not None and conversation.state is ConversationState.BOT


async def test_foreign_keys_are_enforced(store: Store) -> None:
    with pytest.raises(Conflict):
        await add_inbound(store, 999_999, "orphan")


async def test_one_open_conversation_per_key(store: Store) -> None:
    first = await new_conversation(store)
    with pytest.raises(Conflict):
        await new_conversation(store)
    async with store.transaction() as tx:
        await tx.update_conversation(
            first, state=ConversationState.CLOSED, closed_at=NOW, closed_reason="idle"
        )
    second = await new_conversation(store)  # closed ones do not count
    assert [c.id for c in await store.conversations_for_key("web:default:u1")] == [first, second]
    current = await store.read(lambda unit: unit.open_conversation("web:default:u1"))
    assert current is not None and current.id == second


async def test_timestamps_come_back_aware_utc(store: Store) -> None:
    conversation_id = await new_conversation(store)
    shanghai = datetime(2026, 11, 24, 16, 30, tzinfo=ZoneInfo("Asia/Shanghai"))
    async with store.transaction() as tx:
        await tx.update_conversation(conversation_id, last_activity_at=shanghai)
    conversation = await store.conversation(conversation_id)
    assert conversation is not None
    assert conversation.last_activity_at == datetime(2026, 11, 24, 8, 30, tzinfo=UTC)
    assert conversation.last_activity_at.utcoffset() == timedelta(0)


async def enqueue(store: Store, n: int, key: str = "web:default:u1") -> list[int]:
    ids = []
    async with store.transaction() as tx:
        for i in range(n):
            ids.append(
                await tx.enqueue(
                    channel="web",
                    account="default",
                    conversation_key=key,
                    text=f"第{i}条",
                    sender="agent",
                    target={"user_id": "u1"},
                    now=NOW,
                )
            )
    return ids


async def test_outbox_claim_leases_rows_until_the_lease_expires(store: Store) -> None:
    ids = await enqueue(store, 3)
    claimed = await store.claim_outbox(NOW, lease=timedelta(seconds=60))
    assert [r.id for r in claimed] == ids
    assert all(r.status == "sending" and r.attempts == 1 for r in claimed)
    assert await store.claim_outbox(NOW + timedelta(seconds=30), lease=timedelta(seconds=60)) == []
    # A worker that died mid-send: its lease runs out and another worker takes the row again.
    again = await store.claim_outbox(NOW + timedelta(seconds=61), lease=timedelta(seconds=60))
    assert [r.attempts for r in again] == [2, 2, 2]

    await store.finish_outbox(ids[0], status="sent", now=NOW)
    await store.finish_outbox(ids[1], status="undeliverable", now=NOW, error="user blocked the account")
    await store.finish_outbox(
        ids[2], status="pending", now=NOW, error="503", next_attempt_at=NOW + timedelta(hours=1)
    )
    counts = await store.outbox_counts()
    assert (counts["sent"], counts["undeliverable"], counts["pending"]) == (1, 1, 1)
    assert await store.next_outbox_due() == NOW + timedelta(hours=1)
    (failed,) = await store.list_outbox("undeliverable")
    assert failed.last_error == "user blocked the account"


async def test_a_claim_takes_whole_conversations_within_the_accounts_places(store: Store) -> None:
    a = await enqueue(store, 2, key="web:default:a")
    b = await enqueue(store, 1, key="web:default:b")
    c = await enqueue(store, 1, key="web:default:c")
    held: list[int] = []
    claimed = await store.claim_outbox(
        NOW, lease=timedelta(seconds=60), held_back=held, in_flight={("web", "default"): 1}, per_account=3
    )
    # Two places left: a's two rows (one task sends them in order) and b's; c is left unleased.
    assert [r.id for r in claimed] == [*a, *b] and held == c
    # A full account is not read at all.
    held.clear()
    full = {("web", "default"): 3}
    assert (
        await store.claim_outbox(
            NOW, lease=timedelta(seconds=60), held_back=held, in_flight=full, per_account=3
        )
        == []
    )
    assert held == []
    (left,) = await store.claim_outbox(NOW, lease=timedelta(seconds=60), in_flight={}, per_account=3)
    assert (left.id, left.attempts) == (c[0], 1)

    # Leases ended (a crashed sender): resumed rows keep to the bound too (after a restart, an account
    # whose sends hang must not take the other accounts' places), and the ones left stay resumed.
    later = NOW + timedelta(seconds=61)
    claimed = await store.claim_outbox(
        later, lease=timedelta(seconds=60), in_flight={("web", "default"): 2}, per_account=3
    )
    assert [r.id for r in claimed] == a and all(r.resumed for r in claimed)
    claimed = await store.claim_outbox(later, lease=timedelta(seconds=60), in_flight={}, per_account=3)
    assert [r.id for r in claimed] == [*b, *c] and all(r.resumed for r in claimed)


async def test_concurrent_claims_never_share_a_row(store: Store) -> None:
    # Thirty conversations: one conversation's later rows wait for its earlier ones (outbox order).
    for i in range(30):
        await enqueue(store, 1, key=f"web:default:u{i}")
    batches = await asyncio.gather(
        *(store.claim_outbox(NOW, lease=timedelta(seconds=60), limit=7) for _ in range(6))
    )
    claimed = [row.id for batch in batches for row in batch]
    assert len(claimed) == len(set(claimed)) == 30


async def test_enqueue_is_idempotent_per_stored_message(store: Store) -> None:
    conversation_id = await new_conversation(store)
    message_id = await add_inbound(store, conversation_id, "m1")
    send: dict[str, Any] = {
        "channel": "web",
        "account": "default",
        "conversation_key": "web:default:u1",
        "text": "答复",
        "sender": "bot",
        "target": {},
        "now": NOW,
        "message_id": message_id,
    }
    async with store.transaction() as tx:
        first = await tx.enqueue(**send)
        second = await tx.enqueue(**send)  # the same stored reply queued again: the same row
    assert first == second
    assert len(await store.list_outbox()) == 1


async def add_message(
    store: Store,
    conversation_id: int,
    text: str,
    *,
    direction: str = "in",
    key: str = "web:default:u1",
    target: dict[str, str] | None = None,
) -> int:
    """One message without a platform id (a customer's when direction is "in", else the bot's)."""
    async with store.transaction() as tx:
        row = await tx.add_message(
            conversation_id=conversation_id,
            conversation_key=key,
            channel="web",
            account="default",
            direction=direction,
            sender="customer" if direction == "in" else "bot",
            text=text,
            target=target,
            created_at=NOW,
        )
    return row.id


async def test_one_message_by_id_and_the_latest_inbound_one(store: Store) -> None:
    conversation_id = await new_conversation(store)
    other = await new_conversation(store, "web:default:u2")
    assert await store.last_inbound(conversation_id) is None
    await add_message(store, conversation_id, "在吗", direction="out")
    assert await store.last_inbound(conversation_id) is None  # outbound messages do not count
    await add_message(store, conversation_id, "第一句", target={"user_id": "u1"})
    second = await add_message(store, conversation_id, "第二句", target={"user_id": "u1", "x": "2"})
    await add_message(store, conversation_id, "好的", direction="out")
    await add_message(store, other, "别人的", key="web:default:u2")  # newer, but another conversation

    latest = await store.last_inbound(conversation_id)
    assert latest is not None
    assert (latest.id, latest.text, dict(latest.target)) == (second, "第二句", {"user_id": "u1", "x": "2"})
    # The same row as the full read returns, field for field.
    assert await store.message(second) == next(
        m for m in await store.messages(conversation_id) if m.id == second
    )
    assert latest == await store.message(second)
    assert await store.message(999_999) is None


async def test_has_message_text_is_an_exact_match_within_the_conversation(store: Store) -> None:
    conversation_id = await new_conversation(store)
    other = await new_conversation(store, "web:default:u2")
    await add_message(store, conversation_id, "您的留言已收到，客服上线后会第一时间回复。", direction="out")
    await add_message(store, other, "只在别的会话里", direction="out", key="web:default:u2")
    await add_message(store, conversation_id, "客户自己说的")

    assert await store.has_message_text(conversation_id, "您的留言已收到，客服上线后会第一时间回复。")
    assert await store.has_message_text(conversation_id, "客户自己说的")  # either direction
    assert not await store.has_message_text(conversation_id, "您的留言已收到")  # no prefix match
    assert not await store.has_message_text(conversation_id, "只在别的会话里")
    assert not await store.has_message_text(other, "客户自己说的")


async def test_recent_messages_page_back_from_the_newest(store: Store) -> None:
    conversation_id = await new_conversation(store)
    other = await new_conversation(store, "web:default:u2")
    ids = []
    for i in range(5):
        ids.append(await add_message(store, conversation_id, f"第{i}条", direction="in" if i % 2 else "out"))
        await add_message(store, other, f"别人的第{i}条", key="web:default:u2")

    assert [m.id for m in await store.recent_messages(conversation_id)] == ids[::-1]
    first = await store.recent_messages(conversation_id, limit=2)
    assert [m.id for m in first] == [ids[4], ids[3]]
    second = await store.recent_messages(conversation_id, before=first[-1].id, limit=2)
    assert [m.text for m in second] == ["第2条", "第1条"]
    last = await store.recent_messages(conversation_id, before=second[-1].id, limit=2)
    assert [m.id for m in last] == [ids[0]]
    assert await store.recent_messages(conversation_id, before=ids[0], limit=2) == []
    assert await store.recent_messages(999_999) == []


async def test_ping(store: Store) -> None:
    assert await store.ping()


async def test_sqlite_runs_in_wal_mode_with_its_directory_created(tmp_path: Path) -> None:
    database = tmp_path / "fresh" / "data" / "kefu.db"
    store = Store.from_url(f"sqlite+aiosqlite:///{database}")
    await store.create_all()
    try:
        await new_conversation(store)
    finally:
        await store.dispose()

    def journal_mode() -> str:
        with sqlite3.connect(database) as conn:
            return conn.execute("PRAGMA journal_mode").fetchone()[0]

    assert await asyncio.to_thread(journal_mode) == "wal"
