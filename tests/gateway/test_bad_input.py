"""Hostile and broken requests get short, clear 4xx answers; a database failure leaves nothing behind."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest

from gateway.app import create_app
from gateway.channels.web.adapter import sign
from gateway.keys import RUNTIME
from handoff.state import ConversationState
from tests.gateway.db_faults import failing_replies

HEADERS = {"Content-Type": "application/json"}


async def error_of(resp: Any) -> str:
    body = await resp.json()
    assert set(body) == {"error"}
    assert "Traceback" not in body["error"]
    return body["error"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"user_id=u&text=hi", "body is not valid JSON"),
        (b"\xff\xfe{}", "body is not UTF-8"),
        (b'["user_id", "text"]', "body must be a JSON object"),
        (b"[" * 40 + b"]" * 40, "JSON nested deeper than 32 levels"),
        (b"[" * 60000, "JSON nested deeper than 32 levels"),  # would blow json.loads' recursion
        (b'{"text": "hi"}', "user_id is required"),
        (b'{"user_id": 7, "text": "hi"}', "user_id must be a string"),
        (b'{"user_id": "u", "text": "   "}', "text must not be empty"),
        (json.dumps({"user_id": "u", "text": "长" * 2001}).encode(), "text is longer than 2000 characters"),
        (b'{"user_id": "u", "text": "hi", "admin": true}', "unknown field(s) admin"),
        (b'{"user_id": "u\\u0000", "text": "hi"}', "user_id contains control characters"),
    ],
)
async def test_bad_bodies_are_400_with_the_reason(app_client: Any, body: bytes, message: str) -> None:
    resp = await app_client.post("/web/messages", data=body, headers=HEADERS)
    assert resp.status == 400
    assert message in await error_of(resp)


async def test_bodies_over_the_limit_are_413(app_client: Any) -> None:
    big = json.dumps({"user_id": "u", "text": "x" * 70_000}).encode()
    declared = await app_client.post("/web/messages", data=big, headers=HEADERS)
    assert declared.status == 413

    async def chunks():  # no Content-Length: the limit applies while reading
        for _ in range(70):
            yield b" " * 1024

    streamed = await app_client.post("/web/messages", data=chunks(), headers=HEADERS)
    assert streamed.status == 413


async def test_unknown_paths_and_methods(app_client: Any) -> None:
    missing = await app_client.get("/nope")
    assert missing.status == 404 and await error_of(missing) == "Not Found"
    assert (await app_client.get("/web/messages")).status == 405


async def test_forged_signature_is_403(aiohttp_client: Any, settings_factory: Any) -> None:
    client = await aiohttp_client(create_app(settings_factory(channels={"web": {"secret": "s3cret"}})))
    raw = b'{"user_id": "u", "text": "hi"}'
    forged = await client.post(
        "/web/messages", data=raw, headers={**HEADERS, "X-Kefu-Signature": "sha256=" + "0" * 64}
    )
    assert forged.status == 403 and "invalid X-Kefu-Signature" in await error_of(forged)
    tampered = await client.post(
        "/web/messages",
        data=raw.replace(b"hi", b"yo"),
        headers={**HEADERS, "X-Kefu-Signature": sign("s3cret", raw)},
    )
    assert tampered.status == 403


async def test_a_database_error_mid_message_leaves_nothing_and_the_retry_succeeds(app_client: Any) -> None:
    runtime = app_client.app[RUNTIME]
    payload = {"user_id": "crash", "text": "转人工", "message_id": "m-1"}
    async with failing_replies(runtime.store.engine):
        failed = await app_client.post("/web/messages", json=payload)
    assert failed.status == 503
    assert await error_of(failed) == "temporarily unavailable, please retry"
    assert await runtime.store.count_messages() == 0
    assert await runtime.store.count_conversations() == 0

    retried = await app_client.post("/web/messages", json=payload)
    assert retried.status == 200
    body = await retried.json()
    assert body["duplicate"] is False and body["replies"]
    conversation = await runtime.store.conversation(body["conversation_id"])
    assert conversation is not None and conversation.state is ConversationState.QUEUED
    stored = await runtime.store.messages(conversation.id)
    inbound = [m for m in stored if m.direction == "in"]
    assert [m.text for m in inbound] == ["转人工"]
    assert [m.reply_to for m in stored if m.sender == "bot"] == [inbound[0].id]


async def test_a_signature_of_bytes_that_are_not_utf8_is_403(
    aiohttp_client: Any, settings_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = await aiohttp_client(create_app(settings_factory(channels={"web": {"secret": "s3cret"}})))
    body = b'{"user_id": "u", "text": "hi"}'
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(
        b"POST /web/messages HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"X-Kefu-Signature: sha256=\xff\xfe\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert status_line.split()[1] == b"403"  # the header's lone surrogates used to fail the comparison: 500
    media = await client.get("/media/x", params={"exp": "9999999999", "sig": "\udcff"}, allow_redirects=False)
    assert media.status in (403, 404)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
