"""The delivery policy and the outbox's guarantees (reliability issue items 2, 3, 4, 8, 13), on both databases.

Sends go to a web-chat callback receiver (a real aiohttp server) that answers with scripted statuses.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import inspect as sa_inspect

from gateway.channels.base import Outgoing
from gateway.keys import RUNTIME
from gateway.message import Message, utcnow
from gateway.runtime import Runtime
from gateway.storage import Store, migrate
from gateway.storage.migrations import target_metadata
from tests.gateway.conftest import crashed_mid_send, start_web
from tests.gateway.sql_sent import sql_sent
from tests.waiting import eventually


def to(key: str, text: str) -> Outgoing:
    return Outgoing("web", "default", key, text, sender="agent", target={"user_id": key.rsplit(":", 1)[-1]})


def question(user: str, text: str = "怎么退货", msg_id: str | None = None) -> Message:
    return Message(
        channel="web",
        account="default",
        conversation_key=f"web:default:{user}",
        user_id=user,
        text=text,
        channel_msg_id=msg_id,
    )


# --- item 2: a reply and its outbox row commit together ---------------------------------------------


async def test_replies_and_their_held_rows_are_written_in_the_messages_unit(
    aiohttp_client: Any, settings_factory: Any, upstream: Any
) -> None:
    _fake, url = upstream
    _client, runtime = await start_web(aiohttp_client, settings_factory, url)
    runtime.pipeline.hold = timedelta(hours=1)
    result = await runtime.pipeline.handle(question("held"), outbox="held")
    rows = await runtime.store.list_outbox()
    assert [(r.message_id, r.status) for r in rows] == [(result.reply_ids[0], "held")]
    assert result.outbox == ((rows[0].id, "held"),)


async def test_undecided_held_rows_are_sent_when_the_hold_ends(
    aiohttp_client: Any, settings_factory: Any, upstream: Any
) -> None:
    # Regression (item 2): a crash between committing the replies and enqueueing them lost the answer.
    # Here the adapter never decides (as after a kill -9): the worker sends the rows once the hold ends.
    fake, url = upstream
    _client, runtime = await start_web(aiohttp_client, settings_factory, url)
    runtime.pipeline.hold = timedelta(seconds=0.2)
    result = await runtime.pipeline.handle(question("crash"), outbox="held")

    async def sent() -> bool:
        return [r.status for r in await runtime.store.list_outbox()] == ["sent"]

    await eventually(sent)
    assert fake.texts == [result.replies[0].text]


async def held(store: Store, now: datetime) -> int:
    """A held outbox row (a reply waiting for its passive answer's outcome)."""
    async with store.transaction() as tx:
        return await tx.enqueue(
            channel="web",
            account="default",
            conversation_key="web:default:c",
            text="答复",
            sender="bot",
            target={},
            now=now,
            status="held",
            next_attempt_at=now + timedelta(minutes=1),
        )


async def test_cancelling_is_all_or_nothing_and_a_released_row_is_never_cancelled(store: Store) -> None:
    now = utcnow()

    first, second = await held(store, now), await held(store, now)
    assert await store.settle_held([first], "pending", now)
    assert not await store.settle_held([first, second], "cancelled", now)  # first is the worker's now
    assert {r.id: r.status for r in await store.list_outbox()} == {first: "pending", second: "held"}
    assert await store.settle_held([second], "cancelled", now)
    assert await store.settle_held([second], "cancelled", now)  # a platform retry cancels again: fine


async def test_settles_waiting_together_are_one_statement_each_with_its_own_outcome(store: Store) -> None:
    """Passive answers finishing together settle their held rows in one statement on PostgreSQL
    (gateway/storage/settle_batch.py); each caller still learns whether its own row was still held."""
    now = utcnow()

    ids = [await held(store, now) for _ in range(5)]
    assert await store.settle_held([ids[3]], "pending", now)  # its hold ended: the worker's now
    async with sql_sent(store) as sent:
        outcomes = await asyncio.gather(*(store.settle_held([i], "cancelled", now) for i in ids))
    assert outcomes == [True, True, True, False, True]
    statuses = {r.id: r.status for r in await store.list_outbox()}
    assert statuses == {**dict.fromkeys(ids, "cancelled"), ids[3]: "pending"}
    settles = [s for s in sent["statements"] if s.startswith("UPDATE outbox")]
    if store.dialect == "postgresql":
        assert len(settles) == 1, settles
        assert sent["control"] == []  # one statement is atomic: no BEGIN/COMMIT


async def test_web_chat_keeps_answering_in_its_response_without_outbox_rows(app_client: Any) -> None:
    resp = await app_client.post("/web/messages", json={"user_id": "w1", "text": "怎么退货"})
    assert resp.status == 200 and (await resp.json())["replies"]
    assert await app_client.app[RUNTIME].store.list_outbox() == []


# --- item 4: per-conversation order ---------------------------------------------------------------


async def test_a_retried_row_is_not_overtaken_by_later_rows_of_its_conversation(
    aiohttp_client: Any, settings_factory: Any, upstream: Any
) -> None:
    # Regression (item 4): "first" failed once and "second"/"third" (enqueued meanwhile) went out before it.
    fake, url = upstream
    fake.script = [502]
    _client, runtime = await start_web(
        aiohttp_client, settings_factory, url, base_delay_s=0.4, max_delay_s=0.4
    )
    key = "web:default:order"
    first = await runtime.outbox.enqueue(to(key, "first"))

    async def failed_once() -> bool:
        row = await runtime.store.outbox(first)
        return row is not None and row.attempts == 1 and row.status == "pending"

    await eventually(failed_once)
    await runtime.outbox.enqueue(to(key, "second"))
    await runtime.outbox.enqueue(to(key, "third"))
    other = await runtime.outbox.enqueue(to("web:default:someone-else", "other"))
    await eventually(lambda: _all_sent(runtime))
    assert [t for t in fake.texts if t != "other"] == ["first", "first", "second", "third"]
    assert (await runtime.store.outbox(other)).status == "sent"  # type: ignore[union-attr]


async def _all_sent(runtime: Runtime) -> bool:
    return all(r.status == "sent" for r in await runtime.store.list_outbox())


# --- item 13: failed rows are retried slowly, visible meanwhile ------------------------------------


async def test_failed_rows_are_retried_on_the_slow_schedule_and_healthz_is_degraded(
    aiohttp_client: Any, settings_factory: Any, upstream: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression (item 13): a row that failed max_attempts times stayed failed for good, /healthz said ok.
    # The probe's database bound is not what this test is about: on a busy machine a ping may pass 2 s.
    monkeypatch.setattr("gateway.app.HEALTH_DB_TIMEOUT_S", 30.0)
    fake, url = upstream
    fake.always = 503
    client, runtime = await start_web(
        aiohttp_client, settings_factory, url, max_attempts=2, failed_retry_s=0.2
    )
    outbox_id = await runtime.outbox.enqueue(to("web:default:outage", "停机期间的答复"))

    async def failed() -> bool:
        row = await runtime.store.outbox(outbox_id)
        return row is not None and row.status == "failed"

    await eventually(failed)
    health = await (await client.get("/healthz")).json()
    assert health["status"] == "degraded" and health["outbox"] == {"failing": 1}
    metrics = await (await client.get("/metrics")).text()
    assert "kefu_outbox_failing_rows 1.0" in metrics

    fake.always = None  # the platform is back
    await eventually(lambda: _all_sent(runtime))
    health = await (await client.get("/healthz")).json()
    assert health["status"] == "ok" and health["outbox"] == {"failing": 0}


async def test_failed_rows_older_than_give_up_after_are_not_retried(store: Store) -> None:
    now = utcnow()

    async def failed(age: timedelta) -> int:
        async with store.transaction() as tx:
            outbox_id = await tx.enqueue(
                channel="web",
                account="default",
                conversation_key=f"web:default:{age}",
                text="平台故障",
                sender="agent",
                target={},
                now=now - age,
            )
        await store.finish_outbox(outbox_id, status="failed", now=now, error="503", next_attempt_at=now)
        return outbox_id

    young, old = await failed(timedelta(hours=1)), await failed(timedelta(hours=25))
    claimed = await store.claim_outbox(now, lease=timedelta(minutes=1), give_up_after=timedelta(hours=24))
    assert [r.id for r in claimed] == [young]
    assert (await store.outbox(old)).status == "failed"  # type: ignore[union-attr]
    assert await store.failing_outbox(now, timedelta(hours=24)) == 0  # young is `sending` now


async def test_a_failed_row_still_retried_holds_its_conversations_later_rows(store: Store) -> None:
    # Found by `make chaos` (api-outage): after a 10-minute platform outage the first answers were
    # `failed` (slow schedule) and the later ones overtook them: every customer got them shuffled.
    now = utcnow()
    give_up = timedelta(hours=24)

    async def row(key: str, text: str, created: datetime) -> int:
        async with store.transaction() as tx:
            return await tx.enqueue(
                channel="web", account="default", conversation_key=key, text=text,
                sender="agent", target={}, now=created,
            )  # fmt: skip

    first = await row("web:default:fa", "第一条", now - timedelta(minutes=5))
    second = await row("web:default:fa", "第二条", now - timedelta(minutes=1))
    retry_at = now + timedelta(minutes=5)
    await store.finish_outbox(first, status="failed", now=now, error="503", next_attempt_at=retry_at)
    assert await store.claim_outbox(now, lease=timedelta(minutes=1), give_up_after=give_up) == []
    # The slow retry comes: both are claimed, in order (the worker sends one conversation's rows in turn).
    claimed = await store.claim_outbox(retry_at, lease=timedelta(minutes=1), give_up_after=give_up)
    assert [r.id for r in claimed] == [first, second]

    # A row given up on (older than give_up_after) holds nothing back.
    stale = await row("web:default:fb", "放弃的", now - timedelta(hours=25))
    after = await row("web:default:fb", "之后的", now)
    await store.finish_outbox(stale, status="failed", now=now, error="503", next_attempt_at=retry_at)
    claimed = await store.claim_outbox(now, lease=timedelta(minutes=1), give_up_after=give_up)
    assert [r.id for r in claimed] == [after]


# --- item 3: doubles are counted ------------------------------------------------------------------


async def test_a_send_resumed_after_an_expired_lease_is_counted_as_a_possible_double(
    aiohttp_client: Any, settings_factory: Any, upstream: Any, db_url: str
) -> None:
    fake, url = upstream
    await crashed_mid_send(db_url, "d", "可能重复", lease_s=0.2)
    client, runtime = await start_web(aiohttp_client, settings_factory, url)
    await eventually(lambda: _all_sent(runtime))
    assert fake.texts == ["可能重复"]
    metrics = await (await client.get("/metrics")).text()
    assert 'kefu_outbox_possible_doubles_total{cause="resumed",channel="web"} 1.0' in metrics


async def test_a_send_that_timed_out_after_going_out_is_counted_as_a_possible_double(
    aiohttp_client: Any, settings_factory: Any, upstream: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The receiver got the text but answered too late: the retry delivers it again. That double used to
    # be silent (kefu_outbox_possible_doubles_total had no sample).
    fake, url = upstream
    fake.answer_after = [2.0]
    monkeypatch.setattr("gateway.jobs.outbox.SEND_TIMEOUT_S", 0.3)  # the platform answers after it
    client, runtime = await start_web(aiohttp_client, settings_factory, url, base_delay_s=0.05)
    await runtime.outbox.enqueue(to("web:default:late", "迟到的回执"))
    await eventually(lambda: _all_sent(runtime))
    assert fake.texts == ["迟到的回执", "迟到的回执"]
    metrics = await (await client.get("/metrics")).text()
    assert 'kefu_outbox_possible_doubles_total{cause="timeout",channel="web"} 1.0' in metrics


async def test_no_row_of_a_claimed_batch_is_still_being_sent_when_its_lease_ends(
    aiohttp_client: Any, settings_factory: Any, upstream: Any
) -> None:
    # One claim leases a batch with one lease, and a conversation's rows go one after another: the third
    # one here was still being sent when the batch's lease ended, and another process's claim took it
    # again (resumed) and sent it a second time. Each row's lease is now renewed before its send.
    fake, url = upstream
    fake.answer_after = [0.8, 0.8, 0.8]
    client, runtime = await start_web(aiohttp_client, settings_factory, url, lease_s=2.0, base_delay_s=0.05)
    await runtime.outbox.stop()
    for n in range(3):
        await runtime.outbox.enqueue(to("web:default:chain", f"第{n}条"))
    sending = asyncio.create_task(runtime.outbox.run_once())  # this process
    await asyncio.sleep(2.1)  # past the batch's lease, in wall-clock time (leases are)
    other = await runtime.store.claim_outbox(utcnow(), lease=timedelta(seconds=2.0))  # another process
    await sending
    assert not [row.text for row in other if row.resumed]


async def test_a_slow_platform_with_a_short_lease_gets_each_reply_once(
    aiohttp_client: Any, settings_factory: Any, upstream: Any
) -> None:
    # outbox.lease_s shorter than the platform's answer: cutting the send at the lease made every attempt
    # time out after delivering, and each retry delivered the text again (8 copies and a `failed` row).
    fake, url = upstream
    fake.answer_after = [1.5, 1.5]
    client, runtime = await start_web(aiohttp_client, settings_factory, url, lease_s=0.5, base_delay_s=0.05)
    await runtime.outbox.enqueue(to("web:default:slow", "慢一点的平台"))
    await runtime.outbox.enqueue(to("web:default:slow", "第二条"))
    await eventually(lambda: _all_sent(runtime))
    assert fake.texts == ["慢一点的平台", "第二条"]
    metrics = await (await client.get("/metrics")).text()
    assert 'cause="timeout"' not in metrics and 'cause="resumed"' not in metrics


async def test_recording_a_delivered_send_is_retried_when_the_database_is_busy(
    aiohttp_client: Any, settings_factory: Any, upstream: Any
) -> None:
    # Regression (item 3a): one failed "mark sent" left the row `sending`, sent again after the lease.
    fake, url = upstream
    _client, runtime = await start_web(aiohttp_client, settings_factory, url)
    store = runtime.store
    original = store.finish_outbox
    failures: list[str] = []

    async def busy_once(outbox_id: int, **kw: Any) -> None:
        if kw["status"] == "sent" and not failures:
            failures.append("busy")
            raise ConnectionError("database is locked")
        await original(outbox_id, **kw)

    store.finish_outbox = busy_once  # type: ignore[method-assign]
    await runtime.outbox.enqueue(to("web:default:busy", "只发一次"))
    await eventually(lambda: _all_sent(runtime))
    assert failures == ["busy"] and fake.texts == ["只发一次"]


# --- item 8: /healthz never hangs with the database -----------------------------------------------


async def test_healthz_answers_503_quickly_while_the_database_hangs(
    app_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.app.HEALTH_DB_TIMEOUT_S", 0.1)
    runtime = app_client.app[RUNTIME]
    hung = asyncio.Event()

    async def frozen() -> bool:  # a SIGSTOPped PostgreSQL: the query never returns
        await hung.wait()
        return True

    runtime.store.ping = frozen  # type: ignore[method-assign]
    resp = await app_client.get("/healthz")
    assert resp.status == 503
    assert (await resp.json())["db"]["ok"] is False


async def test_healthz_answers_while_a_cancelled_query_still_waits_on_the_database(
    app_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cancelled query on a frozen PostgreSQL still closes its connection, which waits on the server:
    # the probe must not wait for that clean-up (chaos pg-freeze: /healthz took > 5 s).
    monkeypatch.setattr("gateway.app.HEALTH_DB_TIMEOUT_S", 0.1)
    runtime = app_client.app[RUNTIME]
    thawed = asyncio.Event()

    async def frozen() -> bool:
        try:
            await thawed.wait()
        except asyncio.CancelledError:
            await thawed.wait()  # the connection's close, on the same frozen server
            raise
        return True

    runtime.store.ping = frozen  # type: ignore[method-assign]
    async with asyncio.timeout(15):  # without the fix: until the thaw, i.e. forever
        resp = await app_client.get("/healthz")
    assert resp.status == 503 and (await resp.json())["db"]["ok"] is False
    thawed.set()  # the check left behind finishes its clean-up
    await asyncio.sleep(0)


async def test_an_outbox_of_an_earlier_version_gets_the_order_index_at_start_up(db_url: str) -> None:
    store = Store.from_url(db_url)
    before_migrations = (await asyncio.to_thread(migrate.script)).get_revision("0001").module.METADATA
    await store.create_all()
    async with store.engine.begin() as conn:  # the schema create_all made, of that version: no index
        await conn.exec_driver_sql("DROP TABLE alembic_version")
        await conn.run_sync(target_metadata().drop_all)
        await conn.run_sync(before_migrations.create_all)
        await conn.exec_driver_sql("DROP INDEX ix_outbox_conversation")
    await store.create_all()  # as `kefu serve` does at start-up
    async with store.engine.connect() as conn:
        names = await conn.run_sync(lambda sync: {i["name"] for i in sa_inspect(sync).get_indexes("outbox")})
    await store.dispose()
    assert "ix_outbox_live_conversation" in names


async def test_a_claim_past_a_window_of_held_back_rows_still_finds_the_claimable_ones(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite checks only the oldest CLAIM_WINDOW due rows for an earlier row that holds them back
    # (thousands due cost each claim milliseconds otherwise); when those are all held back, it must look
    # further, or a conversation waiting for a retry would hold every other customer's answers up.
    monkeypatch.setattr("gateway.storage.outbox_claim.CLAIM_WINDOW", 2)
    now = utcnow()

    async def row(key: str, text: str) -> int:
        async with store.transaction() as tx:
            return await tx.enqueue(
                channel="web", account="default", conversation_key=key, text=text,
                sender="agent", target={}, now=now - timedelta(minutes=1),
            )  # fmt: skip

    first = await row("web:default:wa", "重试中")
    held = [await row("web:default:wa", f"排在后面{n}") for n in range(2)]
    other = await row("web:default:wb", "别的客户")
    await store.finish_outbox(first, status="pending", now=now, next_attempt_at=now + timedelta(minutes=5))

    claimed = await store.claim_outbox(now, lease=timedelta(minutes=1))
    assert [r.id for r in claimed] == [other]
    assert [(await store.outbox(i)).status for i in held] == ["pending", "pending"]  # type: ignore[union-attr]
    # And with few due rows (no more than the window), the window is all of them.
    monkeypatch.setattr("gateway.storage.outbox_claim.CLAIM_WINDOW", 200)
    late = await row("web:default:wc", "又一位")
    assert [r.id for r in await store.claim_outbox(now, lease=timedelta(minutes=1))] == [late]
