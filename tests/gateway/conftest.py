"""Gateway fixtures: fail any test that blocks the event loop (blockbuster)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from blockbuster import BlockBuster, blockbuster_ctx

from gateway.storage import Store

# Library code that makes a few quick filesystem syscalls on the loop while opening a connection, once
# per pooled connection; that is the driver's design, not something the gateway can move off the loop.
ALLOWED = (
    # SQLAlchemy makes the SQLite path absolute (os.getcwd) when the engine is created.
    ("sqlalchemy/dialects/sqlite/pysqlite.py", "create_connect_args"),
    # asyncpg looks for ~/.pgpass and ~/.postgresql client certificates.
    ("asyncpg/connect_utils.py", "_parse_connect_dsn_and_args"),
)


@pytest.fixture(autouse=True)
def no_blocking_calls() -> Iterator[BlockBuster]:
    """A blocking call (file I/O, time.sleep, sync sockets) on the loop thread raises BlockingError."""
    # Scanned: our packages. A blocking call anywhere below our code (driver, library) still counts,
    # while the test harness's own file I/O (pytest, tmp_path set-up) does not.
    with blockbuster_ctx(["gateway", "kb", "intents", "handoff"]) as bb:
        for function in bb.functions.values():
            for file, name in ALLOWED:
                function.can_block_in(file, name)
        yield bb


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    """A bare Store (tables created) on each database, for storage-level tests."""
    store = Store.from_url(db_url)
    await store.create_all()
    yield store
    await store.dispose()
