"""Asynchronous delivery with retries: every later send is a row first, then an adapter call.

Rows survive restarts (the worker resumes whatever is due), failures are visible in the admin API,
and a lease (`locked_until`, claimed with FOR UPDATE SKIP LOCKED on PostgreSQL) lets several gateway
processes share one outbox without sending a row twice.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import aiohttp

from gateway.channels.base import ChannelAdapter, Outgoing, SendError
from gateway.channels.platform_http import maybe_delivered
from gateway.message import Attachment, utcnow
from gateway.settings import OutboxSettings
from gateway.storage import Conflict, OutboxRow, Store, Transaction
from gateway.wakeups import WakeLoop

if TYPE_CHECKING:
    from gateway.metrics import Metrics

logger = logging.getLogger(__name__)

# An adapter call that hangs must not hold its lease forever; the platform APIs answer in well under this.
SEND_TIMEOUT_S = 30.0
# A row's lease, renewed before its send, outlasts the send's timeout by this much (the `sent` mark's trip).
LEASE_MARGIN_S = 5.0
CLAIM_BATCH = 20
# Conversations the worker sends to at once (a task each, its claimed rows one after another): while one
# platform hangs (up to SEND_TIMEOUT_S), other conversations' rows are still claimed and sent, within a
# bound on the tasks and connections they take. Conversations, not rows: a slow customer's backlog of
# rows waiting their turn must not take the places of other customers.
MAX_IN_FLIGHT = 4 * CLAIM_BATCH
# Of those, one channel account's: a platform that hangs for every conversation (an outage of one QQ bot)
# still leaves places for the other accounts' customers.
MAX_IN_FLIGHT_PER_ACCOUNT = 3 * CLAIM_BATCH
# stop() cuts off and hands back what its grace did not see end within this (the database may be stalled or
# gone too: then the rows wait for their lease, as after a crash, and the shutdown is not held up).
HAND_BACK_TIMEOUT_S = 5.0
# Pauses between the tries of recording a delivered send as sent (a failure there means a double).
MARK_SENT_PAUSES_S = (0.05, 0.2, 1.0)

AdapterKey = tuple[str, str]  # (channel, account)
DeliveryListener = Callable[[OutboxRow, str, str | None], Awaitable[None]]


@dataclass
class _Progress:
    """Where a conversation's task stands: what stop() hands back if it cuts the task short."""

    rows: list[OutboxRow]
    lease: datetime  # the lease its rows are under now (renewed before each send)
    index: int = 0  # the row being sent, or next
    called: bool = False  # rows[index]'s platform call has begun: it may have been delivered
    done: bool = False


