"""Shared fixtures: real databases (SQLite file and PostgreSQL), gateway settings and a running app.

PostgreSQL: one fresh database per test session (created from the server's `test`/`postgres`
database and dropped afterwards), reset to an empty `public` schema before each test. When the server
is unreachable the PostgreSQL variants skip with the reason, except under KEFU_REQUIRE_SERVICES=1 (CI),
where they fail.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Imported here, not inside fixtures: importing (jieba, pkg_resources) does file I/O that the
# blocking-call detector would report if it happened on the event loop.
from gateway.app import create_app
from gateway.settings import settings_from_mapping

ROOT = Path(__file__).resolve().parent
FIXTURES = ROOT / "fixtures"
TEST_FAQ = FIXTURES / "faq"
PG_HOST = os.environ.get("KEFU_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("KEFU_TEST_PG_PORT", "5432"))
ADMIN_TOKEN = "test-admin-token"


# Run alone by `make test`, after the rest ran on several workers (pytest-xdist): these start processes,
# stop or freeze databases and count seconds against WeChat's deadline, so they must not share the
# machine's cores with another worker's tests.
SERIAL = ("tests/chaos/", "tests/multiprocess/", "tests/gateway/test_workers.py")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.startswith(SERIAL):
            item.add_marker(pytest.mark.serial)


def services_required() -> bool:
    """True in CI: a missing service is a failure, not a skip."""
    return os.environ.get("KEFU_REQUIRE_SERVICES") == "1"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


async def _pg_admin(sql_statements: list[str]) -> str:
    """Run statements on the maintenance database as the first user that can log in; returns the user."""
    import asyncpg

    errors: list[str] = []
    for user in ("postgres", "root", os.environ.get("USER", "")):
        if not user:
            continue
        for database in ("test", "postgres"):
            try:
                conn = await asyncpg.connect(
                    host=PG_HOST, port=PG_PORT, user=user, database=database, timeout=5
                )
            except Exception as exc:  # wrong user/database: try the next pair
                errors.append(f"{user}@{database}: {exc}")
                continue
            try:
                for sql in sql_statements:
                    await conn.execute(sql)
            finally:
                await conn.close()
            return user
    raise RuntimeError("cannot log in to PostgreSQL: " + "; ".join(errors))


def _unavailable(reason: str) -> None:
    if services_required():
        pytest.fail(f"PostgreSQL required (KEFU_REQUIRE_SERVICES=1) but {reason}", pytrace=False)
    pytest.skip(f"PostgreSQL not available: {reason}")


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session; yields its SQLAlchemy URL."""
    if not _port_open(PG_HOST, PG_PORT):
        _unavailable(f"nothing listens on {PG_HOST}:{PG_PORT}")
    name = f"kefu_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    try:
        user = asyncio.run(_pg_admin([f'CREATE DATABASE "{name}"']))
    except Exception as exc:
        _unavailable(str(exc))
    try:
        yield f"postgresql+asyncpg://{user}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        asyncio.run(_pg_admin([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)']))


