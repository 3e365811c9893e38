"""Real database errors on demand: a trigger that fails the bot's reply rows (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

# Fails every outbound message row: by then the customer, the conversation and the inbound message were
# written in the same transaction, so the test sees whether anything half-written survives.
_FAIL_REPLIES = {
    "sqlite": (
        [
            "CREATE TRIGGER kefu_fail_reply BEFORE INSERT ON messages WHEN NEW.direction = 'out' "
            "BEGIN SELECT abs(-9223372036854775807 - 1); END"  # integer overflow: a runtime error
        ],
        ["DROP TRIGGER kefu_fail_reply"],
    ),
    "postgresql": (
        [
            "CREATE FUNCTION kefu_fail_reply() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'disk I/O error (injected)'; END $$",
            "CREATE TRIGGER kefu_fail_reply BEFORE INSERT ON messages FOR EACH ROW "
            "WHEN (NEW.direction = 'out') EXECUTE FUNCTION kefu_fail_reply()",
        ],
        ["DROP TRIGGER kefu_fail_reply ON messages", "DROP FUNCTION kefu_fail_reply()"],
    ),
}


async def _ddl(engine: Any, statements: list[str]) -> None:
    async with engine.begin() as conn:
        for statement in statements:
            await conn.exec_driver_sql(statement)


@asynccontextmanager
async def failing_replies(engine: Any) -> AsyncIterator[None]:
    """While inside, storing any outbound message fails with a database error."""
    create, drop = _FAIL_REPLIES[engine.dialect.name]
    await _ddl(engine, create)
    try:
        yield
    finally:
        await _ddl(engine, drop)