class Outbox:
    """Queues outgoing texts in the database and delivers them through the registered adapters."""

    def __init__(
        self,
        store: Store,
        settings: OutboxSettings,
        adapters: Mapping[AdapterKey, ChannelAdapter],
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], datetime] = utcnow,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.store = store
        self.settings = settings
        self.adapters = adapters
        self.metrics = metrics
        self.clock = clock
        self._jitter = jitter
        self._wake = asyncio.Event()
        self._worker: WakeLoop | None = None
        # The worker's conversation tasks in flight (MAX_IN_FLIGHT bounds them), and where each stands.
        self._sending: dict[asyncio.Task[None], _Progress] = {}
        self._stopping = False  # stop() is under way: a task sends no further row
        # Told of every finished send (row, status, error): the handoff service turns them into
        # `message.delivery` events for the agents' consoles.
        self.listeners: list[DeliveryListener] = []

    async def enqueue(
        self,
        outgoing: Outgoing,
        *,
        message_id: int | None = None,
        status: str = "pending",
        next_attempt_at: datetime | None = None,
    ) -> int:
        """Store one send (in its own transaction) and wake the worker; returns the outbox id."""
        extra: dict[str, Any] = {"status": status, "next_attempt_at": next_attempt_at}
        try:
            async with self.store.transaction() as tx:
                outbox_id = await self.enqueue_in(tx, outgoing, message_id=message_id, **extra)
        except Conflict:
            if message_id is None:
                raise
            # A concurrent push of the same stored reply won the race: return its row.
            async with self.store.transaction() as tx:
                outbox_id = await self.enqueue_in(tx, outgoing, message_id=message_id, **extra)
        self.wake()
        return outbox_id

    async def enqueue_in(
        self,
        tx: Transaction,
        outgoing: Outgoing,
        *,
        message_id: int | None = None,
        delay: timedelta | None = None,
        status: str = "pending",
        next_attempt_at: datetime | None = None,
    ) -> int:
        """Store one send inside the caller's transaction (due `delay` from now, or at `next_attempt_at`);
        call `wake()` after it commits."""
        now = self.clock()
        return await tx.enqueue(
            status=status,
            next_attempt_at=next_attempt_at,
            channel=outgoing.channel,
            account=outgoing.account,
            conversation_key=outgoing.conversation_key,
            text=outgoing.text,
            sender=outgoing.sender,
            target=outgoing.target,
            now=now,
            message_id=message_id,
            due=next_attempt_at or (now + delay if delay else None),
            attachment=outgoing.attachment.as_json() if outgoing.attachment else None,
        )

    def wake(self) -> None:
        """Tell the worker there is something new (it also polls every poll_interval_s)."""
        self._wake.set()

    # --- the worker --------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the background worker (idempotent)."""
        if self._worker is None or self._worker.task is None or self._worker.task.done():
            self._stopping = False
            self._worker = WakeLoop(
                self._wake, self.settings.poll_interval_s, self._send_due, step_first=True
            )
            self._worker.start("kefu-outbox")

    async def stop(self) -> None:
        """Stop the worker; sends in flight get outbox.stop_grace_s to finish, then are cancelled.

        Each task finishes the send under way and hands its conversation's later rows back. What the
        grace cuts short is handed back at once, not left leased for SEND_TIMEOUT_S + LEASE_MARGIN_S: the
        process that takes over (a restart, another replica) sends it straight away. A row whose platform
        call was cut off may have been delivered: it keeps `sending` with its lease ended, so the next claim
        counts it as resumed (kefu_outbox_possible_doubles_total); rows not yet tried go back to pending.
        """
        if self._worker is None and self._stopping:
            return  # stopped already, with tasks that would not end (see below): not waited for again
        worker, self._worker = self._worker, None
        self._stopping = True
        if worker is not None:
            # A claim under way is let finish (cut off, it would leave its rows leased for lease_s with no
            # task to send them: SQLite's group commit commits a cancelled caller's unit all the same); it
            # starts tasks, which see _stopping. No new tasks after this.
            await worker.stop(finish_s=self.settings.stop_grace_s)
        pending = set(self._sending)
        if pending and self.settings.stop_grace_s > 0:
            _done, pending = await asyncio.wait(pending, timeout=self.settings.stop_grace_s)
        cut = [self._sending[task] for task in pending]
        try:
            # Bounded: a task waiting on a stalled database (SQLite's group commit finishes a cancelled
            # caller's unit all the same) must not hold the shutdown up; its rows wait for their lease.
            async with asyncio.timeout(HAND_BACK_TIMEOUT_S):
                while pending:
                    for task in pending:
                        task.cancel()
                    # Cancelled again each second: on Python 3.11 an adapter's wait_for can swallow a cancel.
                    _done, pending = await asyncio.wait(pending, timeout=1.0)
                for progress in cut:
                    if not progress.done:
                        await self._hand_back(progress)
        except TimeoutError:
            logger.warning(
                "outbox: cutting off and handing back sends took over %.0fs (%d task(s) still ending); "
                "the rest wait for their lease",
                HAND_BACK_TIMEOUT_S,
                len(pending),
            )
        if not pending:
            self._stopping = False  # stopped: run_once() sends again (start() clears it in any case)

    async def _hand_back(self, progress: _Progress) -> None:
        """Return the rows of a task stop() cut short to the next claim, at once (see stop)."""
        now = self.clock()
        rows = progress.rows[progress.index :]
        try:
            if rows and (progress.called or rows[0].resumed):
                # Its lease ends now: due, and flagged resumed, for the next claim (unless its outcome was
                # recorded: then it is no longer `sending`, and neither statement touches it). So is a row
                # an earlier attempt may have delivered (resumed): released, it would lose that mark.
                await self.store.renew_outbox([rows[0].id], progress.lease, now, now)
                rows = rows[1:]
            await self.store.release_outbox([r.id for r in rows], now, lease=progress.lease)
        except Exception:
            # The database is gone too: the rows stay leased and are retried when the lease ends.
            logger.exception("outbox: handing back %d unsent row(s) failed", len(rows))

    async def _send_due(self) -> bool:
        """The worker's step: claim what is due and start each conversation's sends as a task of its own,
        without waiting for them, until nothing more is due or MAX_IN_FLIGHT conversations are in flight;
        then wait for a wake-up (an enqueue, a finished task) or the poll. A hung platform holds up only its
        own conversations: their later rows stay unclaimable (claim_outbox) while the others keep going."""
        worker = self._worker
        while worker is not None and not worker.stopping:
            room = MAX_IN_FLIGHT - len(self._sending)  # a claim of `room` rows starts at most `room` tasks
            if room <= 0:
                break  # full: a finishing task wakes the worker
            limit = min(room, CLAIM_BATCH)
            held_back: list[int] = []
            try:
                # The claim leases no more of an account's conversations than it has places left.
                groups, leased_until = await self._claim(limit, held_back, self._in_flight())
                for group in groups:
                    self._start_sending(group, leased_until)
            except Exception:
                # The database may be briefly down; rows are safe there, so wait and try again.
                logger.exception("outbox: claiming rows failed")
                break
            leased = sum(len(group) for group in groups)
            # A short claim found all that is due. Rows held back (another process's claim holds them, or
            # their account has no places left: claim_outbox) count as found: later due rows may follow
            # them (the next claim skips a full account); but with nothing leased, the next claim would
            # find the same ones, so the worker waits (that process's tasks are sending their conversations).
            if not leased or leased + len(held_back) < limit:
                break
        return True

    def _in_flight(self) -> Counter[AdapterKey]:
        return Counter((p.rows[0].channel, p.rows[0].account) for p in self._sending.values())

    def _start_sending(self, rows: list[OutboxRow], leased_until: datetime) -> None:
        progress = _Progress(rows, leased_until)
        task = asyncio.create_task(self._send_in_order(progress), name=f"kefu-outbox-{rows[0].id}")
        self._sending[task] = progress
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sending.pop(task, None)
        if task.cancelled():
            return  # stopping
        if (error := task.exception()) is not None:
            # Retrieved here, logged once; the rows keep their lease and are retried when it ends.
            logger.error("outbox: %s failed; its rows are retried later", task.get_name(), exc_info=error)
        # Rows of its conversation may have waited behind it, enqueued here or by another process (whose
        # own worker found them held back): claim again now rather than at the next poll.
        self.wake()

    async def run_once(self) -> int:
        """Claim the rows that are due, send them and wait for every send; returns how many were claimed."""
        groups, leased_until = await self._claim(CLAIM_BATCH)
        await asyncio.gather(*(self._send_in_order(_Progress(group, leased_until)) for group in groups))
        return sum(len(group) for group in groups)

    async def _claim(
        self, limit: int, held_back: list[int] | None = None, in_flight: Counter[AdapterKey] | None = None
    ) -> tuple[list[list[OutboxRow]], datetime]:
        """Lease up to `limit` due rows: each conversation's rows in order (sent one after another, the
        conversations in parallel), and the lease's end (`held_back`: see Store.claim_outbox; `in_flight`:
        the conversations being sent per account, of at most MAX_IN_FLIGHT_PER_ACCOUNT)."""
        now = self.clock()
        lease = timedelta(seconds=self.settings.lease_s)
        rows = await self.store.claim_outbox(
            now,
            lease=lease,
            limit=limit,
            give_up_after=self.settings.give_up_after,
            held_back=held_back,
            in_flight=in_flight,
            per_account=None if in_flight is None else MAX_IN_FLIGHT_PER_ACCOUNT,
        )
        by_key: dict[str, list[OutboxRow]] = {}
        for row in rows:
            by_key.setdefault(row.conversation_key, []).append(row)
        return list(by_key.values()), now + lease

    async def _send_in_order(self, progress: _Progress) -> None:
        needed = timedelta(seconds=SEND_TIMEOUT_S + LEASE_MARGIN_S)
        rows = progress.rows
        for index, row in enumerate(rows):
            progress.index, progress.called = index, False
            # Every row of the batch has the same lease, and this conversation's rows go one after another.
            # Before a send the lease of the rows left is extended past the longest send (SEND_TIMEOUT_S):
            # no other process claims a row still being sent or waiting its turn, and a slow platform is not
            # cut short and sent the text again on every retry. A row whose lease ran out meanwhile (it was
            # not renewed) is left to whoever claims it next.
            now = self.clock()
            if progress.lease - now < needed:
                left = [r.id for r in rows[index:]]
                renewed = await self.store.renew_outbox(left, progress.lease, now, now + needed)
                if row.id not in renewed:
                    logger.warning(
                        "outbox: send %d lost its lease before it was sent; left for the next claim", row.id
                    )
                    break
                progress.lease = now + needed
            if self._stopping:
                # Shutting down (checked after the renew, which may have waited): the rest of the
                # conversation goes back for the next claim (a restart, another process).
                await self._hand_back(progress)
                break
            delivered = await self._send(row, progress)
            if not delivered:
                # Keep the order: the rest of this conversation waits for the one that failed.
                later = rows[index + 1 :]
                if later:
                    await self.store.release_outbox(
                        [r.id for r in later], self.clock() + timedelta(seconds=0.5), lease=progress.lease
                    )
                break
        progress.done = True

    async def _send(self, row: OutboxRow, progress: _Progress) -> bool:
        """Send one claimed row (under `progress.lease`) and record the outcome. True when the row is done
        with (sent, or undeliverable); False when it waits for a retry, and the rest of its conversation too."""
        lease = progress.lease
        adapter = self.adapters.get((row.channel, row.account))
        now = self.clock
        if adapter is None:
            await self._finish(
                row, "undeliverable", f"no adapter for {row.channel}/{row.account}", now(), lease=lease
            )
            return True
        outgoing = Outgoing(
            channel=row.channel,
            account=row.account,
            conversation_key=row.conversation_key,
            text=row.text,
            sender=row.sender,
            target=row.target,
            outbox_id=row.id,
            attachment=Attachment.from_json(row.attachment),
        )
        if row.resumed:
            # The lease of an earlier attempt expired (a crash, a hung send): it may have been delivered.
            logger.warning("outbox: send %d resumed after an expired lease; it may arrive twice", row.id)
            self._double(row.channel, "resumed")
        try:
            # Within the row's lease (renewed in _send_in_order): a send still under way when its lease ran
            # out would be claimed and sent again by another process (outbox.lease_s 5 s and a platform
            # answering in 7 s doubled every reply).
            progress.called = True
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await adapter.send(outgoing)
        except SendError as exc:
            if not exc.retryable:
                await self._finish(row, "undeliverable", exc.reason, now(), lease=lease)
                return True
            if exc.maybe_delivered:
                self._maybe_sent(row, exc.reason)
            return await self._retry(row, exc.reason, lease)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            if maybe_delivered(exc):
                self._maybe_sent(row, type(exc).__name__)
            return await self._retry(row, f"{type(exc).__name__}: {exc}".rstrip(": "), lease)
        except Exception as exc:
            # An adapter bug: keep the row (it may be a transient state) but make the error loud.
            logger.exception("outbox: adapter %s/%s raised", row.channel, row.account)
            return await self._retry(row, f"{type(exc).__name__}: {exc}", lease)
        await self._mark_sent(row)
        return True

    async def _mark_sent(self, row: OutboxRow) -> None:
        """Record a delivered send in its own short transaction, retried: every failure here is a double.

        The platform already has the text; if the row stays `sending`, its lease expires and it goes out
        again. A few quick retries close that window for a briefly busy database.
        """
        for attempt, pause in enumerate((*MARK_SENT_PAUSES_S, None)):
            try:
                await self._finish(row, "sent", None, self.clock())
                return
            except Exception as exc:
                if pause is None:
                    logger.error(
                        "outbox: send %d delivered but not recorded (%s); it will be sent again", row.id, exc
                    )
                    self._double(row.channel, "unrecorded")
                    return
                logger.info("outbox: recording send %d as sent failed (try %d): %s", row.id, attempt + 1, exc)
                await asyncio.sleep(pause)

    def _maybe_sent(self, row: OutboxRow, error: str) -> None:
        """A send that failed after its request went out: the platform may have delivered it, and the
        retry then delivers it again."""
        logger.warning(
            "outbox: send %d failed after it went out (%s); its retry may arrive twice", row.id, error
        )
        self._double(row.channel, "timeout")

    def _double(self, channel: str, cause: str) -> None:
        if self.metrics is not None:
            self.metrics.outbox_doubles.labels(channel, cause).inc()

    async def _retry(self, row: OutboxRow, error: str, lease: datetime) -> bool:
        now = self.clock()
        if row.attempts >= self.settings.max_attempts:
            # Not given up: the slow schedule tries again until outbox.give_up_after (see claim_outbox).
            next_at = now + timedelta(seconds=self.settings.failed_retry_s)
            expired = next_at - row.created_at >= self.settings.give_up_after  # no slow retry left
            await self._finish(
                row,
                "failed",
                f"{error} (gave up after {self.settings.give_up_after})" if expired else error,
                now,
                next_attempt_at=next_at,
                lease=lease,
            )
            return False
        delay = self.backoff(row.attempts)
        logger.info(
            "outbox: send %d to %s/%s failed (attempt %d/%d), retry in %.1fs: %s",
            row.id,
            row.channel,
            row.account,
            row.attempts,
            self.settings.max_attempts,
            delay,
            error,
        )
        if await self.store.finish_outbox(
            row.id,
            status="pending",
            now=now,
            error=error,
            next_attempt_at=now + timedelta(seconds=delay),
            lease=lease,
        ):
            self._count(row.channel, "retry")
        else:
            self._taken_over(row, "pending")
        return False

    def backoff(self, attempts: int) -> float:
        """Seconds before the next try: exponential in the attempts made, capped, with equal jitter."""
        ceiling = min(self.settings.max_delay_s, self.settings.base_delay_s * 2 ** max(attempts - 1, 0))
        # Equal jitter: never less than half the step (no hot loop), spread so retries don't stampede.
        return ceiling / 2 + self._jitter() * ceiling / 2

    async def _finish(
        self,
        row: OutboxRow,
        status: str,
        error: str | None,
        now: datetime,
        *,
        next_attempt_at: datetime | None = None,
        lease: datetime | None = None,
    ) -> None:
        """Record an outcome and tell the listeners; with `lease`, only while the row is still this claim's
        (a `sent` mark is recorded whoever has the row: the platform has the text)."""
        if status != "sent":
            logger.warning(
                "outbox: send %d to %s/%s is %s after %d attempt(s): %s",
                row.id,
                row.channel,
                row.account,
                status,
                row.attempts,
                error,
            )
        changed = await self.store.finish_outbox(
            row.id, status=status, now=now, error=error, next_attempt_at=next_attempt_at, lease=lease
        )
        if lease is not None and not changed:
            self._taken_over(row, status)
            return
        self._count(row.channel, status)
        for listener in self.listeners:
            try:
                await listener(row, status, error)
            except Exception:  # the row is recorded; a console missing one update must not stop sends
                logger.exception("outbox: delivery listener failed for send %d", row.id)

    def _taken_over(self, row: OutboxRow, status: str) -> None:
        # The lease ran out during the send (a stalled platform or database) and another claim has the row
        # now: its outcome is the row's, this one would overwrite it (a `pending` after its `sent` would
        # send the text once more).
        logger.warning("outbox: send %d is another claim's now; its %s is not recorded", row.id, status)

    def _count(self, channel: str, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.sends.labels(channel, outcome).inc()
