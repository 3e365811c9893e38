"""A claim's look-up of earlier rows reads the rows still to send, not a conversation's delivered history.

The claim checks every due row for an earlier live row of its conversation. Through an index of all rows
that check read the whole history of the conversation (its cancelled and sent rows), so a backlog cost its
size times the conversations' history (`python -m bench outbox`). SQLite's plan is asserted here;
PostgreSQL gets the same partial index (migration 0006) and plans by its statistics.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Dialect

from gateway.storage import Store
from gateway.storage.outbox_claim import CLAIMABLE, WINDOWED
from gateway.storage.unit import compile_statement, sql_and_values


def _plan(database: Path, dialect: Dialect, statement: Any, failing: bool, skipping: bool) -> list[str]:
    """SQLite's plan for a claim's statement, compiled as the unit of work compiles it."""
    now = datetime.now(UTC)
    params: dict[str, Any] = {"now": now, "limit": 20, "locked_until": now, "window": 200}
    if failing:
        params["cutoff"] = now - timedelta(days=1)
    if skipping:
        params["skip"] = ["wechat/a"]
    compiled = compile_statement(statement, dialect, frozenset(params))
    sql, values = sql_and_values(compiled, params)
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
