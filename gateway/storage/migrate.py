"""Schema migrations (Alembic): upgrade to head at start-up and from `kefu db upgrade`, once across processes.

The revisions live in the package (`migrations/`, found from this file, so an installed wheel migrates
as well as a checkout). N processes starting together migrate once: on PostgreSQL the upgrade holds a
session advisory lock (the others wait on it, then find the database at head); on SQLite an exclusive
`flock` on `<database>.migrate.lock` beside the file does the same.
"""

from __future__ import annotations

import asyncio
import fcntl
import io
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.environment import EnvironmentContext
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.storage.engine import sqlite_directory
from gateway.storage.errors import StoreUnavailable
from gateway.storage.migrations import target_metadata

logger = logging.getLogger(__name__)
# Alembic says "Context impl …" at every check; kefu logs the one line that matters (what was migrated).
logging.getLogger("alembic").setLevel(logging.WARNING)

SCRIPT_LOCATION = Path(__file__).with_name("migrations")
# pg_advisory_lock's key ("kefumigr"): the same in every kefu process, unlikely to clash with anything else.
PG_LOCK_KEY = int.from_bytes(b"kefumigr", "big")
FIRST = "0001"
# Tables every kefu database has had since its first version: their presence means "made by create_all".
LEGACY_MARKERS = {"conversations", "messages", "outbox"}

__all__ = [
    "PG_LOCK_KEY",
    "SchemaTooNew",
    "adopt_legacy",
    "current",
    "heads",
    "history",
    "run_migrations",
    "script",
    "upgrade",
]


def _config(connection: Connection | None = None) -> Config:
    config = Config(stdout=io.StringIO())
    config.set_main_option("script_location", str(SCRIPT_LOCATION))
    config.attributes["connection"] = connection
    return config


_SCRIPT: ScriptDirectory | None = None


def script() -> ScriptDirectory:
    """The revisions, loaded once per process (file I/O: the async callers load it in a worker thread)."""
    global _SCRIPT
    if _SCRIPT is None:
        loaded = ScriptDirectory.from_config(_config())
        loaded.get_heads()  # reads and imports every revision file now, not later on the event loop
        _SCRIPT = loaded
    return _SCRIPT


def heads() -> tuple[str, ...]:
    """The newest revision(s) of the migrations shipped with this version."""
    return tuple(script().get_heads())


def history() -> list[str]:
    """One line per revision, newest first ("<rev> <message>")."""
    return [f"{rev.revision} {rev.doc}" for rev in script().walk_revisions()]


def adopt_legacy(migration: MigrationContext, scripts: ScriptDirectory, connection: Connection) -> None:
    """A database made by `create_all` before migrations existed: stamp it where its schema stands.

    Before this, start-up ran create_all over the models of that day, which are revision 0001's schema
    (or less, for an older kefu: `complete_legacy` adds the missing tables and indexes); one that already
    matches today's models (autogenerate finds nothing) is stamped at head. Runs inside the migration's
    transaction, so the upgrade that follows starts from the stamp.
    """
    if migration.get_current_revision() is not None:
        return
    if not set(inspect(connection).get_table_names()) >= LEGACY_MARKERS:
        return  # an empty database: the revisions create everything
    if not compare_metadata(migration, target_metadata()):
        migration.stamp(scripts, "heads")
        logger.info("database made before migrations matches the models: stamped at head")
        return
    first = scripts.get_revision(FIRST)
    assert first is not None and first.module is not None
    first.module.complete_legacy(connection)
    migration.stamp(scripts, FIRST)
    logger.info("database made before migrations: completed to revision %s and stamped", FIRST)


def run_migrations(connection: Connection, target: str) -> None:
    """Upgrade on this connection (the caller holds the lock): what env.py does, without reading it."""
    scripts = script()

    def steps(revision: Any, _context: Any) -> Any:
        return scripts._upgrade_revs(target, revision)  # what `alembic upgrade` runs (command.upgrade)

    with EnvironmentContext(_config(connection), scripts, fn=steps, destination_rev=target) as env:
        env.configure(connection=connection)
        with env.begin_transaction():
            adopt_legacy(env.get_context(), scripts, connection)
            env.run_migrations()


@contextmanager
def _sqlite_lock(engine: AsyncEngine) -> Iterator[None]:
    directory = sqlite_directory(str(engine.url))
    if directory is None:  # in-memory: one process by definition
        yield
        return
    directory.mkdir(parents=True, exist_ok=True)
    path = Path(engine.url.database or "").with_suffix(".migrate.lock")
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # blocks this worker thread, never the event loop
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _upgrade_sync(connection: Connection, target: str) -> None:
    if connection.dialect.name != "postgresql":
        _upgrade_locked(connection, target)  # the caller holds the SQLite file lock
        return
    # Session-level, so it outlives the migration's own transaction; committed so that alembic begins
    # that transaction itself. A process that waited here finds the work done and migrates nothing.
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_LOCK_KEY})
    connection.commit()
    try:
        _upgrade_locked(connection, target)
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PG_LOCK_KEY})
        connection.commit()


def _upgrade_locked(connection: Connection, target: str) -> None:
    before = _current_sync(connection)
    run_migrations(connection, target)
    connection.commit()
    after = _current_sync(connection)
    if after != before:
        logger.info("database schema migrated: %s -> %s", "+".join(before) or "(new)", "+".join(after))


def _current_sync(connection: Connection) -> tuple[str, ...]:
    at = tuple(MigrationContext.configure(connection).get_current_heads())
    connection.rollback()
    return at


class SchemaTooNew(StoreUnavailable):
    """The database was migrated by a newer kefu than this one (a rolled-back deploy)."""


async def upgrade(engine: AsyncEngine, target: str = "head") -> None:
    """Bring the database to `target` (default: the newest revision); a no-op when it is there already.

    Raises SchemaTooNew when the database is at a revision this version does not know.
    """
    await asyncio.to_thread(script)  # the files, off the event loop
    async with engine.connect() as conn:
        if await conn.run_sync(_at_head) and target == "head":
            return  # the common start-up: one read, no lock
    if engine.dialect.name == "sqlite":
        with_lock = _sqlite_lock(engine)
        await asyncio.to_thread(with_lock.__enter__)
        try:
            await _run(engine, target)
        finally:
            await asyncio.to_thread(with_lock.__exit__, None, None, None)
    else:
        await _run(engine, target)


async def _run(engine: AsyncEngine, target: str) -> None:
    async with engine.connect() as conn:
        await conn.run_sync(_upgrade_sync, target)


def _at_head(connection: Connection) -> bool:
    at = _current_sync(connection)
    known = {rev.revision for rev in script().walk_revisions()}
    unknown = [rev for rev in at if rev not in known]
    if unknown:
        raise SchemaTooNew(
            f"the database schema is at revision {'+'.join(unknown)}, newer than this kefu knows "
            f"(its newest: {'+'.join(heads())}): run the kefu version that migrated it"
        )
    return bool(at) and set(at) == set(heads())


async def current(engine: AsyncEngine) -> tuple[str, ...]:
    """The revision(s) the database is at (empty: never migrated)."""
    async with engine.connect() as conn:
        return await conn.run_sync(_current_sync)
