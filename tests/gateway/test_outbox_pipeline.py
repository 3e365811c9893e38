"""The outbox worker's pipeline: a hung send holds up only its own conversation, on both databases.

The worker runs against fake platforms whose sends can be held on an asyncio.Event the test controls,
with an injected clock and a poll interval of an hour: whatever the worker does here, a wake-up made it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from aiohttp import web

from gateway.channels.base import Outgoing, SendError
from gateway.jobs.outbox import Outbox
from gateway.message import utcnow
from gateway.settings import OutboxSettings
from gateway.storage import Store
from tests.waiting import eventually, holds


class Platform:
    """A channel account that records each send; a text in `hold` waits for its Event before it is sent."""

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.account = "default"
        self.calls: list[str] = []
        self.sent: list[str] = []
        self.cancelled: list[str] = []
        self.hold: dict[str, asyncio.Event] = {}
        self.fail: set[str] = set()  # texts whose send fails (retryable) once their hold is released

    def routes(self) -> list[web.AbstractRouteDef]:
        return []

    async def send(self, outgoing: Outgoing) -> None:
        self.calls.append(outgoing.text)
        gate = self.hold.get(outgoing.text)
        if gate is not None:
            try:
                await gate.wait()
            except asyncio.CancelledError:
                self.cancelled.append(outgoing.text)
                raise
        if outgoing.text in self.fail:
            raise SendError("the platform timed out", retryable=True)
        self.sent.append(outgoing.text)

    def to(self, user: str, text: str) -> Outgoing:
        return Outgoing(self.channel, self.account, f"{self.channel}:default:{user}", text, target={})


class Clock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now


class Rig:
    def __init__(self, store: Store, **settings: Any) -> None:
        self.store = store
        self.clock = Clock()
        self.qq, self.web = Platform("qqbot"), Platform("web")
        adapters = {("qqbot", "default"): self.qq, ("web", "default"): self.web}
        defaults = {"poll_interval_s": 3600.0, "lease_s": 60.0, "stop_grace_s": 0.0}
        outbox_settings = OutboxSettings(**{**defaults, **settings})
        self.outbox = Outbox(store, outbox_settings, adapters, clock=self.clock)

    async def status(self, outbox_id: int) -> str:
        row = await self.store.outbox(outbox_id)
        assert row is not None
        return row.status

    async def sent(self, *outbox_ids: int) -> bool:
        return all([await self.status(i) == "sent" for i in outbox_ids])

    async def hung_send(self, user: str, text: str) -> int:
        """Start the worker with a QQ send of `text` that hangs until `self.qq.hold[text]` is set; its row."""
        self.qq.hold[text] = asyncio.Event()
        self.outbox.start()
        outbox_id = await self.outbox.enqueue(self.qq.to(user, text))
        await eventually(calling(self.qq, text))
        return outbox_id

    async def idle(self) -> bool:
        """The worker took every wake-up so far and waits for the next (its step is over)."""
        wake = self.outbox._wake  # type: ignore[attr-defined]
        return not wake.is_set() and bool(wake._waiters)  # type: ignore[attr-defined]


@pytest.fixture
async def rig(store: Store) -> AsyncIterator[Rig]:
    rig = Rig(store)
    yield rig
    await rig.outbox.stop()


def calling(platform: Platform, text: str) -> Any:
    async def check() -> bool:
        return text in platform.calls

    return check


async def test_a_hung_send_does_not_hold_up_other_conversations(rig: Rig) -> None:
    # Regression: the worker awaited every send of a claim before claiming again, so one hung QQ send (up
    # to SEND_TIMEOUT_S) held up the web chat's answers, and everyone else's, until it ended.
    qq, web_chat = rig.qq, rig.web
    hung = await rig.hung_send("q", "hung")

    other = await rig.outbox.enqueue(web_chat.to("w", "answer"))
    await eventually(lambda: rig.sent(other))
    assert web_chat.sent == ["answer"] and qq.sent == []
    assert await rig.status(hung) == "sending"  # still in flight, still leased

    qq.hold["hung"].set()
    await eventually(lambda: rig.sent(hung))
    assert qq.calls == ["hung"] and qq.sent == ["hung"]


async def test_later_rows_of_a_conversation_in_flight_wait_for_it_and_keep_their_order(rig: Rig) -> None:
    qq, web_chat = rig.qq, rig.web
    first = await rig.hung_send("a", "first")
    later = [await rig.outbox.enqueue(qq.to("a", text)) for text in ("second", "third")]
    other = await rig.outbox.enqueue(web_chat.to("b", "other"))
    await eventually(lambda: rig.sent(other))  # claims ran while "first" was in flight
    assert qq.calls == ["first"]
    assert [await rig.status(i) for i in later] == ["pending", "pending"]  # not claimed past "first"

    qq.hold["first"].set()  # its task ends and wakes the worker (the poll is an hour away)
    await eventually(lambda: rig.sent(first, *later))
    assert qq.calls == qq.sent == ["first", "second", "third"]


async def test_order_holds_when_a_conversations_rows_come_in_several_claims(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.jobs.outbox.CLAIM_BATCH", 2)
    monkeypatch.setattr("gateway.jobs.outbox.MAX_IN_FLIGHT", 3)
    ids = [
        await rig.outbox.enqueue(rig.qq.to(user, f"{user}{n}")) for n in range(4) for user in ("a", "b", "c")
    ]
    rig.outbox.start()
    await eventually(lambda: rig.sent(*ids))
    for user in ("a", "b", "c"):
        assert [t for t in rig.qq.calls if t.startswith(user)] == [f"{user}{n}" for n in range(4)]
    assert sorted(rig.qq.calls) == sorted(rig.qq.sent) == sorted(set(rig.qq.calls))  # each once


async def test_a_full_worker_claims_nothing_until_a_send_ends(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("gateway.jobs.outbox.MAX_IN_FLIGHT", 1)
    hung = await rig.hung_send("q", "hung")
    waiting = await rig.outbox.enqueue(rig.web.to("w", "waiting"))
    await eventually(rig.idle)  # the worker took the wake-up and found no room
    assert rig.web.calls == [] and await rig.status(waiting) == "pending"

    rig.qq.hold["hung"].set()
    await eventually(lambda: rig.sent(hung, waiting))
    assert rig.web.sent == ["waiting"]


async def test_rows_waiting_their_turn_behind_a_hung_send_take_no_places_of_other_conversations(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: the bound counted claimed rows, so three slow customers with a backlog of three replies
    # each (nine rows, three sends under way) filled it and everyone else waited for them.
    monkeypatch.setattr("gateway.jobs.outbox.MAX_IN_FLIGHT", 4)
    hung = []
    for user in ("a", "b", "c"):
        rig.qq.hold[f"{user}0"] = asyncio.Event()
        hung += [await rig.outbox.enqueue(rig.qq.to(user, f"{user}{n}")) for n in range(3)]
    rig.outbox.start()
    for user in ("a", "b", "c"):
        await eventually(calling(rig.qq, f"{user}0"))
    other = await rig.outbox.enqueue(rig.web.to("w", "answer"))
    await eventually(lambda: rig.sent(other))
    assert rig.qq.sent == []

    for gate in rig.qq.hold.values():
        gate.set()
    await eventually(lambda: rig.sent(*hung))


async def test_one_accounts_hung_sends_leave_places_for_the_other_accounts(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: the bound was shared by every account, so a QQ bot whose every send hung took all the
    # places and the web chat's answers waited behind it.
    monkeypatch.setattr("gateway.jobs.outbox.MAX_IN_FLIGHT", 3)
    monkeypatch.setattr("gateway.jobs.outbox.MAX_IN_FLIGHT_PER_ACCOUNT", 2)
    hung = []
    for user in ("a", "b", "c"):
        rig.qq.hold[user] = asyncio.Event()
        hung.append(await rig.outbox.enqueue(rig.qq.to(user, user)))
    rig.outbox.start()  # one claim leases two; the third is left untouched
    await eventually(lambda: holds(len(rig.qq.calls) == 2))
    await eventually(rig.idle)  # the worker's step is over
    assert rig.qq.calls == ["a", "b"]
    third = await rig.store.outbox(hung[2])
    assert third is not None and (third.status, third.attempts) == ("pending", 0)

    other = await rig.outbox.enqueue(rig.web.to("w", "answer"))
    await eventually(lambda: rig.sent(other))
    await eventually(rig.idle)
    assert rig.qq.calls == ["a", "b"]  # the QQ account is still full: its third customer waits

    for gate in rig.qq.hold.values():
        gate.set()
    await eventually(lambda: rig.sent(*hung))
    assert sorted(rig.qq.sent) == ["a", "b", "c"]


def _recording_releases(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The ids the worker hands back (store.release_outbox), from now on."""
    released: list[int] = []
    release = rig.store.release_outbox

    async def recorded(ids: Any, *args: Any, **kwargs: Any) -> Any:
        released.extend(ids)
        return await release(ids, *args, **kwargs)

    monkeypatch.setattr(rig.store, "release_outbox", recorded)
    return released


