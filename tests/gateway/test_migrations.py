"""Alembic migrations on SQLite and PostgreSQL: the models and the revisions agree, a database made by
`create_all` (before migrations) is adopted, a database at revision 0001 with rows is upgraded keeping
them, N upgraders at once migrate once, and `kefu db` reads the same settings as `kefu serve`."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from gateway.storage import Store, StoreUnavailable, migrate
from gateway.storage.engine import create_engine
from gateway.storage.migrations import target_metadata
from tests.conftest import PG_HOST, PG_PORT, _pg_admin, _port_open, _unavailable

NOW = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
# The newest revision: each new migration moves it, the tests below follow.
HEAD = migrate.heads()[-1]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A URL of a database of its own with nothing in it (a fresh PostgreSQL database per test)."""
    if request.param == "sqlite":
        (tmp_path / "db").mkdir()
        yield f"sqlite+aiosqlite:///{tmp_path / 'db' / 'kefu.db'}"
        return
    if not _port_open(PG_HOST, PG_PORT):
        _unavailable(f"nothing listens on {PG_HOST}:{PG_PORT}")
    name = f"kefu_migrate_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    user = await _pg_admin([f'CREATE DATABASE "{name}"'])
    try:
        yield f"postgresql+asyncpg://{user}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        await _pg_admin([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'])


def _diff(connection: sa.Connection) -> list[object]:
    return compare_metadata(MigrationContext.configure(connection), target_metadata())


async def _schema_diff(store: Store) -> list[object]:
    async with store.engine.connect() as conn:
        return await conn.run_sync(_diff)


async def _indexes(store: Store, table: str) -> set[str]:
    async with store.engine.connect() as conn:
        return await conn.run_sync(lambda c: {i["name"] for i in sa.inspect(c).get_indexes(table)})


async def _tables(store: Store) -> set[str]:
    async with store.engine.connect() as conn:
        return await conn.run_sync(lambda c: set(sa.inspect(c).get_table_names()))


async def test_the_migrations_make_exactly_the_models_schema(empty_url: str) -> None:
    """Autogenerate finds nothing to add: a column or index without its revision fails here."""
    store = Store.from_url(empty_url)
    try:
        await store.create_all()  # what start-up does: upgrade to head
        assert await migrate.current(store.engine) == migrate.heads()
        assert await _schema_diff(store) == []
    finally:
        await store.dispose()


def test_the_revisions_are_one_line_of_history() -> None:
    versions = Path(migrate.__file__).parent / "migrations" / "versions"
    files = sorted(f.name for f in versions.glob("[0-9][0-9][0-9][0-9]_*.py"))
    assert len(migrate.heads()) == 1
    history = [line.split()[0] for line in migrate.history()]
    assert history[-1] == "0001" and len(history) == len(files)
    # Revision ids follow the file names' numbers, newest first.
    assert history == [name[:4] for name in reversed(files)]


_ROWS = [
    "INSERT INTO customers (id, channel, account, user_id, name, created_at, last_seen_at) "
    "VALUES (1, 'web', 'default', 'u1', '张三', :now, :now)",
    "INSERT INTO conversations (id, customer_id, channel, account, conversation_key, state, priority, "
    "miss_streak, opened_at, last_activity_at) "
    "VALUES (1, 1, 'web', 'default', 'web:default:u1', 'bot', 'normal', 0, :now, :now)",
    "INSERT INTO messages (id, conversation_id, conversation_key, channel, account, direction, sender, "
    "text, kind, channel_msg_id, created_at) "
    "VALUES (1, 1, 'web:default:u1', 'web', 'default', 'in', 'customer', '怎么退货', 'text', 'm1', :now)",
]


async def _insert_rows(store: Store, rows: Sequence[str] = _ROWS) -> None:
    async with store.engine.begin() as conn:
        for statement in rows:
            await conn.execute(sa.text(statement), {"now": NOW})


