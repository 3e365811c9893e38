"""PostgreSQL: the settles of single held outbox rows that wait at one moment, as ONE statement.

A passively answered message settles its reply's held row once the webhook answered (`cancelled`: the answer
carried it). Under load dozens of answers finish within a few milliseconds and each settle was a round trip
of its own, about a fifth of a FAQ message's. A settle that arrives while a batch is on the wire waits for
the next one (as SQLite's group commit does), so the batches grow with the load and cost nothing when idle.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from sqlalchemy import any_, bindparam, or_, update

from gateway.storage.pg_unit import id_array, id_text
from gateway.storage.schema.core import OutboxRecord

_OUTBOX = OutboxRecord.__table__

_IDS = id_array("outbox_ids")


def _settle_many(*still: str) -> Any:
    status = _OUTBOX.c.status
    return (
        update(_OUTBOX)
        .where(
            _OUTBOX.c.id == any_(_IDS),
            or_(*(status == s for s in still)),
        )
        .values(status=bindparam("new_status"), next_attempt_at=bindparam("now"))
        .returning(_OUTBOX.c.id)
    )


# As outbox._SETTLE: cancelling twice is fine (a platform retry of a passively answered message); releasing
# to the worker takes only rows still held.
_SETTLE_MANY = {"cancelled": _settle_many("held", "cancelled"), "pending": _settle_many("held")}

RunOne = Callable[[Callable[[Any], Any]], Awaitable[Any]]


class SettleBatches:
    """`settle(id, status, now)`: True when the row was still held (or, to cancel, already cancelled)."""

    def __init__(self, run_one: RunOne) -> None:
        self._run_one = run_one  # Store.run_one: a one-statement unit, no BEGIN/COMMIT
        self._waiting: dict[str, list[tuple[int, datetime, asyncio.Future[bool], float | None]]] = {}
        self._drainer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def settle(
        self, outbox_id: int, status: str, now: datetime, not_after: float | None = None
    ) -> bool:
        """`not_after` (time.monotonic()): a batch sent later leaves this row as it is (False)."""
        if status not in _SETTLE_MANY:
            raise ValueError(f"held rows become cancelled or pending, not {status!r}")
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (tests): nothing of the old one can be awaited here
            self._loop, self._waiting, self._drainer = loop, {}, None
        future: asyncio.Future[bool] = loop.create_future()
        self._waiting.setdefault(status, []).append((outbox_id, now, future, not_after))
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain(), name="kefu-outbox-settles")
            self._drainer.add_done_callback(self._drained)
        return await future

    def _drained(self, task: asyncio.Task[None]) -> None:
        # Also runs for a drainer cancelled before it started (its body, and its `finally`, never ran).
        if self._drainer is task:
            self._drainer = None
        if task.cancelled() and self._drainer is None:  # (a newer drainer owns the waiting otherwise)
            for batch in self._waiting.values():
                for _, _, future, _ in batch:
                    future.cancel()
            self._waiting.clear()

    async def _drain(self) -> None:
        batch: list[tuple[int, datetime, asyncio.Future[bool], float | None]] = []
        try:
            while self._waiting:
                status = next(iter(self._waiting))
                batch = self._waiting.pop(status)
                statement = _SETTLE_MANY[status]

                def work(
                    unit: Any, batch: Any = batch, status: str = status, statement: Any = statement
                ) -> Any:
                    # Decided as the statement leaves: a caller that gave up, or whose time is past, is not
                    # settled (its row stays as it is).
                    clock = time.monotonic()
                    live = [
                        (outbox_id, now)
                        for outbox_id, now, future, not_after in batch
                        if not future.done() and (not_after is None or clock <= not_after)
                    ]
                    if not live:
                        return set()
                    params = {
                        "outbox_ids": id_text(sorted({outbox_id for outbox_id, _ in live})),
                        "new_status": status,
                        # The latest caller's time: the batch's callers are milliseconds apart.
                        "now": max(now for _, now in live),
                    }
                    return {r["id"] for r in unit.db.rows(statement, params)}

                try:
                    settled = await self._run_one(work)
                except Exception as exc:
                    for _, _, future, _ in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for outbox_id, _, future, _ in batch:
                    if not future.done():
                        future.set_result(outbox_id in settled)
                batch = []
        finally:
            for _, _, future, _ in batch:  # cancelled mid-batch (shutting down)
                future.cancel()
            if self._drainer is asyncio.current_task():
                self._drainer = None
