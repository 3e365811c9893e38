"""A claim's look-up of earlier rows reads the rows still to send, not a conversation's delivered history.

The claim checks every due row for an earlier live row of its conversation. Through an index of all rows
that check read the whole history of the conversation (its cancelled and sent rows), so a backlog cost its
size times the conversations' history (`python -m bench outbox`). SQLite's plan is asserted here;
PostgreSQL gets the same partial index (migration 0006) and plans by its statistics: what its claim reads
is measured here, on a database with a delivered history and a backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Dialect

from gateway.storage import Store
from gateway.storage.outbox_claim import CLAIMABLE, HELD_BACK, WINDOWED
from gateway.storage.unit import compile_statement, sql_and_values


def _compiled(
    dialect: Dialect, statement: Any, failing: bool, skipping: bool, claimed: str = ""
) -> tuple[str, list[Any]]:
    """A claim's statement and values, compiled as the unit of work compiles it."""
    now = datetime.now(UTC)
    params: dict[str, Any] = {"now": now, "limit": 20, "locked_until": now, "window": 200, "claimed": claimed}
    if failing:
        params["cutoff"] = now - timedelta(days=1)
    if skipping:
        params["skip"] = ["wechat/b"]
    return sql_and_values(compile_statement(statement, dialect, frozenset(params)), params)


def _plan(database: Path, dialect: Dialect, statement: Any, failing: bool, skipping: bool) -> list[str]:
    """SQLite's plan for a claim's statement."""
    sql, values = _compiled(dialect, statement, failing, skipping)
    with contextlib.closing(sqlite3.connect(database)) as conn:
        return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", values)]


def test_the_claims_look_up_of_earlier_rows_uses_the_index_of_live_rows(tmp_path: Path) -> None:
    database = tmp_path / "kefu.db"

    async def create() -> Dialect:
        store = Store.from_url(f"sqlite+aiosqlite:///{database}")
        try:
            await store.create_all()
            return store.engine.dialect
        finally:
            await store.dispose()

    dialect = asyncio.run(create())
    for statements in (CLAIMABLE, WINDOWED):
        for (failing, skipping), statement in statements.items():
            plan = _plan(database, dialect, statement, failing, skipping)
            earlier = [step for step in plan if step.startswith("SEARCH earlier")]
            assert earlier == [
                "SEARCH earlier USING INDEX ix_outbox_live_conversation (conversation_key=? AND id<?)"
            ], plan
            # Failed rows are read from the last give_up_after only: those given up stay `failed`.
            failed = [step for step in plan if "next_attempt_at>? AND next_attempt_at<?" in step]
            assert len(failed) == failing, plan


# A delivered history (two rows for each of HISTORY conversations), GIVEN_UP failed rows of a platform
# outage two days ago, and DUE rows of other conversations.
HISTORY, GIVEN_UP, DUE = 5_000, 3_000, 1_000


def _outbox_rows_read(plan: dict[str, Any]) -> int:
    """The rows of the outbox table a plan's nodes read (returned or filtered out), over all its loops."""
    read = 0
    if plan.get("Relation Name") == "outbox":
        loops = plan.get("Actual Loops", 1)
        read += (plan.get("Actual Rows", 0) + plan.get("Rows Removed by Filter", 0)) * loops
    return read + sum(_outbox_rows_read(child) for child in plan.get("Plans", ()))


async def _explained(conn: Any, sql: str, values: list[Any], *, generic: bool) -> dict[str, Any]:
    """EXPLAIN ANALYZE of `sql` with `values`: planned for those values, or (`generic`) as PostgreSQL plans a
    prepared statement once it stops planning it per execution, blind to the values (asyncpg prepares
    every statement kefu sends)."""
    async with conn.transaction():
        if not generic:
            explained = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}", *values)
        else:
            types = [t.name for t in (await conn.prepare(sql)).get_parameters()]
            await conn.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            await conn.execute(f"PREPARE claim ({', '.join(types)}) AS {sql}")
            try:
                explained = await conn.fetchval(
                    f"EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE claim({', '.join(map(_literal, values))})"
                )
            finally:
                await conn.execute("DEALLOCATE claim")
    return json.loads(explained)[0]["Plan"]


def _literal(value: Any) -> str:
    """A value as an SQL literal (EXECUTE takes no parameters)."""
    if isinstance(value, int):
        return str(value)
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text.replace("'", "''") + "'"


@pytest.mark.postgres
def test_postgresqls_claim_reads_the_due_rows_not_the_delivered_history(postgres_url: str) -> None:
    # Ordered by the primary key, PostgreSQL planned the claim as a walk of the primary key that filtered
    # out every delivered row before the first due one (Rows Removed by Filter: 200,000 at 100,000
    # conversations, 32 ms a claim): a cost that grew with the outbox's whole history. A claim that
    # retries failed rows read every failed row ever, given up or not; the check of the claimed rows'
    # conversations (HELD_BACK) read every live row; and a generic plan scanned the whole table.
    import asyncpg

    async def check() -> None:
        store = Store.from_url(postgres_url)
        try:
            await store.create_all()
            dialect = store.engine.dialect
        finally:
            await store.dispose()
        conn = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            now = datetime.now(UTC)
            old = now - timedelta(days=3)
            rows = [("sent", f"h{n}", old) for n in range(HISTORY) for _ in range(2)]
            rows += [("failed", f"f{n}", old) for n in range(GIVEN_UP)]  # due since, never again retried
            rows += [("pending", f"d{n}", now - timedelta(seconds=1)) for n in range(DUE)]
            await conn.executemany(
                "INSERT INTO outbox (channel, account, conversation_key, status, next_attempt_at, created_at,"
                " text, sender, target, attempts) VALUES ('wechat', 'a', 'wechat:a:' || $2, $1, $3,"
                " $3::timestamptz - interval '1 minute', '您好', 'bot', '{}', 0)",
                rows,
            )
            await conn.execute("ANALYZE outbox")
            due = ",".join(str(n) for n in range(2 * HISTORY + GIVEN_UP + 1, 2 * HISTORY + GIVEN_UP + 21))
            checked = [
                ((failing, skipping), statement, "") for (failing, skipping), statement in CLAIMABLE.items()
            ]
            checked += [((failing, False), statement, due) for failing, statement in HELD_BACK.items()]
            for (failing, skipping), statement, claimed in checked:
                sql, values = _compiled(dialect, statement, failing, skipping, claimed)
                for generic in (False, True):
                    plan = await _explained(conn, sql, values, generic=generic)
                    read = _outbox_rows_read(plan)
                    bound = 3 * DUE if not claimed else 100  # HELD_BACK: the 20 claimed rows' conversations
                    assert read <= bound, (generic, failing, skipping, read, json.dumps(plan, indent=1))
        finally:
            await conn.close()

    asyncio.run(check())
