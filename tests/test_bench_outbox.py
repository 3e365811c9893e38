"""The outbox bench writes a backlog kefu's own worker claims: due rows in the stored form, each the next
row of a conversation whose earlier rows are done."""

import asyncio
import contextlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench import outbox
from gateway.storage import Store


def test_the_backlog_is_what_the_worker_claims_oldest_first(tmp_path: Path) -> None:
    database = tmp_path / "kefu.db"

    async def claim() -> list[str]:
        store = Store.from_url(f"sqlite+aiosqlite:///{database}")
        try:
            await store.create_all()
            with contextlib.closing(sqlite3.connect(database)) as conn:
                conn.executemany(outbox._INSERT, outbox.backlog_rows(5, 1, datetime.now(UTC)))
                conn.commit()
            rows = await store.claim_outbox(datetime.now(UTC), lease=timedelta(minutes=1), limit=20)
            return [row.conversation_key for row in rows]
        finally:
            await store.dispose()

    claimed = asyncio.run(claim())
    # Only the due row of each customer (their history is done), oldest first, each once.
    assert claimed == [f"wechat:safe:oBacklog01{i:06d}" for i in range(5)]
    with contextlib.closing(sqlite3.connect(database)) as conn:
        statuses = dict(conn.execute("SELECT status, count(*) FROM outbox GROUP BY status").fetchall())
    assert statuses == {"cancelled": 10, "sent": 5, "sending": 5}


def test_the_growth_line_compares_the_largest_backlog_with_the_smallest() -> None:
    assert "at backlog 6000 / at 300: 3.00" in outbox.growth([0.0003, 0.0006, 0.0009], [300, 3000, 6000])
    assert outbox.growth([0.0003], [300]) == ""


def test_the_backlogs_setting_is_counts_or_a_clear_refusal() -> None:
    assert outbox.backlogs("3000,300") == (300, 3000)
    for bad in ("", "300,,6000", "300;3000", "0", "-5", "1e3", str(outbox.MAX_BACKLOG + 1), "9" * 5000):
        with pytest.raises(SystemExit, match="KEFU_BENCH_OUTBOX_BACKLOGS"):
            outbox.backlogs(bad)


@pytest.mark.postgres
def test_on_postgresql_the_history_is_delivered_and_the_backlog_is_what_the_worker_claims(
    postgres_database: str,
) -> None:
    from tests.conftest import reset_postgres

    asyncio.run(reset_postgres(postgres_database))

    async def create() -> None:
        store = Store.from_url(postgres_database)
        try:
            await store.create_all()
        finally:
            await store.dispose()

    async def claim() -> list[str]:
        store = Store.from_url(postgres_database)
        try:
            rows = await store.claim_outbox(datetime.now(UTC), lease=timedelta(minutes=1), limit=20)
            return [row.conversation_key for row in rows]
        finally:
            await store.dispose()

    asyncio.run(create())
    db = outbox.PostgresDatabase(postgres_database)
    try:
        db.execute(outbox._PG_HISTORY)
        db.insert(outbox.backlog_rows(5, 1, datetime.now(UTC), lambda at: at))
        assert asyncio.run(claim()) == [f"wechat:safe:oBacklog01{i:06d}" for i in range(5)]
        assert db.count("SELECT count(*) FROM outbox WHERE status = 'sent'") == outbox.PG_DELIVERED + 5
        assert db.count(outbox._WAITING) == 5  # the claimed rows, being sent
    finally:
        db.close()
    asyncio.run(reset_postgres(postgres_database))
