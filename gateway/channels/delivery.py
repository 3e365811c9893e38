"""The one delivery policy of every channel adapter: durable first, then a passive reply or a deferred push.

For each inbound message an adapter calls `Delivery.deliver` and renders what it gets back:
1. The pipeline stores the message and its replies in one unit of work; for a channel that can answer
   later, each reply's outbox row is written in the same unit (`held` where a passive reply may still
   carry it, `pending` where only the worker can send it). A committed reply never lacks its row.
2. The adapter's passive-reply deadline: ready in time → the held rows are cancelled (all or nothing,
   in one short transaction) and the adapter answers passively; too late, or the adapter cannot carry
   the replies → the held rows are released to the worker and the adapter acknowledges. The cancel and
   the release are bounded too (a stalled database), by what is left of the platform's wait (the
   deadline, or up to `retry_after_s` less PASSIVE_MARGIN_S once stored): a cancel whose statement would
   run later is left undone, and one already on its way that outlasts it is acknowledged; once it
   commits, its rows go back to the worker (`resume_cancelled`), since no passive answer carried them,
   and until then no other request answers them passively. A crash (or shutdown) while such a cancel
   waits on the database can still lose its reply: nothing durable says it was never sent.
3. Durable before acknowledged: when storing is not done by the deadline, or fails because the database
   is unavailable (down, restarting: `gateway.storage.is_unavailable`), the message is written to the
   inbound spool (gateway/channels/spool.py: one fsynced file) and acknowledged; the store goes on in the
   background, its held rows are released when it commits, and if it fails (or the process dies) the
   spool replays the message until the database takes it. Without a spool (in-memory database, disk
   refusing), `deliver` keeps waiting for the store (the platform's retries of the same message id join
   the same handling); when storing fails it raises, and the adapter answers an error so the platform
   retries. Nothing is acknowledged that is neither in the database nor in the spool.

A held row nobody decides about (a crash between the commit and the decision) is sent by the worker when
its hold ends (`gateway.pipeline.HOLD_S`), so the worst case after a crash is one double, never a loss
(but for the stalled cancel of step 2). Rows cancelled for a passive answer that was never written (a
crash between the two) are found by the platform's retry: answered passively again when in time; when
that request says `success` instead, the platform retries no more, so it hands them to the worker unless
a request of this process answers them passively (one process: `_deliver_here`; several: the take-over).

Several processes (`redis.url`): a channel whose platform retries unanswered webhooks (`retry_after_s`,
WeChat's 5 s) claims each message id in Redis (gateway/coord/inflight.py). The first request is the
owner and records its outcome; a later request of the same id on any process waits for that outcome
and repeats a passive answer only when it came a whole retry interval after the first request (the
platform did not get the answer); otherwise it acknowledges, so exactly one path delivers. Redis down:
`CoordUnavailable` (the adapter answers 503 with Retry-After; the platform retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

from gateway.channels.spool import spool_key
from gateway.message import Message, Reply, utcnow
from gateway.storage import is_unavailable

if TYPE_CHECKING:
    from gateway.coord.inflight import Claim
    from gateway.pipeline import PipelineResult
    from gateway.runtime import Runtime

logger = logging.getLogger(__name__)

Mode = Literal["held", "pending"] | None
# A passive answer must leave this long before the platform's own wait (`retry_after_s`) ends: its way back.
PASSIVE_MARGIN_S = 0.5


@dataclass(slots=True)
class _Here:
    """This process's requests of one message id (one process, no Redis)."""

    requests: int = 0  # handling it: until answered, or until their resume of its rows was decided
    passive: int = 0  # of them, those that took the turn to answer passively (cancelling the rows)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the adapter does with its webhook: `passive` (render `result.replies`) or `ack` (say received)."""

    kind: Literal["passive", "ack"]
    result: PipelineResult | None  # None: spooled, the store is still running (always an `ack`)
    late: bool = False  # storing outlasted the deadline (the adapter may log it)
    # The shared in-flight claim whose outcome `Delivery.answered` records after the passive answer is written.
    claim: Claim | None = None

    @property
    def replies(self) -> list[Reply]:
        """The replies to render passively (none for an acknowledgement)."""
        return list(self.result.replies) if self.kind == "passive" and self.result is not None else []


