"""The outbox bench writes a backlog kefu's own worker claims: due rows in the stored form, each the next
row of a conversation whose earlier rows are done."""

import asyncio
import contextlib
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from bench import outbox
from gateway.storage import Store

T = TypeVar("T")


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


def _with_store(url: str, work: Callable[[Store], Awaitable[T]]) -> T:
    """`work` on a Store of `url`, disposed after."""

    async def run() -> T:
        store = Store.from_url(url)
        try:
            return await work(store)
        finally:
            await store.dispose()

    return asyncio.run(run())


@pytest.mark.postgres
def test_on_postgresql_the_history_is_delivered_and_the_backlog_is_what_the_worker_claims(
    postgres_url: str,
) -> None:
    _with_store(postgres_url, lambda store: store.create_all())
    db = outbox.PostgresDatabase(postgres_url)
    try:
        db.execute(outbox._PG_HISTORY)
        db.insert(outbox.backlog_rows(5, 1, datetime.now(UTC), lambda at: at))
        claimed = _with_store(
            postgres_url, lambda store: store.claim_outbox(datetime.now(UTC), lease=timedelta(minutes=1))
        )
        assert [row.conversation_key for row in claimed] == [
            f"wechat:safe:oBacklog01{i:06d}" for i in range(5)
        ]
        assert db.count("SELECT count(*) FROM outbox WHERE status = 'sent'") == outbox.PG_DELIVERED + 5
        assert db.count(outbox._WAITING) == 5  # the claimed rows, being sent
    finally:
        db.close()
