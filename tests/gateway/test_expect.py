"""`Expect: 100-continue`: an oversized declared body is refused before the client sends it (gateway/http/expect.py).

Raw HTTP/1.1 over a socket, as curl and most HTTP libraries send a large POST: headers first, then the
body only after the server's 100 Continue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.app import create_app
from handoff.agents import Role
from tests.gateway.test_agent_api import make_agent


def head(path: str, length: int, *, expect: str = "100-continue", version: str = "1.1") -> bytes:
    """A POST's request line and headers, up to the blank line before the body."""
    return (
        f"POST {path} HTTP/{version}\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Expect: {expect}\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


@contextlib.asynccontextmanager
async def raw(client: Any) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """A plain TCP connection to the test server, closed afterwards."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        yield reader, writer
    finally:
        writer.close()


async def ask(client: Any, path: str, length: int, *, expect: str = "100-continue") -> list[bytes]:
    """Send only the headers and read the status lines the server sends before the body."""
    async with raw(client) as (reader, writer):
        writer.write(head(path, length, expect=expect))
        await writer.drain()
        return [await asyncio.wait_for(reader.readline(), 10)]


async def test_an_oversized_declared_body_gets_413_instead_of_100_continue(
    aiohttp_client: Any, settings_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Regression: aiohttp's default answer was 100 Continue to any size; the client then sent the whole
    # body, only to get the 413 after it.
    client = await aiohttp_client(create_app(settings_factory()))
    (status,) = await ask(client, "/web/messages", 50_000_000)
    assert status.split()[1] == b"413"
    (status,) = await ask(
        client, "/api/v1/conversations/1/messages", 50_000_000
    )  # every route, not only the webhooks
    assert status.split()[1] == b"413"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


async def test_a_body_within_its_routes_limit_is_told_to_go_on(
    aiohttp_client: Any, settings_factory: Any
) -> None:
    client = await aiohttp_client(create_app(settings_factory()))
    (status,) = await ask(client, "/web/messages", 1_000)
    assert status.startswith(b"HTTP/1.1 100")
    # An upload route's limit is uploads.max_bytes (10 MiB), not server.max_body_bytes (64 KiB).
    (status,) = await ask(client, "/web/uploads?visitor=visitor-0123456789", 1_000_000)
    assert status.startswith(b"HTTP/1.1 100")
    (status,) = await ask(client, "/web/uploads?visitor=visitor-0123456789", 50_000_000)
    assert status.split()[1] == b"413"


async def test_an_expectation_other_than_100_continue_is_417(
    aiohttp_client: Any, settings_factory: Any
) -> None:
    client = await aiohttp_client(create_app(settings_factory()))
    (status,) = await ask(client, "/web/messages", 10, expect="something-else")
    assert status.split()[1] == b"417"


async def test_the_body_sent_after_100_continue_is_handled_as_usual(
    aiohttp_client: Any, settings_factory: Any
) -> None:
    client = await aiohttp_client(create_app(settings_factory()))
    body = b'{"user_id": "expect-user", "text": "\xe4\xbd\xa0\xe5\xa5\xbd", "message_id": "e-1"}'
    async with raw(client) as (reader, writer):
        writer.write(head("/web/messages", len(body)))
        await writer.drain()
        assert (await asyncio.wait_for(reader.readline(), 10)).startswith(b"HTTP/1.1 100")
        assert await reader.readline() == b"\r\n"
        writer.write(body)
        await writer.drain()
        assert (await asyncio.wait_for(reader.readline(), 10)).split()[1] == b"200"


async def test_a_refusal_closes_the_connection_whose_body_was_never_read(
    aiohttp_client: Any, settings_factory: Any
) -> None:
    # Found by review: kept open, the connection lingered 10 s and a next request on it got no answer.
    client = await aiohttp_client(create_app(settings_factory()))
    async with raw(client) as (reader, writer):
        writer.write(head("/web/messages", 50_000_000))
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # to the end: the server closes
    answer_head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert answer_head.startswith(b"http/1.1 413") and b"connection: close" in answer_head


async def test_http_1_0_ignores_an_expectation(aiohttp_client: Any, settings_factory: Any) -> None:
    client = await aiohttp_client(create_app(settings_factory()))
    body = b'{"user_id": "expect-old", "text": "\xe4\xbd\xa0\xe5\xa5\xbd", "message_id": "e-2"}'
    async with raw(client) as (reader, writer):
        writer.write(head("/web/messages", len(body), expect="something-else", version="1.0") + body)
        await writer.drain()
        assert (await asyncio.wait_for(reader.readline(), 10)).split()[1] == b"200"


async def test_a_route_with_a_lower_cap_answers_expect_by_it_and_never_above_the_servers(
    aiohttp_client: Any, settings_factory: Any
) -> None:
    # Regression: the 排班 (16 KiB) and 质检 (64 KiB) routes read their bodies by caps of their own while
    # their Expect answer used server.max_body_bytes: a client that asked first was told to send a body
    # the route then refused, and one that did not ask had a body over server.max_body_bytes accepted.
    roomy = await aiohttp_client(create_app(settings_factory(server={"max_body_bytes": 200_000})))
    (status,) = await ask(roomy, "/api/v1/shifts", 20_000)
    assert status.split()[1] == b"413"
    (status,) = await ask(roomy, "/api/v1/qa/check", 100_000)
    assert status.split()[1] == b"413"
    (status,) = await ask(roomy, "/api/v1/qa/check", 60_000)
    assert status.startswith(b"HTTP/1.1 100")

    tight = await aiohttp_client(create_app(settings_factory(server={"max_body_bytes": 4096})))
    (status,) = await ask(tight, "/api/v1/shifts", 10_000)
    assert status.split()[1] == b"413"
    boss = await make_agent(tight, "主管", ("售前",), role=Role.SUPERVISOR)
    padded = {"agent": "主管", "group": "售前", "note": "x" * 10_000}
    response = await tight.post("/api/v1/shifts", json=padded, headers=boss.headers)
    assert response.status == 413  # no Expect: the same limit