async def _rows_kept(store: Store) -> None:
    async with store.engine.connect() as conn:
        text = (await conn.execute(sa.text("SELECT text FROM messages WHERE channel_msg_id = 'm1'"))).scalar()
        key = (await conn.execute(sa.text("SELECT conversation_key FROM conversations"))).scalar()
    assert (text, key) == ("怎么退货", "web:default:u1")


async def test_a_database_at_revision_1_with_rows_is_upgraded_and_keeps_them(empty_url: str) -> None:
    store = Store.from_url(empty_url)
    try:
        await migrate.upgrade(store.engine, "0001")
        await _insert_rows(store)
        assert "ix_messages_created" not in await _indexes(store, "messages")

        await store.create_all()  # the next start-up

        assert await migrate.current(store.engine) == (HEAD,)
        await _rows_kept(store)
        assert "ix_messages_created" in await _indexes(store, "messages")
        assert "ix_conversations_opened" in await _indexes(store, "conversations")
        assert await _schema_diff(store) == []
        # The new code reads the upgraded database: the dedupe lookup finds the old message.
        assert (await store.read(lambda unit: unit.find_message("web", "default", "m1"))) is not None
    finally:
        await store.dispose()


async def test_a_database_made_by_create_all_is_adopted_not_recreated(empty_url: str) -> None:
    """Before migrations, start-up ran create_all over the models of the day (revision 0001's schema):
    such a database is stamped 0001 and upgraded, its rows kept."""
    store = Store.from_url(empty_url)
    first = (await asyncio.to_thread(migrate.script)).get_revision("0001")
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(first.module.METADATA.create_all)
        await _insert_rows(store)

        await store.create_all()

        assert await migrate.current(store.engine) == migrate.heads()
        await _rows_kept(store)
        assert await _schema_diff(store) == []
    finally:
        await store.dispose()


async def test_a_database_with_todays_tables_but_no_version_is_stamped_at_head(empty_url: str) -> None:
    """Tables that already match the models (made by create_all of this version) are stamped, not rebuilt."""
    store = Store.from_url(empty_url)
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(target_metadata().create_all)
        await _insert_rows(store)

        await store.create_all()

        assert await migrate.current(store.engine) == migrate.heads()
        await _rows_kept(store)
    finally:
        await store.dispose()


async def test_an_older_create_all_database_is_completed_then_upgraded(empty_url: str) -> None:
    """An older kefu's database (before 排班, before the outbox order index) gets revision 0001's
    missing parts, is stamped 0001, then upgraded to head, rows kept."""
    store = Store.from_url(empty_url)
    try:
        await migrate.upgrade(store.engine, "0001")
        await _insert_rows(store)
        async with store.engine.begin() as conn:
            await conn.execute(sa.text("DROP TABLE shift_swaps"))
            await conn.execute(sa.text("DROP TABLE shifts"))
            await conn.execute(sa.text("DROP INDEX ix_outbox_conversation"))
            await conn.execute(sa.text("DROP TABLE alembic_version"))

        await store.create_all()

        assert await migrate.current(store.engine) == migrate.heads()
        assert {"shifts", "shift_swaps"} <= await _tables(store)
        assert "ix_outbox_live_conversation" in await _indexes(store, "outbox")
        await _rows_kept(store)
        assert await _schema_diff(store) == []
    finally:
        await store.dispose()


async def test_a_database_migrated_by_a_newer_kefu_is_refused_with_the_reason(empty_url: str) -> None:
    store = Store.from_url(empty_url)
    try:
        await store.create_all()
        async with store.engine.begin() as conn:  # as a later version would leave it
            await conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
        with pytest.raises(StoreUnavailable, match="revision 9999, newer than this kefu knows"):
            await store.create_all()
    finally:
        await store.dispose()


