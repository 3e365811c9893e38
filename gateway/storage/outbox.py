"""The outbox table's queries: claim due rows with a lease, finish, release, list and count them, and the
delivery status of stored messages."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import bindparam, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from gateway.storage.outbox_claim import HELD_BACK, LEASE, claimable
from gateway.storage.pg_unit import id_text
from gateway.storage.rows import OUTBOX_STATUSES, OutboxRow, outbox_row, outbox_row_from
from gateway.storage.schema.core import (
    OutboxRecord,
    UTCDateTime,
)
from gateway.storage.unit import Db

if TYPE_CHECKING:
    from gateway.storage.messages import Unit
    from gateway.storage.settle_batch import SettleBatches

T = TypeVar("T")

_OUTBOX = OutboxRecord.__table__
_INSERT_OUTBOX = _OUTBOX.insert()
_OUTBOX_FOR_MESSAGE = select(_OUTBOX.c.id, _OUTBOX.c.status).where(
    _OUTBOX.c.message_id == bindparam("message_id")
)


# Decide one held row (settle_held's one-row case): status and time, if it is still in one of `still`.
class _NotAllHeld(Exception):
    """Rolls back a settle_held that found a row no longer held."""


def _settle_statement(*still: str) -> Any:
    status = _OUTBOX.c.status
    return (
        update(_OUTBOX)
        .where(_OUTBOX.c.id == bindparam("outbox_id"), or_(*(status == s for s in still)))
        .values(status=bindparam("new_status"), next_attempt_at=bindparam("now"))
    )


# Built once per column set and kept: the unit of work compiles each statement once (gateway.storage.unit).
_FINISH: dict[tuple[frozenset[str], bool], Any] = {}


def _finish_statement(columns: frozenset[str], leased: bool) -> Any:
    """UPDATE outbox SET <columns> WHERE id = :outbox_id (`leased`: and the row is still `sending` under the
    lease :lease), built once per column set (finish_outbox)."""
    statement = _FINISH.get((columns, leased))
    if statement is None:
        where = [_OUTBOX.c.id == bindparam("outbox_id")]
        if leased:
            where += [_OUTBOX.c.status == "sending", _OUTBOX.c.locked_until == bindparam("lease")]
        statement = (
            update(_OUTBOX)
            .where(*where)
            .values({name: bindparam(f"set_{name}", type_=_OUTBOX.c[name].type) for name in sorted(columns)})
        )
        _FINISH[(columns, leased)] = statement
    return statement


# Module constants: the unit of work compiles each once (gateway.storage.unit). Cancelling twice is fine (a
# platform retry of a passively answered message); releasing to the worker takes only rows still held.
_SETTLE = {"cancelled": _settle_statement("held", "cancelled"), "pending": _settle_statement("held")}
# Cancelled rows back to the worker: their passive answer never left (Delivery's bounded cancel).
_RESUME = _settle_statement("cancelled")


def _too_late(not_after: float | None) -> bool:
    """Checked inside the unit, as its statement is about to run (on SQLite: on the driver's thread)."""
    return not_after is not None and time.monotonic() > not_after


def _within_places(
    found: list[Mapping[str, Any]], busy: dict[tuple[str, str], int], per_account: int
) -> list[Mapping[str, Any]]:
    """The found rows of the conversations their account has places for (see claim_outbox), oldest first.

    A conversation is taken whole or not at all: its rows are sent one after another by one task, and a
    later row taken without its earlier one would overtake it."""
    busy = dict(busy)  # the unit may run again (a retried trip): the caller's counts stay as they were
    taken: dict[str, bool] = {}
    for row in found:
        key = row["conversation_key"]
        if key not in taken:
            account = (row["channel"], row["account"])
            taken[key] = busy.get(account, 0) < per_account
            if taken[key]:
                busy[account] = busy.get(account, 0) + 1
    return [r for r in found if taken[r["conversation_key"]]]


def settle_held_rows(db: Db, outbox_ids: Sequence[int], status: str, now: datetime) -> None:
    """Inside a unit of work: every row to `status`, or raise _NotAllHeld (the unit then keeps nothing)."""
    statement = _SETTLE[status]
    ids = sorted(set(outbox_ids))
    touched = sum(db.run(statement, {"outbox_id": i, "new_status": status, "now": now}) for i in ids)
    if touched != len(ids):
        raise _NotAllHeld


def add_outbox(db: Db, **values: Any) -> int:
    """Insert one outbox row inside a unit of work (the pipeline writes a reply and its row together)."""
    return db.insert(_INSERT_OUTBOX, outbox_values(**values))


def outbox_values(
    *,
    channel: str,
    account: str,
    conversation_key: str,
    text: str,
    sender: str,
    target: Mapping[str, Any],
    now: datetime,
    message_id: int | None,
    status: str,
    next_attempt_at: datetime,
    attachment: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """An outbox row's column values (every column but the key)."""
    return {
        "channel": channel,
        "account": account,
        "conversation_key": conversation_key,
        "text": text,
        "sender": sender,
        "target": dict(target),
        "status": status,
        "attempts": 0,
        "next_attempt_at": next_attempt_at,
        "locked_until": None,
        "last_error": None,
        "created_at": now,
        "sent_at": None,
        "message_id": message_id,
        "attachment": dict(attachment) if attachment else None,
    }


def outbox_for_message(db: Db, message_id: int) -> tuple[int, str] | None:
    """The (id, status) of a stored reply's outbox row, if it has one."""
    rows = db.rows(_OUTBOX_FOR_MESSAGE, {"message_id": message_id})
    return (int(rows[0]["id"]), str(rows[0]["status"])) if rows else None


class OutboxQueries:
    """Outbox rows; mixed into `Store` (its engine, sessions and write lock)."""

    if TYPE_CHECKING:
        engine: AsyncEngine
        _sessions: async_sessionmaker[AsyncSession]

        def write_lock(self) -> AbstractAsyncContextManager[None]: ...

        async def run(self, work: Callable[[Unit], T]) -> T: ...

        async def run_one(self, work: Callable[[Unit], T]) -> T: ...

        _settles: SettleBatches | None

    async def claim_outbox(
        self,
        now: datetime,
        *,
        lease: timedelta,
        limit: int = 20,
        give_up_after: timedelta | None = None,
        held_back: list[int] | None = None,
        in_flight: Mapping[tuple[str, str], int] | None = None,
        per_account: int | None = None,
    ) -> list[OutboxRow]:
        """Lease due rows to this worker, oldest first, never overtaking an earlier row of the same conversation.

        Due: pending rows whose time has come, expired `sending` leases (`resumed`: that attempt may have
        reached the platform), held rows nobody decided about before their hold ended, and `failed` rows
        on their slow schedule while younger than `give_up_after`. A row waits while an earlier row of its
        conversation is pending, sending, held or failed-but-still-retried and not due itself, so a retried
        row is never overtaken; a row past `give_up_after` (or undeliverable) holds nothing back.
        FOR UPDATE SKIP LOCKED lets several gateway processes share a PostgreSQL outbox without
        sending a row twice, and rows another process is claiming hold their conversation's later rows
        back (_held_back; their ids are appended to `held_back` when given: the claim found them due but
        left them); SQLite has one writer at a time (BEGIN IMMEDIATE) so it needs neither.

        `per_account`: the claim leases the rows of at most this many conversations of one (channel,
        account), counting the `in_flight` ones the worker is sending already. The rows of the others are
        left as they were, unleased and untouched (an account that is full is not even read), and count
        as held back; resumed rows too (after a restart, the cut-off sends of an account that hangs must
        not take the other accounts' places): left untouched, such a row stays `sending` with its lease
        ended, so it is still resumed, and first of its conversation, when a place frees.
        """
        failing = give_up_after is not None
        params: dict[str, Any] = {"now": now, "limit": limit, "locked_until": now + lease}
        busy = dict(in_flight or {})
        skip = sorted(key for key, count in busy.items() if per_account is not None and count >= per_account)
        if skip:
            params["skip"] = [f"{channel}/{account}" for channel, account in skip]
        if give_up_after is not None:
            params["cutoff"] = now - give_up_after  # failed rows younger than this are still retried

        def claim(unit: Unit) -> tuple[list[OutboxRow], list[int]]:
            found = claimable(unit.db, failing, bool(skip), params)
            held: list[int] = []
            if found and unit.db.dialect == "postgresql":
                # (SQLite has one writer at a time: no other claim runs meanwhile.)
                first = {
                    r["conversation_key"]: int(r["first"])
                    for r in unit.db.rows(
                        HELD_BACK[failing],
                        {
                            **({"cutoff": params["cutoff"]} if failing else {}),
                            "claimed": id_text(r["id"] for r in found),
                        },
                    )
                }
                held = [int(r["id"]) for r in found if first.get(r["conversation_key"], r["id"]) < r["id"]]
                found = [r for r in found if int(r["id"]) not in held]
            if per_account is not None:
                within = _within_places(found, busy, per_account)
                taken = {int(r["id"]) for r in within}
                held += [int(r["id"]) for r in found if int(r["id"]) not in taken]
                found = within
            if not found:
                return [], held
            resumed = {int(r["id"]) for r in found if r["status"] == "sending"}
            leased = unit.db.rows(LEASE, {**params, "ids": [int(r["id"]) for r in found]})
            rows = sorted((outbox_row_from(r) for r in leased), key=lambda r: r.id)
            return [replace(r, resumed=True) if r.id in resumed else r for r in rows], held

        # A unit of work: on SQLite it rides the group commit with the pipeline's units (no transaction and
        # commit of its own per claim), on PostgreSQL its own transaction holds the FOR UPDATE locks.
        rows, held = await self.run(claim)
        if held_back is not None:
            held_back.extend(held)
        return rows

    async def settle_held(
        self, outbox_ids: Sequence[int], status: str, now: datetime, *, not_after: float | None = None
    ) -> bool:
        """Decide held rows: `cancelled` (a passive reply carries them) or `pending` (the worker sends them).

        All or nothing: True when every row was still held (or, to cancel, already cancelled) and now has
        `status`; False (and nothing changed) when the worker already took one because its hold ended, or
        when the statement would run after `not_after` (time.monotonic(): the passive answer's last moment).
        """
        if status not in ("cancelled", "pending"):
            raise ValueError(f"held rows become cancelled or pending, not {status!r}")
        if not outbox_ids:
            return True
        ids = set(outbox_ids)
        if len(ids) == 1:
            # One row (one reply, the common case). PostgreSQL: batched with the other settles of the moment,
            # one statement and no BEGIN/COMMIT (gateway/storage/settle_batch.py); SQLite: in the group commit.
            if self._settles is not None:
                return await self._settles.settle(next(iter(ids)), status, now, not_after)
            params = {"outbox_id": next(iter(ids)), "new_status": status, "now": now}
            return await self.run_one(
                lambda unit: not _too_late(not_after) and unit.db.run(_SETTLE[status], params) == 1
            )

        def settle(unit: Unit) -> None:
            if _too_late(not_after):
                raise _NotAllHeld
            settle_held_rows(unit.db, outbox_ids, status, now)

        try:
            # A unit of work: on SQLite it rides the group commit with the pipeline's units, rather than a
            # transaction (and commit) of its own per passive reply.
            await self.run(settle)
        except _NotAllHeld:
            return False
        return True

    async def resume_cancelled(self, outbox_ids: Sequence[int], now: datetime) -> int:
        """Rows cancelled for a passive answer that was never written go back to the worker (`pending`).

        A cancel that commits after the platform stopped waiting (the database stalled) must not leave the
        customer without the answer. Rows no longer cancelled are left alone; returns how many were resumed.
        """
        ids = sorted(set(outbox_ids))
        if not ids:
            return 0

        def resume(unit: Unit) -> int:
            params = {"new_status": "pending", "now": now}
            return sum(unit.db.run(_RESUME, {**params, "outbox_id": i}) for i in ids)

        return await self.run(resume)

    async def release_held(self, targets: Mapping[int, Mapping[str, Any]], now: datetime) -> None:
        """Give held rows their final target (an adapter's additions, e.g. a WeCom menu) and release them to
        the worker; rows no longer held (the worker took them when the hold ended) are left as they are."""
        if not targets:
            return
        async with self.write_lock(), self._sessions() as session, session.begin():
            for outbox_id, target in targets.items():
                await session.execute(
                    update(OutboxRecord)
                    .where(OutboxRecord.id == outbox_id, OutboxRecord.status == "held")
                    .values(status="pending", next_attempt_at=now, target=dict(target))
                )

    async def failing_outbox(self, now: datetime, give_up_after: timedelta) -> int:
        """How many `failed` rows are still retried on the slow schedule (younger than give_up_after)."""
        async with self._sessions() as session:
            count = await session.scalar(
                select(func.count()).where(
                    OutboxRecord.status == "failed",
                    # Implied by created_at's bound (see outbox_claim._due): the index reads the rows
                    # of the last give_up_after, not every failed row ever.
                    OutboxRecord.next_attempt_at > now - give_up_after,
                    OutboxRecord.created_at > now - give_up_after,
                )
            )
            return int(count or 0)

    async def finish_outbox(
        self,
        outbox_id: int,
        *,
        status: str,
        now: datetime,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
        lease: datetime | None = None,
    ) -> bool:
        """Record a send's outcome: sent, pending again (retry at next_attempt_at), failed or undeliverable.

        `lease`: only while the row is still `sending` under this lease (the one its claim set or renewed);
        a claim that took the row over since has its own, and its outcome is the row's. Whether it changed."""
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
        params = {f"set_{name}": value for name, value in values.items()}
        params["outbox_id"] = outbox_id
        if lease is not None:
            params["lease"] = lease
        statement = _finish_statement(frozenset(values), lease is not None)
        # A unit of work, not an ORM session of its own: on SQLite each delivered notice's mark rides the
        # group commit with the other writes instead of a BEGIN IMMEDIATE trip (and pool checkout) apiece.
        return bool(await self.run(lambda unit: unit.db.run(statement, params)))

    async def resend_message(self, message_id: int, now: datetime) -> bool:
        """An agent's retry of a message that did not arrive: its failed or undeliverable row is due again
        with fresh attempts (and a fresh give-up window); False when it has no such row."""
        async with self.write_lock(), self._sessions() as session, session.begin():
            result = await session.execute(
                update(OutboxRecord)
                .where(
                    OutboxRecord.message_id == message_id,
                    OutboxRecord.status.in_(("failed", "undeliverable")),
                )
                .values(status="pending", attempts=0, next_attempt_at=now, locked_until=None, created_at=now)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def release_outbox(
        self, outbox_ids: Sequence[int], next_attempt_at: datetime, *, lease: datetime | None = None
    ) -> None:
        """Hand claimed rows back unsent (their claim does not count as an attempt); with `lease`, only rows
        still under it (another claim's rows are its own)."""
        if not outbox_ids:
            return
        mine = [] if lease is None else [OutboxRecord.locked_until == lease]
        async with self.write_lock(), self._sessions() as session, session.begin():
            await session.execute(
                update(OutboxRecord)
                .where(OutboxRecord.id.in_(list(outbox_ids)), OutboxRecord.status == "sending", *mine)
                .values(
                    status="pending",
                    locked_until=None,
                    next_attempt_at=next_attempt_at,
                    attempts=OutboxRecord.attempts - 1,
                )
            )

    async def renew_outbox(
        self, outbox_ids: Sequence[int], leased_until: datetime, now: datetime, until: datetime
    ) -> set[int]:
        """Extend claimed rows' lease to `until` where it is still this claim's: `sending`, the lease the
        claim set (`leased_until`: another claim sets its own) and not run out. The ids renewed."""
        if not outbox_ids:
            return set()
        async with self.write_lock(), self._sessions() as session, session.begin():
            result = await session.execute(
                update(OutboxRecord)
                .where(
                    OutboxRecord.id.in_(list(outbox_ids)),
                    OutboxRecord.status == "sending",
                    OutboxRecord.locked_until == leased_until,
                    OutboxRecord.locked_until > now,
                )
                .values(locked_until=until)
                .returning(OutboxRecord.id)
            )
            return {int(i) for i in result.scalars()}

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
