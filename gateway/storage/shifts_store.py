"""排班 storage: the `shifts` and `shift_swaps` tables and their queries.

Rules (coverage, swap limits, attendance) are decided in `handoff.shifts`; this module stores and reads.
An approved swap moves the shift to the colleague in the same transaction as the decision, with a
compare-and-set on the swap's status, so two supervisors clicking at once approve it once.
The tables are in `schema/supervision.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.orm import aliased

from gateway.storage.schema.handoff import AgentRecord
from gateway.storage.schema.supervision import ShiftRecord, ShiftSwapRecord
from gateway.storage.store import Store
from handoff.shifts import ShiftSpan, SwapRequest, next_shift_start

__all__ = [
    "ShiftRow",
    "SwapRow",
    "add_shift",
    "add_swap",
    "decide_swap",
    "delete_shift",
    "get_shift",
    "get_swap",
    "list_shifts",
    "list_swaps",
    "next_shift_start_of",
    "shifts_now",
]


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class ShiftRow:
    """A stored shift with its agent's name."""

    id: int
    agent_id: int
    agent: str
    group: str
    start: datetime
    end: datetime
    breaks: tuple[tuple[datetime, datetime], ...]

    @property
    def span(self) -> ShiftSpan:
        """The pure shift (agent by name) for handoff.shifts."""
        return ShiftSpan(self.agent, self.group, self.start, self.end, self.breaks, id=str(self.id))

    def as_json(self, tz: tzinfo = UTC) -> dict[str, Any]:
        """JSON-ready, times in `tz` (the business-hours zone: what the schedule is read in)."""
        return {
            "id": self.id,
            "agent": self.agent,
            "group": self.group,
            "start": self.start.astimezone(tz).isoformat(),
            "end": self.end.astimezone(tz).isoformat(),
            "breaks": [[s.astimezone(tz).isoformat(), e.astimezone(tz).isoformat()] for s, e in self.breaks],
        }


@dataclass(frozen=True, slots=True)
class SwapRow:
    """A stored swap request with the names of both agents."""

    id: int
    shift_id: int
    requester: str
    with_agent: str
    with_agent_id: int
    shift_start: datetime
    status: str
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    note: str | None

    @property
    def request(self) -> SwapRequest:
        """The pure request for the monthly limit."""
        return SwapRequest(self.requester, self.shift_start, self.status)

    def as_json(self, tz: tzinfo = UTC) -> dict[str, Any]:
        """JSON-ready, the shift's start in `tz`."""
        return {
            "id": self.id,
            "shift_id": self.shift_id,
            "requester": self.requester,
            "with_agent": self.with_agent,
            "shift_start": self.shift_start.astimezone(tz).isoformat(),
            "status": self.status,
            "created_at": self.created_at.isoformat(),
            "decided_at": self.decided_at.isoformat() if self.decided_at else None,
            "decided_by": self.decided_by,
            "note": self.note,
        }


def _shift_query() -> Any:
    s = ShiftRecord
    return select(s.id, s.agent_id, AgentRecord.name, s.group, s.start_at, s.end_at, s.breaks).join(
        AgentRecord, AgentRecord.id == s.agent_id
    )


def _shift_row(r: Any) -> ShiftRow:
    """A row of `_shift_query` (a Row's `_mapping`, or a mapping from `Db.rows`)."""
    breaks = tuple(
        (_aware(datetime.fromisoformat(a)), _aware(datetime.fromisoformat(b))) for a, b in (r["breaks"] or [])
    )
    start, end = _aware(r["start_at"]), _aware(r["end_at"])
    return ShiftRow(r["id"], r["agent_id"], r["name"], r["group_name"], start, end, breaks)


# The two reads on a handoff's path, built once and run as one-statement reads (Store.read): a 留言 asks
# when its group's next shift starts, the assigner who is on shift now. Built per call and run on a pooled
# connection of their own, they cost a cache-key walk and a checkout per handoff.
_WINDOW_START = bindparam("window_start", type_=ShiftRecord.start_at.type)
_WINDOW_END = bindparam("window_end", type_=ShiftRecord.end_at.type)
_SHIFTS_IN_WINDOW = (
    _shift_query()
    .where(ShiftRecord.start_at < _WINDOW_END, ShiftRecord.end_at > _WINDOW_START)
    .order_by(ShiftRecord.start_at, ShiftRecord.id)
)
_GROUP_SHIFTS_IN_WINDOW = _SHIFTS_IN_WINDOW.where(
    ShiftRecord.group == bindparam("group", type_=ShiftRecord.group.type)
)


async def _shifts_in_window(
    store: Store, start: datetime, end: datetime, group: str | None
) -> list[ShiftRow]:
    params: dict[str, Any] = {"window_start": start, "window_end": end}
    statement = _SHIFTS_IN_WINDOW
    if group is not None:
        statement, params["group"] = _GROUP_SHIFTS_IN_WINDOW, group
    rows = await store.read(lambda unit: unit.db.rows(statement, params))
    return [_shift_row(r) for r in rows]


async def add_shift(
    store: Store,
    agent_id: int,
    group: str,
    start: datetime,
    end: datetime,
    *,
    breaks: tuple[tuple[datetime, datetime], ...] = (),
    by: str,
    at: datetime,
) -> int:
    """Store a shift (already validated as a ShiftSpan); its id."""
    values = {
        "agent_id": agent_id,
        "group_name": group,
        "start_at": start,
        "end_at": end,
        "breaks": [[s.isoformat(), e.isoformat()] for s, e in breaks] or None,
        "created_by": by,
        "created_at": at,
    }
    async with store.write_lock(), store.engine.begin() as conn:
        result = await conn.execute(ShiftRecord.__table__.insert().values(**values))
    return int(result.inserted_primary_key[0])