class Delivery:
    """One channel account's delivery: the pipeline, the deadline, the passive-or-deferred decision.

    `mode`: `held` for channels whose webhook answer can carry the replies (WeChat passive XML, OneBot
    quick operations), `pending` for channels that always send through the API (QQ bot, OneBot reverse
    WebSocket), None when the answer itself is the only delivery (web: the visitor's request waits).
    `deadline` returns the seconds a passive reply may take (read per call, so tests and reloads apply).
    `repeat_passive`: a duplicate of a passively answered message gets the passive answer again (WeChat
    retries because it did not get the first); False: duplicates are only acknowledged.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        name: str,
        mode: Mode,
        deadline: Callable[[], float | None],
        repeat_passive: bool = True,
        retry_after_s: Callable[[], float] | None = None,
    ) -> None:
        self.runtime = runtime
        self.name = name
        self.mode = mode
        self.deadline = deadline
        # False: a duplicate delivery is only acknowledged (its platform never retries a lost answer).
        self.repeat_passive = repeat_passive
        # The platform's retry interval for unanswered webhooks: turns on the shared in-flight claims.
        self.retry_after_s = retry_after_s
        self._inflight: dict[str, asyncio.Future[PipelineResult]] = {}
        # Outbox rows whose cancel outlasted the deadline and go back to the worker once it commits: no
        # request may answer them passively meanwhile (a platform retry would get them twice).
        self._resuming: set[int] = set()
        # Requests (and spooled follow-ups) waiting for each store: they report its failure; a store that
        # fails with nobody waiting (the platform hung up) is logged by `_unheard` instead, once either way.
        self._waiting: dict[asyncio.Future[PipelineResult], int] = {}
        self._here: dict[str, _Here] = {}
        # One process: when a request of each message id that was answered passively arrived, kept for the
        # platform's retry interval: a request sooner than that after it is a duplicate delivery, not a
        # retry, and its `success` resumes nothing (the passive answer may well have arrived).
        self._spoke: OrderedDict[str, float] = OrderedDict()
        self.now: Callable[[], float] = time.monotonic  # injectable: when requests arrive

    async def deliver(
        self,
        message: Message,
        *,
        can_carry: Callable[[PipelineResult], bool] | None = None,
        targets: Callable[[PipelineResult], Mapping[int, Mapping[str, Any]]] | None = None,
    ) -> Answer:
        """Handle one message; raises when it could not be stored (answer an error: the platform retries).

        `can_carry`: False when the webhook answer cannot hold these replies (e.g. too long for one
        WeChat passive message); they then go through the worker. `targets`: the final target of each held
        row (outbox id → target) when the adapter adds to it on release (a WeCom menu, a transfer).
        """
        shared = self.runtime.coord.inflight
        retries = self.retry_after_s is not None and self.mode == "held"  # unanswered → retried; rows held
        if shared is None and retries and message.channel_msg_id:
            return await self._deliver_here(message, can_carry, targets)
        if shared is None or self.retry_after_s is None or not message.channel_msg_id:
            return await self._deliver(message, can_carry, repeat=self.repeat_passive, targets=targets)
        claim = await shared.claim(message.channel, message.account, message.channel_msg_id)

        async def speak() -> bool:
            return await shared.speak(claim)

        if claim.owner:
            answer = await self._deliver(
                message, can_carry, repeat=self.repeat_passive, speak=speak, targets=targets
            )
            return await self._speaks(answer, claim)
        # A follower: the owner's outcome tells whether the platform can still be waiting for it. It waits
        # half its deadline for it, keeping the other half to answer itself.
        loop = asyncio.get_running_loop()
        deadline = self.deadline()
        started = loop.time()
        waited = deadline / 2 if deadline is not None else 0.0
        outcome = await shared.outcome(claim, waited)
        left = None if deadline is None else max(deadline - (loop.time() - started), 0.0)
        if outcome is None:
            # No word from the owner: it died (kill -9) or is slow. Decide as the first would, but answer
            # passively only if the owner has not taken that turn (`speak`): never both. An owner that took
            # it before this request started waiting and recorded nothing since died before its answer
            # left (its rows may already be cancelled for it): this request answers instead, else nobody would.
            async def speak_or_take_over() -> bool:
                return await speak() or await shared.take_over(claim, waited)

            task = self._task(message)  # the handling `_deliver` joins, kept to read its rows afterwards
            answer = await self._deliver(
                message,
                can_carry,
                repeat=self.repeat_passive,
                budget=left,
                speak=speak_or_take_over,
                targets=targets,
            )
            if answer.kind == "ack" and await shared.take_over(claim, waited):
                # This request said `success` (late, or the rows were not its to cancel), so the platform will
                # not retry, and a silent speaker may have cancelled the rows for a passive answer it never
                # wrote (killed between the two): with its turn taken, those rows go to the worker. (Redis
                # failing here is a 503: the platform's next try may decide, `success` could lose the reply.)
                self.runtime.spawn(self._resume_taken_over(task), name=f"{self.name}-take-over")
            return await self._speaks(answer, claim)
        # The owner answered: a passive answer is repeated only to a retry of the platform's (it did not
        # get it); a request sooner than that is a duplicate delivery, acknowledged.
        retried = claim.since_first_s >= self.retry_after_s()
        repeat = self.repeat_passive and retried and outcome == "passive"
        # Not the first even when this process's task stored it (a request of the same id joined it).
        return await self._deliver(
            message, can_carry, repeat=repeat, first=False, budget=left, targets=targets
        )

    async def _deliver_here(
        self,
        message: Message,
        can_carry: Callable[[PipelineResult], bool] | None,
        targets: Callable[[PipelineResult], Mapping[int, Mapping[str, Any]]] | None,
    ) -> Answer:
        """One process, no Redis, a platform that retries unanswered webhooks: a request that says `success`
        hands rows found cancelled to the worker, unless a request of this process took the turn to answer
        passively while this one was handled (a duplicate delivery, or a retry joining it: that answer may
        well arrive). Else they were cancelled for a passive answer the platform did not get (it retried):
        the previous process died before writing it, or it came too late.
        """
        key = message.channel_msg_id
        arrived = self.now()
        here = self._here.setdefault(key, _Here())  # lives while any request of this id is handled
        here.requests += 1
        spoke = False

        async def speak() -> bool:
            nonlocal spoke
            spoke = True
            here.passive += 1  # a resume meanwhile could double its answer
            return True

        resume: asyncio.Task[None] | None = None
        try:
            task = self._task(message)  # the handling `_deliver` joins, kept to read its rows afterwards
            answer = await self._deliver(
                message, can_carry, repeat=self.repeat_passive, speak=speak, targets=targets
            )
            if answer.kind == "ack":
                here.passive -= spoke  # its own turn ended in `success` (its cancel outlasted it)
                # Decided once the store finished (a spooled `success` comes before): a request that joined
                # it and answers passively takes the turn first (`speak`), or finds the rows `_resuming`.
                resume = self.runtime.spawn(
                    self._resume_taken_over(
                        task, lambda: not here.passive and not self._spoke_lately(key, arrived)
                    ),
                    name=f"{self.name}-take-over",
                )
                resume.add_done_callback(lambda _: self._leave(key, here))
            elif answer.kind == "passive":
                self._remember_spoken(key, arrived)
            return answer
        finally:
            if resume is None:
                self._leave(key, here)

    def _remember_spoken(self, key: str, arrived: float) -> None:
        assert self.retry_after_s is not None
        horizon = arrived - self.retry_after_s()
        while self._spoke and next(iter(self._spoke.values())) < horizon:
            self._spoke.popitem(last=False)  # older than a retry interval: no request can be its duplicate
        self._spoke[key] = arrived
        self._spoke.move_to_end(key)

    def _spoke_lately(self, key: str, arrived: float) -> bool:
        # With a margin for the network's jitter: a retry taken for a duplicate would lose the reply, a
        # duplicate taken for a retry only sends it again.
        spoken = self._spoke.get(key)
        assert self.retry_after_s is not None
        return spoken is not None and abs(arrived - spoken) < self.retry_after_s() - PASSIVE_MARGIN_S

    def _leave(self, key: str, here: _Here) -> None:
        here.requests -= 1
        if not here.requests and self._here.get(key) is here:
            del self._here[key]

    async def _speaks(self, answer: Answer, claim: Claim) -> Answer:
        """The answer of the request that speaks for a message id; an `ack` is its outcome at once."""
        if answer.kind == "ack":
            await self._record(claim, "ack")
            return answer
        return replace(answer, claim=claim)  # recorded by `answered`, once the adapter wrote it

    async def answered(self, answer: Answer) -> None:
        """The adapter wrote a passive answer to the platform: followers may now rely on it."""
        if answer.claim is not None:
            await self._record(answer.claim, answer.kind)

    async def _record(self, claim: Claim, outcome: str) -> None:
        shared = self.runtime.coord.inflight
        if shared is None:
            return
        try:
            await shared.finish(claim, outcome)
        except ConnectionError:
            # Followers then wait a deadline and decide from the stored rows (still one path only).
            logger.warning("%s: could not record the outcome of a delivery", self.name)

    async def _deliver(
        self,
        message: Message,
        can_carry: Callable[[PipelineResult], bool] | None,
        *,
        repeat: bool,
        first: bool = True,
        budget: float | None = None,
        speak: Callable[[], Awaitable[bool]] | None = None,
        targets: Callable[[PipelineResult], Mapping[int, Mapping[str, Any]]] | None = None,
    ) -> Answer:
        task = self._task(message)
        late = False
        loop = asyncio.get_running_loop()
        started = loop.time()
        wait = self.deadline() if budget is None else budget
        with self._waiting_for(task):
            try:
                result = await asyncio.wait_for(asyncio.shield(task), wait)
            except TimeoutError:
                # Not stored yet: acknowledge only once the message is durable in the spool, else keep
                # waiting.
                late = True
                if self.mode is not None and await self._spool(message, task):
                    return Answer("ack", None, late)
                result = await asyncio.shield(task)
            except Exception as exc:
                # The database cannot take it now (down, restarting): acknowledged once in the spool, which
                # stores it when the database is back. Refused for what it is: an error, the platform
                # retries.
                if self.mode is None or not is_unavailable(exc) or not await self._spool(message, task):
                    raise
                if self._waiting.get(task, 0) <= 1:  # spooled before: no follow-up reports the failure
                    logger.warning(
                        "%s: storing a message failed (%s); the spool stores it later", self.name,
                        type(exc).__name__,
                    )  # fmt: skip
                return Answer("ack", None, late)
        if self.mode is None:
            return Answer("passive", result, late)
        if self.mode == "pending":
            if result.outbox:
                self.runtime.outbox.wake()
            return Answer("ack", result, late)
        carry = (can_carry is None or can_carry(result)) and (repeat or (first and not result.duplicate))
        elapsed = loop.time() - started
        left = None if wait is None else max(wait - elapsed, 0.0)
        if left is not None and budget is None and self.retry_after_s is not None:
            # The store had the deadline (it leaves time to spool and acknowledge); deciding may use the
            # platform's own wait, less the answer's way back.
            left = max(left, self.retry_after_s() - PASSIVE_MARGIN_S - elapsed)
        return await self._decide(result, late=late, left=left, carry=carry, speak=speak, targets=targets)

    def _task(self, message: Message) -> asyncio.Future[PipelineResult]:
        key = message.channel_msg_id
        task = self._inflight.get(key) if key else None
        spool = self.runtime.spool
        if task is None and key and spool is not None:
            # A replay of this message from the spool is running (a retry after a crash): join it. Its
            # replies are `pending` rows (nobody was waiting to answer them), so this request acknowledges.
            task = spool.inflight.get(spool_key(message))
        if task is None:
            # Spawned and shielded: the store must finish even when the platform's request gives up.
            task = self.runtime.spawn(
                self.runtime.pipeline.handle(message, outbox=self.mode),
                name=f"{self.name}-{key}",
                awaited=True,
            )
            task.add_done_callback(self._unheard)
            if key:
                self._inflight[key] = task
                task.add_done_callback(lambda t, key=key: _forget(self._inflight, key, t))
                if spool is not None:  # the spool's replay leaves this message alone meanwhile
                    spooled = spool_key(message)
                    spool.inflight[spooled] = task
                    task.add_done_callback(lambda t, k=spooled: _forget(spool.inflight, k, t))
        return task

    @contextlib.contextmanager
    def _waiting_for(self, task: asyncio.Future[PipelineResult]) -> Iterator[None]:
        self._watch(task)
        cancelled = False
        try:
            yield
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            # Given up while the store failed (a cancelled wait still waits a turn for what it cancelled):
            # this waiter reports nothing, so the last one out reports the failure.
            if self._unwatch(task) == 0 and cancelled and task.done():
                self._unheard(task)

    def _watch(self, task: asyncio.Future[PipelineResult]) -> None:
        self._waiting[task] = self._waiting.get(task, 0) + 1

    def _unwatch(self, task: asyncio.Future[PipelineResult]) -> int:
        left = self._waiting[task] - 1
        if left:
            self._waiting[task] = left
        else:
            del self._waiting[task]
        return left

    def _unheard(self, task: asyncio.Future[PipelineResult]) -> None:
        # As the store's done callback it runs before any waiter resumes: a waiter counted then reports the
        # failure itself (the adapter's error line, the spool's warning) or, cancelled, calls this as the
        # last one out (`_waiting_for`).
        if task.cancelled() or task.exception() is None or self._waiting.get(task):
            return
        logger.error("%s: storing a message failed", self.name, exc_info=task.exception())

    async def _spool(self, message: Message, task: asyncio.Future[PipelineResult]) -> bool:
        spool = self.runtime.spool
        if spool is None or not message.channel_msg_id or self.deadline() is None:
            return False  # no spool, nothing to dedupe a replay by, or nothing acknowledged (a WebSocket)
        if not spool.has(message):
            try:
                await spool.write(message)
            except OSError as exc:
                logger.warning(
                    "%s: spooling a late message failed (%s); waiting for the store", self.name, exc
                )
                return False
            spool.owned.add(spool_key(message))
            self._watch(task)  # from now: the follow-up reports a failure (before it starts running too)
            follow_up = self.runtime.spawn(self._after_spooled(message, task), name=f"{self.name}-spooled")
            follow_up.add_done_callback(lambda _, task=task: self._unwatch(task))
        return True

    async def _after_spooled(self, message: Message, task: asyncio.Future[PipelineResult]) -> None:
        """The acknowledged message's store finished: release its held replies, forget its spool file."""
        spool = self.runtime.spool
        assert spool is not None
        try:
            result = await asyncio.shield(task)
        except Exception as exc:
            # Still in the spool: its replay stores it (and writes the replies' rows) when it can.
            spool.disown(message)
            logger.warning(
                "%s: a spooled message's store failed (%s); the spool retries it",
                self.name,
                type(exc).__name__ if is_unavailable(exc) else exc,
                exc_info=None if is_unavailable(exc) else exc,  # our own failure: its traceback too
            )
            return
        held = [outbox_id for outbox_id, status in result.outbox if status == "held"]
        if held:
            await self._release(held)
        elif result.outbox:
            self.runtime.outbox.wake()
        await spool.remove(message)

    async def _decide(
        self,
        result: PipelineResult,
        *,
        late: bool,
        left: float | None,
        carry: bool,
        speak: Callable[[], Awaitable[bool]] | None = None,
        targets: Callable[[PipelineResult], Mapping[int, Mapping[str, Any]]] | None = None,
    ) -> Answer:
        if not result.replies:
            return Answer("ack", result, late)
        if carry and not late and speak is not None and not await speak():
            # Another request of this id (on any process) answers passively and decides the rows.
            return Answer("ack", result, late)
        ids = [outbox_id for outbox_id, _status in result.outbox]
        statuses = {status for _id, status in result.outbox}
        if len(ids) < len(result.replies):
            # Replies without rows (stored before this policy): passive if in time, as before.
            return Answer("passive" if not late and carry else "ack", result, late)
        # All or nothing: a row the worker already took (its hold ended) must not be answered twice.
        # An error here propagates: the platform's retry finds the rows and decides again.
        passive = not late and carry and statuses <= {"held", "cancelled"} and self._resuming.isdisjoint(ids)
        if passive:
            # The cancel is left undone when its statement would run after this (the database stalled).
            not_after = None if left is None else time.monotonic() + left
            cancel = self.runtime.spawn(self._cancel(ids, not_after), name=f"{self.name}-cancel")
            try:
                # Bounded by what is left of the platform's wait: a passive answer written after it stopped
                # waiting is lost, and its rows, cancelled, would never be sent.
                cancelled = await asyncio.wait_for(asyncio.shield(cancel), left)
            except (TimeoutError, asyncio.CancelledError) as exc:
                # Acknowledged in time instead (or the request is gone); a cancel still on its way that
                # commits is undone.
                self._resuming.update(ids)
                self.runtime.spawn(self._resume(cancel, ids), name=f"{self.name}-resume")
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return Answer("ack", result, True)
            if isinstance(cancelled, Exception):
                raise cancelled
            if cancelled:
                return Answer("passive", result, late)
        if "held" in statuses:
            await self._bounded(self._release(ids, None if targets is None else targets(result)), left)
        return Answer("ack", result, late)

    async def _cancel(self, ids: list[int], not_after: float | None) -> bool | Exception:
        """Cancel held rows for a passive answer; an error is returned, not raised (no background-task log:
        the request that waits for it raises it)."""
        try:
            return await self.runtime.store.settle_held(ids, "cancelled", utcnow(), not_after=not_after)
        except Exception as exc:
            return exc

    async def _resume(self, cancel: asyncio.Task[bool | Exception], ids: list[int]) -> None:
        """After a cancel that outlasted the deadline: its rows go to the worker, whatever it did."""
        try:
            cancelled = await cancel
            if cancelled is False or isinstance(cancelled, Exception):
                await self._release(ids)  # nothing changed (or unknown): rows still held are released
                if cancelled is False:
                    return
            resumed = await self._resume_cancelled(ids)
            if resumed:
                logger.warning(
                    "%s: %d replies cancelled too late for a passive answer go out by the API",
                    self.name,
                    resumed,
                )
                self.runtime.outbox.wake()
        finally:
            self._resuming.difference_update(ids)

    async def _resume_taken_over(
        self, task: asyncio.Future[PipelineResult], silent: Callable[[], bool] = lambda: True
    ) -> None:
        """Rows a dead speaker cancelled, found by the store of the request that took its turn: to the worker
        (`silent`: still nobody else's to answer passively, checked once the store finished)."""
        try:
            result = await asyncio.shield(task)
        except Exception:
            return  # not stored by this request: the spool's replay stores it and writes missing rows
        cancelled = [outbox_id for outbox_id, status in result.outbox if status == "cancelled"]
        if not cancelled or not silent():
            return
        mine = set(cancelled) - self._resuming  # no request of this process answers them passively meanwhile
        self._resuming.update(mine)
        try:
            resumed = await self._resume_cancelled(cancelled)
        except Exception as exc:  # refused for what it is (not an outage): nothing more to try
            logger.warning("%s: resuming a dead speaker's cancelled replies failed (%s)", self.name, exc)
            return
        finally:
            self._resuming.difference_update(mine)
        if resumed:
            logger.warning(
                "%s: %d replies cancelled by a silent speaker go out by the API", self.name, resumed
            )
            self.runtime.outbox.wake()

    async def _resume_cancelled(self, ids: list[int]) -> int:
        """Cancelled rows back to `pending`; retried while the database is unavailable: the only record that
        these replies were never sent."""
        delay = 0.5
        while True:
            try:
                return await self.runtime.store.resume_cancelled(ids, utcnow())
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                logger.warning("%s: resuming cancelled replies failed (%s); retrying", self.name, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _bounded(self, work: Awaitable[None], left: float | None) -> None:
        """Wait for `work` at most `left` seconds (the platform is waiting for the answer); it goes on after."""
        task = self.runtime.spawn(work, name=f"{self.name}-release")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), left)

    async def _release(self, ids: list[int], targets: Mapping[int, Mapping[str, Any]] | None = None) -> None:
        try:
            if targets is not None:
                await self.runtime.store.release_held(targets, utcnow())
            else:
                await self.runtime.store.settle_held(ids, "pending", utcnow())
        except Exception as exc:
            # Still held: the worker sends them when the hold ends; only later, never lost.
            logger.warning("%s: releasing held replies failed (%s); sent when the hold ends", self.name, exc)
        self.runtime.outbox.wake()


def _forget(registry: dict[str, Any], key: str, task: Any) -> None:
    """A finished task leaves its registry (unless a newer one took its key meanwhile)."""
    if registry.get(key) is task:
        del registry[key]