async def test_a_claim_leases_no_more_of_an_accounts_conversations_than_it_has_places(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: the claim leased every due row and the worker handed those over the account's bound
    # back, two writes per row; while an account stayed near its bound with a backlog, every finished
    # send cost a claim of a whole batch and its hand-back.
    monkeypatch.setattr("gateway.jobs.outbox.MAX_IN_FLIGHT_PER_ACCOUNT", 2)
    released = _recording_releases(rig, monkeypatch)
    hung = []
    for user in ("a", "b"):
        rig.qq.hold[user] = asyncio.Event()
        hung.append(await rig.outbox.enqueue(rig.qq.to(user, user)))
    backlog = [await rig.outbox.enqueue(rig.qq.to(user, user)) for user in ("c", "d", "e")]
    other = await rig.outbox.enqueue(rig.web.to("w", "answer"))
    rig.outbox.start()
    await eventually(lambda: rig.sent(other))
    await eventually(rig.idle)
    assert rig.qq.calls == ["a", "b"] and released == []
    for outbox_id in backlog:
        row = await rig.store.outbox(outbox_id)
        assert row is not None and (row.status, row.attempts, row.locked_until) == ("pending", 0, None)

    for gate in rig.qq.hold.values():
        gate.set()
    await eventually(lambda: rig.sent(*hung, *backlog))
    assert sorted(rig.qq.sent) == ["a", "b", "c", "d", "e"] and released == []


async def test_a_failed_row_over_its_accounts_bound_stays_failed(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression: a `failed` row on its slow schedule, claimed and handed back as over the bound, came
    # back `pending`: the admin's counts changed, and its next try was a fast one.
    monkeypatch.setattr("gateway.jobs.outbox.MAX_IN_FLIGHT_PER_ACCOUNT", 1)
    rig = Rig(store, max_attempts=1)
    try:
        first = await rig.outbox.enqueue(
            rig.qq.to("p", "first"), next_attempt_at=rig.clock.now + timedelta(hours=1)
        )
        failing = await rig.outbox.enqueue(rig.qq.to("f", "failing"))
        rig.qq.fail.add("failing")
        assert await rig.outbox.run_once() == 1  # only `failing` is due yet
        before = await rig.store.outbox(failing)
        assert before is not None and before.status == "failed"
        rig.qq.fail.clear()
        rig.clock.now += timedelta(hours=2)  # both due: `first` takes the account's one place
        rig.qq.hold["first"] = asyncio.Event()
        rig.outbox.start()
        await eventually(calling(rig.qq, "first"))
        await eventually(rig.idle)
        after = await rig.store.outbox(failing)
        assert after is not None
        assert (after.status, after.attempts, after.next_attempt_at) == (
            "failed",
            before.attempts,
            before.next_attempt_at,
        )
        rig.qq.hold["first"].set()
        await eventually(lambda: rig.sent(first, failing))  # it was due: held back only by the bound
    finally:
        await rig.outbox.stop()


async def test_stopping_cuts_off_a_send_in_flight_and_hands_its_row_straight_back(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    # Regression: the cut-off row kept the lease its send had renewed (SEND_TIMEOUT_S + LEASE_MARGIN_S,
    # 35 s), so after a restart the customer's reply waited that long (a CI run failed on it).
    outbox_id = await rig.hung_send("q", "in flight")

    await rig.outbox.stop()
    assert rig.qq.cancelled == ["in flight"] and rig.qq.sent == []
    assert not rig.outbox._sending  # type: ignore[attr-defined]
    assert await rig.status(outbox_id) == "sending"  # neither lost nor sent: its lease has ended

    del rig.qq.hold["in flight"]
    caplog.set_level(logging.WARNING, "gateway.jobs.outbox")
    assert await rig.outbox.run_once() == 1  # at once: the clock has not moved
    row = await rig.store.outbox(outbox_id)
    assert row is not None and row.status == "sent" and row.attempts == 2
    assert rig.qq.sent == ["in flight"]
    # Its platform call was cut off: it may have been delivered, so the resend is flagged as such.
    assert [r.getMessage() for r in caplog.records] == [
        f"outbox: send {outbox_id} resumed after an expired lease; it may arrive twice"
    ]


async def test_a_send_cut_off_while_its_sent_mark_is_recorded_is_flagged_as_a_possible_double(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    recording = asyncio.Event()
    finish = rig.store.finish_outbox

    async def stalled(*args: Any, **kwargs: Any) -> bool:
        if kwargs.get("status") == "sent":
            recording.set()
            await asyncio.Event().wait()  # the database stalls until the shutdown cuts it off
        return await finish(*args, **kwargs)

    monkeypatch.setattr(rig.store, "finish_outbox", stalled)
    rig.outbox.start()
    outbox_id = await rig.outbox.enqueue(rig.qq.to("q", "delivered"))
    await recording.wait()
    await rig.outbox.stop()
    monkeypatch.setattr(rig.store, "finish_outbox", finish)

    caplog.set_level(logging.WARNING, "gateway.jobs.outbox")
    assert await rig.outbox.run_once() == 1
    assert rig.qq.sent == ["delivered", "delivered"]  # the platform had it: a double, and said so
    assert f"outbox: send {outbox_id} resumed after an expired lease; it may arrive twice" in caplog.messages


async def test_stopping_hands_back_the_rows_waiting_behind_a_cut_off_send_untried(rig: Rig) -> None:
    rig.qq.hold["a0"] = asyncio.Event()
    ids = [await rig.outbox.enqueue(rig.qq.to("a", f"a{n}")) for n in range(3)]
    rig.outbox.start()
    await eventually(calling(rig.qq, "a0"))
    assert [await rig.status(i) for i in ids] == ["sending"] * 3  # one claim, one task

    await rig.outbox.stop()
    rows = [await rig.store.outbox(i) for i in ids]
    assert [(r.status, r.attempts) for r in rows if r is not None] == [
        ("sending", 1),
        ("pending", 0),  # never tried: not counted as an attempt, due now
        ("pending", 0),
    ]
    del rig.qq.hold["a0"]
    assert await rig.outbox.run_once() == 3
    assert rig.qq.sent == ["a0", "a1", "a2"]


async def test_a_send_that_ends_within_the_grace_is_recorded_and_the_rest_waits_for_the_next_process(
    store: Store,
) -> None:
    rig = Rig(store, stop_grace_s=30.0)
    rig.qq.hold["a0"] = asyncio.Event()
    ids = [await rig.outbox.enqueue(rig.qq.to("a", f"a{n}")) for n in range(2)]
    rig.outbox.start()
    await eventually(calling(rig.qq, "a0"))

    stopping = asyncio.create_task(rig.outbox.stop())
    await eventually(lambda: holds(rig.outbox._stopping))  # type: ignore[attr-defined]
    rig.qq.hold["a0"].set()  # the platform answers during the grace
    await stopping
    assert rig.qq.cancelled == [] and rig.qq.calls == rig.qq.sent == ["a0"]
    first, second = [await rig.store.outbox(i) for i in ids]
    assert first is not None and first.status == "sent"
    # The task did not start the conversation's next send while shutting down; that row is due at once.
    assert second is not None and (second.status, second.attempts) == ("pending", 0)
    assert await rig.outbox.run_once() == 1 and rig.qq.sent == ["a0", "a1"]


async def test_a_claim_under_way_when_the_worker_stops_is_finished_and_its_rows_handed_back(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression (found by review): stop() cancelled the worker's step mid-claim; a claim committed just
    # before the cancel (SQLite's group commit commits a cancelled caller's unit) left its rows leased for
    # lease_s (60 s) with no task to send them.
    rig = Rig(store, stop_grace_s=30.0)
    claimed = asyncio.Event()
    claim = store.claim_outbox

    async def slow_claim(*args: Any, **kwargs: Any) -> Any:
        rows = await claim(*args, **kwargs)
        if rows:
            claimed.set()
            await asyncio.sleep(0.3)  # committed, not yet returned: a stop lands here
        return rows

    monkeypatch.setattr(store, "claim_outbox", slow_claim)
    outbox_id = await rig.outbox.enqueue(rig.qq.to("q", "claimed"))
    rig.outbox.start()
    await claimed.wait()
    await rig.outbox.stop()
    row = await rig.store.outbox(outbox_id)
    assert row is not None and (row.status, row.attempts) == ("pending", 0)  # handed back untried
    assert rig.qq.calls == []
    monkeypatch.setattr(store, "claim_outbox", claim)
    assert await rig.outbox.run_once() == 1 and rig.qq.sent == ["claimed"]  # at once: the clock has not moved


async def test_a_send_whose_lease_renewal_outlasted_the_start_of_stop_is_not_begun(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression (found by review): a task checked for the shutdown before renewing its lease, not after,
    # so a renewal that waited while stop() began was followed by a platform call the grace then cut off.
    rig = Rig(store, lease_s=10.0, stop_grace_s=30.0)  # shorter than a send: renewed before it
    renewing, go_on = asyncio.Event(), asyncio.Event()
    renew = store.renew_outbox

    async def stalled_renew(*args: Any, **kwargs: Any) -> set[int]:
        renewing.set()
        await go_on.wait()
        return await renew(*args, **kwargs)

    monkeypatch.setattr(store, "renew_outbox", stalled_renew)
    outbox_id = await rig.outbox.enqueue(rig.qq.to("q", "a0"))
    rig.outbox.start()
    await renewing.wait()
    stopping = asyncio.create_task(rig.outbox.stop())
    await eventually(lambda: holds(rig.outbox._stopping))  # type: ignore[attr-defined]
    go_on.set()
    await stopping
    assert rig.qq.calls == []
    row = await rig.store.outbox(outbox_id)
    assert row is not None and (row.status, row.attempts) == ("pending", 0)


async def test_a_send_that_will_not_end_does_not_hold_up_the_shutdown(
    rig: Rig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Found by fault injection: a task waiting on a stalled database when cancelled (SQLite's group commit
    # finishes a cancelled caller's unit all the same) held stop() up until the stall ended (19 s).
    monkeypatch.setattr("gateway.jobs.outbox.HAND_BACK_TIMEOUT_S", 0.3)
    stall_over = asyncio.Event()
    send = rig.qq.send

    async def stubborn(outgoing: Outgoing) -> None:
        if outgoing.text != "stuck":
            return await send(outgoing)
        while not stall_over.is_set():
            with contextlib.suppress(asyncio.CancelledError):  # as a unit riding a stalled commit
                await asyncio.shield(stall_over.wait())
        raise asyncio.CancelledError

    monkeypatch.setattr(rig.qq, "send", stubborn)
    rig.outbox.start()
    outbox_id = await rig.outbox.enqueue(rig.qq.to("q", "stuck"))
    await eventually(lambda: holds(bool(rig.outbox._sending)))  # type: ignore[attr-defined]
    caplog.set_level(logging.WARNING, "gateway.jobs.outbox")
    await asyncio.wait_for(rig.outbox.stop(), 30)  # returns with the task still waiting
    assert not stall_over.is_set() and rig.outbox._sending  # type: ignore[attr-defined]
    assert any("took over" in m for m in caplog.messages)
    assert await rig.status(outbox_id) == "sending"  # left to its lease, as after a crash

    stall_over.set()
    await eventually(lambda: holds(not rig.outbox._sending))  # type: ignore[attr-defined]


async def test_a_failing_send_task_is_logged_once(
    store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(store, lease_s=1.0)  # shorter than a send's timeout: renewed before the send

    async def broken(*_args: Any, **_kwargs: Any) -> set[int]:
        raise RuntimeError("renewing broke")

    monkeypatch.setattr(store, "renew_outbox", broken)
    caplog.set_level(logging.ERROR)
    rig.outbox.start()
    try:
        await rig.outbox.enqueue(rig.qq.to("q", "never"))

        async def logged() -> bool:
            return bool(caplog.records)

        await eventually(logged)
        await eventually(rig.idle)
        gc.collect()  # an exception never retrieved would be said as the task is collected
    finally:
        await rig.outbox.stop()
    (record,) = caplog.records
    assert record.name == "gateway.jobs.outbox" and record.exc_info is not None
    assert str(record.exc_info[1]) == "renewing broke" and rig.qq.calls == []


@pytest.mark.parametrize("give_up_after", [timedelta(hours=24), None])  # the worker's claim, and without
async def test_rows_another_process_is_claiming_hold_back_the_later_rows_of_their_conversation(
    store: Store, db_url: str, give_up_after: timedelta | None
) -> None:
    # Regression (PostgreSQL, two processes): FOR UPDATE SKIP LOCKED passed over the rows another process's
    # claim had selected and not yet leased; they still read `pending` and due, which the claim took as
    # rows it would send itself, so it leased the conversation's third reply beside the other's first two.
    if store.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: no claim runs beside another")
    import asyncpg

    outbox = Outbox(store, OutboxSettings(), {})
    platform = Platform("qqbot")
    first, second, third = [await outbox.enqueue(platform.to("x", text)) for text in ("一", "二", "三")]
    lease = timedelta(seconds=60)
    other = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        async with other.transaction():
            # The other process's claim: its SELECT … FOR UPDATE has the first two rows, its lease is to come.
            await other.fetch("SELECT id FROM outbox WHERE id = ANY($1::int[]) FOR UPDATE", [first, second])
            assert await store.claim_outbox(utcnow(), lease=lease, give_up_after=give_up_after) == []
            await other.execute(
                "UPDATE outbox SET status = 'sending', locked_until = now() + interval '60 seconds' "
                "WHERE id = ANY($1::int[])",
                [first, second],
            )
        now_sending = await store.claim_outbox(utcnow(), lease=lease, give_up_after=give_up_after)
        assert now_sending == []
    finally:
        await other.close()
    row = await store.outbox(third)
    assert row is not None and row.status == "pending" and row.attempts == 0


async def test_a_finished_send_wakes_the_worker_for_rows_another_process_enqueued_behind_it(
    rig: Rig, db_url: str
) -> None:
    # Regression: a finished task woke its worker only when that worker had claimed meanwhile. A reply
    # enqueued by another process behind this process's send (that process's worker found it held back)
    # then waited for a poll.
    other = Store.from_url(db_url)
    try:
        # Both rows enqueued by the other process, whose worker is asleep: no wake-up reaches this worker
        # but its first claim and the end of its send.
        elsewhere = Outbox(other, OutboxSettings(poll_interval_s=3600.0), {}, clock=rig.clock)
        rig.qq.hold["first"] = asyncio.Event()
        await elsewhere.enqueue(rig.qq.to("x", "first"))
        rig.outbox.start()
        await eventually(calling(rig.qq, "first"))
        second = await elsewhere.enqueue(rig.qq.to("x", "second"))
        rig.qq.hold["first"].set()
        await eventually(lambda: rig.sent(second))
        assert rig.qq.sent == ["first", "second"]
    finally:
        await other.dispose()


async def test_a_claim_goes_on_past_rows_another_process_holds_back(
    rig: Rig, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Regression (PostgreSQL): a claim that held a row back (its conversation's first row is another
    # process's now) returned fewer rows than asked, which the worker read as "nothing more is due": the
    # rows after them waited for the poll.
    if rig.store.dialect != "postgresql":
        pytest.skip("SQLite has one writer at a time: no claim runs beside another")
    import asyncpg

    monkeypatch.setattr("gateway.jobs.outbox.CLAIM_BATCH", 2)
    # Enqueued without waking this worker, and "a" hangs: only the claims of its first step can send b, c.
    enqueue = Outbox(rig.store, OutboxSettings(), {}, clock=rig.clock).enqueue
    x1, x2 = [await enqueue(rig.qq.to("x", text)) for text in ("x1", "x2")]
    a, b, c = [await enqueue(rig.web.to(user, user)) for user in ("a", "b", "c")]
    rig.web.hold["a"] = asyncio.Event()
    claiming = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        async with claiming.transaction():  # another process's claim has x1 and has not leased it yet
            await claiming.fetch("SELECT id FROM outbox WHERE id = $1 FOR UPDATE", x1)
            rig.outbox.start()
            await eventually(lambda: rig.sent(b, c))
            assert await rig.status(x2) == "pending" and rig.qq.calls == []
    finally:
        await claiming.close()
    rig.web.hold["a"].set()
    await eventually(lambda: rig.sent(a))


async def test_a_send_that_outlasted_its_lease_does_not_undo_the_claim_that_took_it_over(
    rig: Rig, db_url: str
) -> None:
    # Regression: a send stalled past its lease, another process claimed the row and delivered it; the
    # first send then failed and recorded `pending` over that `sent`, so the text went out once more.
    other = Store.from_url(db_url)
    try:
        rig.qq.hold["stalled"] = asyncio.Event()
        rig.qq.fail.add("stalled")
        outbox_id = await rig.outbox.enqueue(rig.qq.to("x", "stalled"))
        rig.outbox.start()
        await eventually(calling(rig.qq, "stalled"))
        rig.clock.now += timedelta(seconds=120)  # the 60-s lease ran out during the send
        takeover = Platform("qqbot")
        elsewhere = Outbox(other, OutboxSettings(), {("qqbot", "default"): takeover}, clock=rig.clock)
        assert await elsewhere.run_once() == 1
        assert takeover.sent == ["stalled"] and await rig.status(outbox_id) == "sent"

        rig.qq.hold["stalled"].set()  # the stalled send fails at last

        async def first_send_over() -> bool:
            return not rig.outbox._sending  # type: ignore[attr-defined]

        await eventually(first_send_over)
        assert await rig.status(outbox_id) == "sent"
        assert await elsewhere.run_once() == 0  # nothing to send again
    finally:
        await other.dispose()
