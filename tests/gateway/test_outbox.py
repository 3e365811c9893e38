"""The outbox against a fake upstream (a real aiohttp server): retries, give-ups, restarts, the admin view."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gateway.channels.base import Outgoing
from gateway.jobs.outbox import Outbox
from gateway.keys import RUNTIME
from gateway.message import Message, utcnow
from gateway.runtime import Runtime
from gateway.settings import OutboxSettings
from gateway.storage import OutboxRow
from tests.gateway.conftest import crashed_mid_send, start_web
from tests.waiting import eventually, holds


def outgoing(text: str = "您好，人工客服已为您处理", key: str = "web:default:o1") -> Outgoing:
    return Outgoing("web", "default", key, text, sender="agent", target={"user_id": key.rsplit(":", 1)[-1]})


async def wait_for(runtime: Runtime, outbox_id: int, predicate: Callable[[OutboxRow], bool]) -> OutboxRow:
    for _ in range(250):
        row = await runtime.store.outbox(outbox_id)
        if row is not None and predicate(row):
            return row
        await asyncio.sleep(0.02)
    raise AssertionError(f"outbox row {outbox_id} never got there: {await runtime.store.outbox(outbox_id)}")


async def test_server_errors_are_retried_until_delivered(
    aiohttp_client: Any, settings_factory: Any, upstream: Any
) -> None:
    fake, url = upstream
    fake.script = [502, 503]
    _client, runtime = await start_web(aiohttp_client, settings_factory, url)
    outbox_id = await runtime.outbox.enqueue(outgoing())
    row = await wait_for(runtime, outbox_id, lambda r: r.status == "sent")
    assert row.attempts == 3 and row.sent_at is not None and row.last_error is None
    assert fake.texts == ["您好，人工客服已为您处理"] * 3


async def test_a_permanent_refusal_is_undeliverable_at_once(
    aiohttp_client: Any, settings_factory: Any, upstream: Any
) -> None:
    fake, url = upstream
    fake.always = 400
    _client, runtime = await start_web(aiohttp_client, settings_factory, url)
    outbox_id = await runtime.outbox.enqueue(outgoing())
    row = await wait_for(runtime, outbox_id, lambda r: r.status == "undeliverable")
    assert row.attempts == 1 and "callback answered 400" in (row.last_error or "")


async def test_giving_up_after_max_attempts_keeps_the_last_error(
    aiohttp_client: Any, settings_factory: Any, upstream: Any, admin_headers: dict[str, str]
) -> None:
    fake, url = upstream
    fake.always = 503
    client, runtime = await start_web(aiohttp_client, settings_factory, url, max_attempts=3)
    outbox_id = await runtime.outbox.enqueue(outgoing())
    row = await wait_for(runtime, outbox_id, lambda r: r.status == "failed")
    assert row.attempts == 3 and "503" in (row.last_error or "")

    # Visible to operators.
    assert (await client.get("/admin/api/outbox")).status == 401
    assert (
        await client.get("/admin/api/outbox", headers={"Authorization": "Bearer nope"})
    ).status == 401  # unknown token
    assert (
        await client.get("/admin/api/outbox", params={"status": "lost"}, headers=admin_headers)
    ).status == 400
    listed = await (
        await client.get("/admin/api/outbox", params={"status": "failed"}, headers=admin_headers)
    ).json()
    assert [item["id"] for item in listed["items"]] == [outbox_id]
    assert listed["counts"]["failed"] == 1 and listed["items"][0]["last_error"].startswith(
        "callback answered 503"
    )


async def test_network_errors_are_retried(
    aiohttp_client: Any, settings_factory: Any, unused_tcp_port: int
) -> None:
    _client, runtime = await start_web(
        aiohttp_client, settings_factory, f"http://127.0.0.1:{unused_tcp_port}/callback", max_attempts=2
    )
    outbox_id = await runtime.outbox.enqueue(outgoing())
    row = await wait_for(runtime, outbox_id, lambda r: r.status == "failed")
    assert row.attempts == 2 and "Connect" in (row.last_error or "")


async def test_rows_without_an_adapter_are_undeliverable(app_client: Any) -> None:
    runtime = app_client.app[RUNTIME]
    outbox_id = await runtime.outbox.enqueue(Outgoing("qqbot", "nobody", "qqbot:nobody:x", "hi"))
    row = await wait_for(runtime, outbox_id, lambda r: r.status == "undeliverable")
    assert row.last_error == "no adapter for qqbot/nobody"


async def test_pending_sends_resume_after_a_restart(
    aiohttp_client: Any, settings_factory: Any, upstream: Any
) -> None:
    fake, url = upstream
    fake.always = 503
    # The stop may catch a retry in flight: the grace lets it end, or the row is handed straight back.
    first_client, first = await start_web(aiohttp_client, settings_factory, url, max_attempts=50)
    outbox_id = await first.outbox.enqueue(outgoing("重启前排队的消息"))
    await wait_for(first, outbox_id, lambda r: r.attempts >= 1 and r.status == "pending")
    await first_client.close()  # the gateway stops; the row stays pending (or leased) in the database

    fake.always = None
    _client, second = await start_web(aiohttp_client, settings_factory, url, max_attempts=50)
    row = await wait_for(second, outbox_id, lambda r: r.status == "sent")
    assert row.attempts >= 2 and fake.texts[-1] == "重启前排队的消息"


async def test_the_outbox_stops_as_the_shutdown_begins(
    aiohttp_client: Any, settings_factory: Any, upstream: Any
) -> None:
    # Regression: the worker stopped only after aiohttp's wait for open handlers (up to 10 s), claiming
    # and starting sends all the while; a send begun then was likely cut off, to arrive twice.
    fake, url = upstream
    fake.answer_after = [60.0]  # received, never answered in time
    client, runtime = await start_web(aiohttp_client, settings_factory, url, stop_grace_s=0.0)
    outbox_id = await runtime.outbox.enqueue(outgoing("停机时在途的消息"))
    await eventually(lambda: holds(fake.texts == ["停机时在途的消息"]))
    await client.app.shutdown()  # what aiohttp runs first on SIGTERM, before waiting for handlers
    row = await runtime.store.outbox(outbox_id)
    assert row is not None and row.status == "sending"
    assert row.locked_until is not None and row.locked_until <= utcnow()  # handed straight back
    await runtime.outbox.enqueue(outgoing("停机开始后写入的消息", key="web:default:o2"))
    assert await runtime.outbox.run_once() == 2  # both due: the worker started neither meanwhile


async def test_a_send_leased_by_a_crashed_worker_is_taken_over(
    aiohttp_client: Any, settings_factory: Any, upstream: Any, db_url: str
) -> None:
    fake, url = upstream
    claimed = await crashed_mid_send(db_url, "o1", "半路崩溃", lease_s=0.3)
    outbox_id = claimed.id
    assert claimed.status == "sending"

    _client, runtime = await start_web(aiohttp_client, settings_factory, url)
    row = await wait_for(runtime, outbox_id, lambda r: r.status == "sent")
    assert row.attempts == 2 and fake.texts == ["半路崩溃"]


def test_backoff_is_exponential_capped_and_jittered() -> None:
    settings = OutboxSettings(base_delay_s=1, max_delay_s=300)
    low = Outbox(None, settings, {}, jitter=lambda: 0.0)  # type: ignore[arg-type]
    high = Outbox(None, settings, {}, jitter=lambda: 1.0)  # type: ignore[arg-type]
    assert [high.backoff(n) for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert [low.backoff(n) for n in (1, 2, 3, 4)] == [0.5, 1, 2, 4]
    assert high.backoff(30) == 300 and low.backoff(30) == 150


async def test_concurrent_pushes_of_one_result_enqueue_each_reply_once(app_client: Any) -> None:
    runtime = app_client.app[RUNTIME]
    result = await runtime.pipeline.handle(
        Message(
            channel="web",
            account="default",
            conversation_key="web:default:twice",
            user_id="twice",
            text="怎么退货",
        )
    )
    pushed = await asyncio.gather(*(runtime.pipeline.push_replies(result) for _ in range(4)))
    assert all(ids == pushed[0] for ids in pushed)
    assert len(await runtime.store.list_outbox()) == 1


async def test_the_outbox_listing_masks_phone_and_id_numbers(
    aiohttp_client: Any, settings_factory: Any, upstream: Any, admin_headers: dict[str, str]
) -> None:
    fake, url = upstream
    fake.always = 503
    client, runtime = await start_web(aiohttp_client, settings_factory, url, max_attempts=1)
    await runtime.outbox.enqueue(outgoing("已登记您的手机13812345678和身份证11010519491231002X"))
    listed = await (await client.get("/admin/api/outbox", headers=admin_headers)).json()
    (item,) = listed["items"]
    assert item["text"] == "已登记您的手机138****5678和身份证110105********002X"


async def test_stopping_the_worker_ends_it_even_when_a_wake_up_swallows_the_cancel(
    aiohttp_client: Any, settings_factory: Any, upstream: Any
) -> None:
    # Regression (a CI run hung at shutdown): on Python 3.11 a cancel that arrives as asyncio.wait_for's
    # wait ends is swallowed; the worker, woken at that very moment, went on polling for ever and its
    # stop() never returned.
    _fake, url = upstream
    _client, runtime = await start_web(aiohttp_client, settings_factory, url)
    outbox = runtime.outbox

    async def waiting() -> bool:  # the worker found nothing and waits for a wake-up (or its poll)
        return bool(outbox._wake._waiters)  # type: ignore[attr-defined]

    await eventually(waiting)
    assert outbox._worker is not None
    worker = outbox._worker.task
    assert worker is not None
    outbox.wake()  # a wake-up and the stop in the same loop turn
    stopping = asyncio.ensure_future(outbox.stop())
    try:
        for _ in range(200):  # loop turns, no database trip: a stopped worker needs a handful
            if stopping.done():
                break
            await asyncio.sleep(0)
        assert worker.done() and stopping.done()
    finally:
        if not stopping.done():
            worker.cancel()  # (before the fix: a second cancel, so that the test can end)
        await stopping
    outbox.start()  # the app's own shutdown stops it again