async def list_shifts(
    store: Store,
    start: datetime,
    end: datetime,
    *,
    group: str | None = None,
    agent_id: int | None = None,
) -> list[ShiftRow]:
    """Shifts overlapping [start, end), by start time."""
    s = ShiftRecord
    query = _shift_query().where(s.start_at < end, s.end_at > start).order_by(s.start_at, s.id)
    if group is not None:
        query = query.where(s.group == group)
    if agent_id is not None:
        query = query.where(s.agent_id == agent_id)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [_shift_row(r._mapping) for r in rows]


async def get_shift(store: Store, shift_id: int) -> ShiftRow | None:
    """One shift by id."""
    async with store.engine.connect() as conn:
        row = (await conn.execute(_shift_query().where(ShiftRecord.id == shift_id))).first()
    return _shift_row(row._mapping) if row is not None else None


async def delete_shift(store: Store, shift_id: int) -> bool:
    """Delete a shift and its swap requests; False when there was none."""
    async with store.write_lock(), store.engine.begin() as conn:
        await conn.execute(delete(ShiftSwapRecord).where(ShiftSwapRecord.shift_id == shift_id))
        done = await conn.execute(delete(ShiftRecord).where(ShiftRecord.id == shift_id))
    return done.rowcount == 1


def _swap_query() -> Any:
    requester = aliased(AgentRecord)
    colleague = aliased(AgentRecord)
    w = ShiftSwapRecord
    return (
        select(
            w.id,
            w.shift_id,
            requester.name.label("requester"),
            colleague.name.label("with_agent"),
            w.with_agent_id,
            w.shift_start,
            w.status,
            w.created_at,
            w.decided_at,
            w.decided_by,
            w.note,
        )
        .join(requester, requester.id == w.requester_id)
        .join(colleague, colleague.id == w.with_agent_id)
    )


def _swap_row(r: Any) -> SwapRow:
    return SwapRow(
        r.id,
        r.shift_id,
        r.requester,
        r.with_agent,
        r.with_agent_id,
        _aware(r.shift_start),
        r.status,
        _aware(r.created_at),
        _aware(r.decided_at) if r.decided_at is not None else None,
        r.decided_by,
        r.note,
    )


async def add_swap(store: Store, shift: ShiftRow, with_agent_id: int, *, at: datetime) -> int:
    """Store a pending swap request (already checked by handoff.shifts.check_swap); its id."""
    values = {
        "shift_id": shift.id,
        "requester_id": shift.agent_id,
        "with_agent_id": with_agent_id,
        "shift_start": shift.start,
        "status": "pending",
        "created_at": at,
    }
    async with store.write_lock(), store.engine.begin() as conn:
        result = await conn.execute(ShiftSwapRecord.__table__.insert().values(**values))
    return int(result.inserted_primary_key[0])


async def list_swaps(
    store: Store,
    *,
    status: str | None = None,
    requester_id: int | None = None,
    shift_from: datetime | None = None,
    shift_to: datetime | None = None,
    limit: int = 500,
) -> list[SwapRow]:
    """Swap requests, newest first, filtered by status, requester and the swapped shift's start."""
    w = ShiftSwapRecord
    query = _swap_query().order_by(w.created_at.desc(), w.id.desc()).limit(limit)
    if status is not None:
        query = query.where(w.status == status)
    if requester_id is not None:
        query = query.where(w.requester_id == requester_id)
    if shift_from is not None:
        query = query.where(w.shift_start >= shift_from)
    if shift_to is not None:
        query = query.where(w.shift_start < shift_to)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [_swap_row(r) for r in rows]


async def get_swap(store: Store, swap_id: int) -> SwapRow | None:
    """One swap request by id."""
    async with store.engine.connect() as conn:
        row = (await conn.execute(_swap_query().where(ShiftSwapRecord.id == swap_id))).first()
    return _swap_row(row) if row is not None else None


async def decide_swap(
    store: Store, swap_id: int, *, approve: bool, by: str, note: str | None, at: datetime
) -> bool:
    """Approve (the shift moves to the colleague) or reject a pending swap; False when not pending."""
    w = ShiftSwapRecord
    async with store.write_lock(), store.engine.begin() as conn:
        row = (
            await conn.execute(select(w.shift_id, w.requester_id, w.with_agent_id).where(w.id == swap_id))
        ).first()
        if row is None:
            return False
        done = await conn.execute(
            update(w)
            .where(w.id == swap_id, w.status == "pending")
            .values(status="approved" if approve else "rejected", decided_at=at, decided_by=by, note=note)
        )
        if done.rowcount != 1:
            return False
        if approve:
            await conn.execute(
                update(ShiftRecord)
                .where(ShiftRecord.id == row.shift_id, ShiftRecord.agent_id == row.requester_id)
                .values(agent_id=row.with_agent_id)
            )
    return True


async def shifts_now(store: Store, now: datetime) -> dict[str, set[str]]:
    """Group → ids of the agents on duty at `now` (inside a shift, off its breaks): routing prefers them."""
    out: dict[str, set[str]] = {}
    for row in await _shifts_in_window(store, now, now + timedelta(seconds=1), None):
        if row.span.covers(now):
            out.setdefault(row.group, set()).add(str(row.agent_id))
    return out


async def next_shift_start_of(store: Store, group: str, now: datetime) -> datetime | None:
    """When the group's next on-duty time starts after `now` (within a week): for the "暂无客服在线" notice."""
    rows = await _shifts_in_window(store, now, now + timedelta(days=8), group)
    return next_shift_start([r.span for r in rows], now, group)