async def test_three_upgraders_at_once_migrate_once(empty_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """N processes starting together: each its own engine, one migration (the others wait and find it done)."""
    stores = [Store(create_engine(empty_url)) for _ in range(3)]
    caplog.set_level(logging.INFO, logger="gateway.storage.migrate")
    try:
        await asyncio.gather(*(store.create_all() for store in stores))
        migrated = [r for r in caplog.records if r.getMessage().startswith("database schema migrated")]
        assert [r.getMessage() for r in migrated] == [f"database schema migrated: (new) -> {HEAD}"]
        for store in stores:
            assert await migrate.current(store.engine) == (HEAD,)
    finally:
        for store in stores:
            await store.dispose()


def _kefu(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )


async def test_kefu_db_upgrade_current_and_history_read_the_serve_config(
    empty_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(f"database:\n  url: {empty_url}\n", encoding="utf-8")

    before = await asyncio.to_thread(_kefu, "db", "current", "--config", str(config), cwd=tmp_path)
    assert before.returncode == 0, before.stderr
    assert "(none)" in before.stdout

    upgraded = await asyncio.to_thread(_kefu, "db", "upgrade", "--config", str(config), cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert HEAD in upgraded.stdout

    after = await asyncio.to_thread(_kefu, "db", "current", "--config", str(config), cwd=tmp_path)
    assert after.stdout.split() == [HEAD, "(head)"]
    history = await asyncio.to_thread(_kefu, "db", "history", "--config", str(config), cwd=tmp_path)
    assert history.stdout.splitlines()[0].startswith(f"{HEAD} ")

    store = Store.from_url(empty_url)
    try:
        assert await migrate.current(store.engine) == (HEAD,)
    finally:
        await store.dispose()


async def test_kefu_db_upgrade_says_why_it_cannot_reach_the_database(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    url = "postgresql+asyncpg://nobody:secret-pw@127.0.0.1:1/nowhere"
    config.write_text(f"database:\n  url: {url}\n", encoding="utf-8")
    result = await asyncio.to_thread(_kefu, "db", "upgrade", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1
    assert "cannot use the database" in result.stderr
    assert "secret-pw" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


_QA_ROWS = [
    "INSERT INTO customers (id, channel, account, user_id, name, created_at, last_seen_at) "
    "VALUES (1, 'web', 'default', 'u1', '张三', :now, :now)",
    "INSERT INTO agents (id, name, role, groups, max_chats, enabled, token_hash, presence, created_at) "
    "VALUES (1, '小王', 'agent', '[]', 5, true, 'h', 'offline', :now)",
    # Conversations 1-3 an agent closed (3 handed back to the bot), 4 still with the agent.
    *(
        "INSERT INTO conversations (id, customer_id, channel, account, conversation_key, state, priority, "
        f"miss_streak, opened_at, last_activity_at) VALUES ({n}, 1, 'web', 'default', 'web:default:c{n}', "
        f"'{state}', 'normal', 0, :now, :now)"
        for n, state in ((1, "closed"), (2, "closed"), (3, "bot"), (4, "assigned"))
    ),
    *(
        "INSERT INTO assignments (conversation_id, agent_id, active, auto, assigned_at, ended_at) "
        f"VALUES ({n}, 1, {'true' if n == 4 else 'false'}, false, :now, {'NULL' if n == 4 else ':now'})"
        for n in (1, 2, 3, 4)
    ),
    # 2 is scored already.
    "INSERT INTO qa_results (conversation_id, agent_id, closed_at, score, max_score, flagged, hits, "
    "scored_at) VALUES (2, 1, :now, 100, 100, false, '[]', :now)",
]


async def test_the_upgrade_to_0007_leaves_the_unscored_closed_conversations_to_qa(empty_url: str) -> None:
    """qa_pending starts with what the scoring job's old look-up over the whole history would find."""
    store = Store.from_url(empty_url)
    try:
        await migrate.upgrade(store.engine, "0006")
        await _insert_rows(store, _QA_ROWS)

        await store.create_all()

        async with store.engine.connect() as conn:
            pending = (await conn.execute(sa.text("SELECT conversation_id FROM qa_pending"))).scalars()
            assert sorted(pending) == [1, 3]
        assert await _schema_diff(store) == []
    finally:
        await store.dispose()