async def reset_postgres(url: str) -> None:
    """Empty every table of the test database so each test starts from nothing.

    TRUNCATE keeps the tables (and the migration version), so the app's upgrade at startup is a quick no-op.
    """
    import asyncpg

    plain = url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(plain, timeout=5)
    try:
        tables = await conn.fetch(
            "SELECT quote_ident(tablename) AS name FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'"  # the schema stays migrated: start-up is a no-op
        )
        if tables:
            names = ", ".join(r["name"] for r in tables)
            await conn.execute(f"TRUNCATE TABLE {names} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()


@pytest.fixture
def postgres_url(postgres_database: str) -> str:
    """The session's PostgreSQL database, emptied (for a test that runs on PostgreSQL alone)."""
    asyncio.run(reset_postgres(postgres_database))
    return postgres_database


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A SQLAlchemy URL of an empty database: a SQLite file, then the session's PostgreSQL database."""
    if request.param == "sqlite":
        # In its own directory, so an outage can be staged by moving the directory away.
        return f"sqlite+aiosqlite:///{tmp_path / 'db' / 'kefu.db'}"
    url = request.getfixturevalue("postgres_database")
    asyncio.run(reset_postgres(url))
    return url


class Outage:
    """Takes the test database away for real (and brings it back): SQLite's directory is moved aside,
    PostgreSQL's database is renamed after its connections are terminated."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_down = False

    def _sqlite_dir(self) -> Path:
        return Path(self.url.split(":///", 1)[1]).parent

    def _pg_name(self) -> str:
        return self.url.rsplit("/", 1)[1]

    async def down(self, store: Any) -> None:
        await store.dispose()  # drop pooled connections so the next query must connect afresh
        if self.url.startswith("sqlite"):
            directory = self._sqlite_dir()
            await asyncio.to_thread(directory.rename, directory.with_name(directory.name + "_down"))
        else:
            import asyncpg

            name = self._pg_name()
            # pg_terminate_backend only signals: on a busy machine a backend may still be exiting (or the
            # app's background jobs may have connected again) when the RENAME runs, so try again.
            for attempt in range(50):
                try:
                    await _pg_admin(
                        [
                            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' "
                            "AND pid <> pg_backend_pid()",
                            f'ALTER DATABASE "{name}" RENAME TO "{name}_down"',
                        ]
                    )
                    break
                except asyncpg.ObjectInUseError:
                    if attempt == 49:
                        raise
                    await asyncio.sleep(0.1)
        self.is_down = True

    async def up(self) -> None:
        if not self.is_down:
            return
        if self.url.startswith("sqlite"):
            directory = self._sqlite_dir()
            await asyncio.to_thread(directory.with_name(directory.name + "_down").rename, directory)
        else:
            name = self._pg_name()
            await _pg_admin([f'ALTER DATABASE "{name}_down" RENAME TO "{name}"'])
        self.is_down = False


@pytest.fixture
def db_outage(db_url: str) -> Iterator[Outage]:
    """Stage a real database outage in a test; always restored afterwards."""
    outage = Outage(db_url)
    yield outage
    if outage.is_down:
        asyncio.run(outage.up())


@pytest.fixture
def faq_dir(tmp_path: Path) -> Path:
    """A private copy of the test FAQ (reload tests edit it)."""
    target = tmp_path / "faq"
    shutil.copytree(TEST_FAQ, target)
    return target


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` over `base`, merging nested mappings."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@pytest.fixture
def settings_factory(db_url: str, faq_dir: Path) -> Callable[..., Any]:
    """Build gateway Settings for a test: its database, its FAQ copy, fast timers; override any section."""

    def make(**sections: Any) -> Any:
        base: dict[str, Any] = {
            "database": {"url": db_url},
            "kb": {"paths": [str(faq_dir)], "watch": False, "watch_interval_s": 0.05},
            "outbox": {"poll_interval_s": 0.05, "base_delay_s": 0.02, "max_delay_s": 0.1, "max_attempts": 4},
            "admin": {"token": ADMIN_TOKEN},
            "channels": {"web": {"enabled": True}},
            # The test's own inbound spool (PostgreSQL's default, data/spool, would be shared).
            "pipeline": {"spool_dir": str(faq_dir.parent / "spool")},
            # The behaviour tests run the lexical matcher (fast, and what their FAQ fixture is written
            # for); tests/gateway/test_semantic_pipeline.py runs the semantic stage through the gateway.
            "matcher": {"semantic": {"model": "none"}},
        }
        return settings_from_mapping(deep_merge(base, sections))

    return make


@pytest.fixture
def admin_headers() -> dict[str, str]:
    """The Authorization header of the test settings' admin token."""
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def app_client(aiohttp_client: Any, settings_factory: Callable[..., Any]) -> Any:
    """A running gateway app (default test settings) behind a real HTTP test client."""
    return await aiohttp_client(create_app(settings_factory()))


# --- Redis (the coordination layer of several processes) ------------------------------------------------

REDIS_HOST = os.environ.get("KEFU_TEST_REDIS_HOST", "127.0.0.1")
REDIS_PORT = int(os.environ.get("KEFU_TEST_REDIS_PORT", "6379"))
# Tests use this DB number of the machine's Redis, each test under its own key prefix (removed afterwards).
REDIS_DB = int(os.environ.get("KEFU_TEST_REDIS_DB", "9"))


def _redis_unavailable(reason: str) -> None:
    if services_required():
        pytest.fail(f"Redis required (KEFU_REQUIRE_SERVICES=1) but {reason}", pytrace=False)
    pytest.skip(f"Redis not available: {reason}")


async def drop_redis_prefix(url: str, prefix: str) -> None:
    """Delete every key of a test's prefix."""
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def redis_section() -> Iterator[dict[str, Any]]:
    """The `redis:` settings section of a test: the machine's Redis, a prefix of its own (skips without Redis)."""
    if not _port_open(REDIS_HOST, REDIS_PORT):
        _redis_unavailable(f"nothing listens on {REDIS_HOST}:{REDIS_PORT}")
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    prefix = f"kefu-test-{uuid.uuid4().hex[:12]}"
    yield {"url": url, "prefix": prefix}
    asyncio.run(drop_redis_prefix(url, prefix))


class RedisServer:
    """A `redis-server` of the test's own on a free port, which the test may stop and start again."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.process: Any = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import subprocess
        import time

        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _port_open("127.0.0.1", self.port):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A private redis-server (stopped and restarted by outage tests); skips when the binary is absent."""
    binary = shutil.which("redis-server")
    if binary is None:
        _redis_unavailable("no redis-server binary to start a private one")
    server = RedisServer(binary)
    server.start()
    yield server
    server.stop()
