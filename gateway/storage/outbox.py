"""The outbox table's queries: claim due rows with a lease, finish, release, list and count them, and the
delivery status of stored messages."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.storage.rows import OUTBOX_STATUSES, OutboxRow, outbox_row
from gateway.storage.schema.core import (
    OutboxRecord,
    UTCDateTime,
)


class OutboxQueries:
    """Outbox rows; mixed into `Store` (its engine, sessions and write lock)."""

    if TYPE_CHECKING:
        engine: AsyncEngine
        _sessions: async_sessionmaker[AsyncSession]

        def write_lock(self) -> AbstractAsyncContextManager[None]: ...

    async def claim_outbox(self, now: datetime, *, lease: timedelta, limit: int = 20) -> list[OutboxRow]:
        """Lease due rows to this worker: pending ones whose time has come and expired `sending` leases.

        FOR UPDATE SKIP LOCKED lets several gateway processes share a PostgreSQL outbox without
        sending a row twice; SQLite has one writer at a time (BEGIN IMMEDIATE) so it needs no lock.
        """
        async with self.write_lock(), self._sessions() as session, session.begin():
            ids = list(
                await session.scalars(
                    select(OutboxRecord.id)
                    .where(
                        or_(
                            (OutboxRecord.status == "pending") & (OutboxRecord.next_attempt_at <= now),
                            (OutboxRecord.status == "sending") & (OutboxRecord.locked_until <= now),
                        )
                    )
                    .order_by(OutboxRecord.next_attempt_at, OutboxRecord.id)
                    .limit(limit)
                    .with_for_update(skip_locked=True)
                )
            )
            if not ids:
                return []
            await session.execute(
                update(OutboxRecord)
                .where(OutboxRecord.id.in_(ids))
                .values(status="sending", locked_until=now + lease, attempts=OutboxRecord.attempts + 1)
            )
            rows = await session.scalars(
                select(OutboxRecord)
                .where(OutboxRecord.id.in_(ids))
                .order_by(OutboxRecord.id)
                .execution_options(populate_existing=True)
            )
            return [outbox_row(r) for r in rows]

    async def finish_outbox(
        self,
        outbox_id: int,
        *,
        status: str,
        now: datetime,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> None:
        """Record a send's outcome: sent, pending again (retry at next_attempt_at), failed or undeliverable."""
        if status not in OUTBOX_STATUSES:
            raise ValueError(f"unknown outbox status {status!r}")
        values: dict[str, Any] = {"status": status, "locked_until": None}
        if status == "sent":
            values["sent_at"] = now
            values["last_error"] = None
        if error is not None:
            values["last_error"] = error[:2000]
        if next_attempt_at is not None:
            values["next_attempt_at"] = next_attempt_at
        async with self.write_lock(), self._sessions() as session, session.begin():
            await session.execute(update(OutboxRecord).where(OutboxRecord.id == outbox_id).values(**values))

    async def release_outbox(self, outbox_ids: Sequence[int], next_attempt_at: datetime) -> None:
        """Hand claimed rows back unsent (their claim does not count as an attempt)."""
        if not outbox_ids:
            return
        async with self.write_lock(), self._sessions() as session, session.begin():
            await session.execute(
                update(OutboxRecord)
                .where(OutboxRecord.id.in_(list(outbox_ids)), OutboxRecord.status == "sending")
                .values(
                    status="pending",
                    locked_until=None,
                    next_attempt_at=next_attempt_at,
                    attempts=OutboxRecord.attempts - 1,
                )
            )

    async def outbox(self, outbox_id: int) -> OutboxRow | None:
        """One outbox row by id."""
        async with self._sessions() as session:
            row = await session.get(OutboxRecord, outbox_id)
            return outbox_row(row) if row is not None else None

    async def list_outbox(self, status: str | None = None, *, limit: int = 100) -> list[OutboxRow]:
        """Outbox rows, newest first, optionally of one status."""
        query = select(OutboxRecord)
        if status is not None:
            query = query.where(OutboxRecord.status == status)
        async with self._sessions() as session:
            rows = await session.scalars(query.order_by(OutboxRecord.id.desc()).limit(limit))
            return [outbox_row(r) for r in rows]

    async def delivery(self, message_ids: Sequence[int]) -> dict[int, tuple[str, str | None]]:
        """(status, last error) of the outbox rows that deliver these messages (absent: never queued)."""
        if not message_ids:
            return {}
        query = select(OutboxRecord.message_id, OutboxRecord.status, OutboxRecord.last_error).where(
            OutboxRecord.message_id.in_(list(message_ids))
        )
        async with self._sessions() as session:
            return {r.message_id: (r.status, r.last_error) for r in await session.execute(query)}

    async def outbox_counts(self) -> dict[str, int]:
        """How many outbox rows per status (every status present, zero when none)."""
        async with self._sessions() as session:
            result = await session.execute(
                select(OutboxRecord.status, func.count()).group_by(OutboxRecord.status)
            )
            counts = dict.fromkeys(OUTBOX_STATUSES, 0)
            for status, count in result:
                counts[status] = int(count)
            return counts

    async def next_outbox_due(self) -> datetime | None:
        """When the earliest pending row is due (the worker sleeps until then, or until woken)."""
        async with self._sessions() as session:
            return await session.scalar(
                select(func.min(OutboxRecord.next_attempt_at, type_=UTCDateTime())).where(
                    OutboxRecord.status == "pending"
                )
            )
