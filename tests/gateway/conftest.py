"""Gateway fixtures: fail any test that blocks the event loop (blockbuster); a bare Store; the web-chat callback
receiver the delivery and outbox tests send to."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
from aiohttp import web
from blockbuster import BlockBuster, blockbuster_ctx

from gateway.app import create_app
from gateway.keys import RUNTIME
from gateway.message import utcnow
from gateway.runtime import Runtime
from gateway.storage import OutboxRow, Store
from gateway.storage.handoff_store import HandoffDb

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


class Upstream:
    """A web-chat callback receiver: scripted statuses, then 204; it records every text it was sent."""

    def __init__(self) -> None:
        self.script: list[int] = []
        self.always: int | None = None
        self.texts: list[str] = []
        # Seconds to wait before answering, one per request (then none): the text is received, the answer late.
        self.answer_after: list[float] = []

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        status = self.always or (self.script.pop(0) if self.script else 204)
        self.texts.append(body["text"])
        if self.answer_after:
            await asyncio.sleep(self.answer_after.pop(0))
        return web.Response(status=status, text=f"upstream says {status}")


@pytest.fixture
async def upstream(aiohttp_server: Any) -> tuple[Upstream, str]:
    """The receiver, served over real HTTP, and its callback URL."""
    fake = Upstream()
    app = web.Application()
    app.router.add_post("/callback", fake.handle)
    server = await aiohttp_server(app)
    return fake, str(server.make_url("/callback"))


async def start_web(
    aiohttp_client: Any, settings_factory: Any, url: str, **outbox: Any
) -> tuple[Any, Runtime]:
    """A gateway whose web channel delivers to `url` (the receiver's callback), with these outbox settings."""
    settings = settings_factory(channels={"web": {"callback_url": url}}, outbox=outbox)
    client = await aiohttp_client(create_app(settings))
    return client, client.app[RUNTIME]


async def crashed_mid_send(db_url: str, user: str, text: str, lease_s: float) -> OutboxRow:
    """A web-chat send queued and claimed (leased for `lease_s`) by a process that then died mid-send."""
    store = Store.from_url(db_url)
    await store.create_all()
    async with store.transaction() as tx:
        await tx.enqueue(
            channel="web",
            account="default",
            conversation_key=f"web:default:{user}",
            text=text,
            sender="agent",
            target={"user_id": user},
            now=utcnow(),
        )
    (claimed,) = await store.claim_outbox(utcnow(), lease=timedelta(seconds=lease_s))
    await store.dispose()
    return claimed


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[HandoffDb]:
    """The handoff storage on an empty database (SQLite, then PostgreSQL), default group 售前."""
    store = Store.from_url(db_url)
    await store.create_all()
    yield HandoffDb(store, default_group="售前")
    await store.dispose()
