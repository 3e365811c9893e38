"""质检 storage: one `qa_results` row per closed human conversation, with the supervisor's review of a flag.

The score and hits are decided in `handoff.qa`; this module finds the conversations still to score, reads
their messages, and keeps the results. A supervisor's confirm/dismiss is a compare-and-set on an open flag
and is also written to the audit log (the row keeps the note, who and when).
The table is in `schema/supervision.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, exists, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from gateway.storage.schema.core import Conversation, MessageRecord
from gateway.storage.schema.handoff import AgentRecord, AssignmentRecord
from gateway.storage.schema.supervision import QaPendingRecord, QaResultRecord
from gateway.storage.store import Store
from handoff.qa import QaMessage, QaScore

__all__ = [
    "QaRow",
    "ToScore",
    "conversation_messages",
    "get_result",
    "list_results",
    "review_flag",
    "save_result",
    "unscored_conversations",
]

REVIEWS = ("open", "confirmed", "dismissed")


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class ToScore:
    """A closed conversation an agent took, not scored yet."""

    conversation_id: int
    agent_id: int
    group: str | None
    closed_at: datetime


_PENDING = select(QaPendingRecord.conversation_id).order_by(QaPendingRecord.conversation_id)
# Pending conversations looked up per statement (an IN list of their ids).
PENDING_CHUNK = 500


def _scored(conversation_id: Any) -> Any:
    """The conversation (`conversation_id`, a column) has its 质检 result."""
    return exists().where(QaResultRecord.conversation_id == conversation_id)


def _finished() -> list[Any]:
    """A conversation (joined with its assignment) whose human part is over: closed, or handed back."""
    c, a = Conversation, AssignmentRecord
    return [c.state.in_(("closed", "bot")), a.active.is_(False), a.ended_at.is_not(None)]


def _unscored(ids: list[int]) -> Any:
    """Of the pending conversations `ids`, those whose human part is over now."""
    c, a = Conversation, AssignmentRecord
    return (
        select(c.id, a.agent_id, a.group, a.ended_at)
        .join(a, a.conversation_id == c.id)
        .where(c.id.in_(ids), *_finished(), ~_scored(c.id))
    )


def pend(conversation_id: Any, *where: Any, dialect: str) -> Any:
    """INSERT INTO qa_pending the conversations `conversation_id` (a column) selects `where`, those not
    scored yet, each once. ON CONFLICT DO NOTHING: a close and the sweep may leave the same row at one
    moment on PostgreSQL, and the close must not fail for it."""
    module = postgresql if dialect == "postgresql" else sqlite
    rows = select(conversation_id).where(*where, ~_scored(conversation_id))
    return (
        module.insert(QaPendingRecord.__table__)
        .from_select(["conversation_id"], rows)
        .on_conflict_do_nothing()
    )


async def pend_missed(store: Store) -> int:
    """Leave to 质检 the finished conversations no close left to it (closed by a process of the release
    before migration 0007 during a rolling deploy); how many. It reads the whole history, so the job runs
    it at start and then rarely (`jobs.qa_scoring.SWEEP_EVERY_S`); the write is only of what it found."""
    c, a, p = Conversation, AssignmentRecord, QaPendingRecord.__table__
    missed = (
        select(c.id)
        .join(a, a.conversation_id == c.id)
        .where(
            *_finished(),
            ~_scored(c.id),
            ~exists().where(p.c.conversation_id == c.id),
        )
    )
    async with store.engine.connect() as conn:
        ids = list((await conn.execute(missed)).scalars())
    for start in range(0, len(ids), PENDING_CHUNK):
        chunk = pend(c.id, c.id.in_(ids[start : start + PENDING_CHUNK]), dialect=store.engine.dialect.name)
        async with store.write_lock(), store.engine.begin() as conn:
            await conn.execute(chunk)
    # And rows left pending although scored (a close racing the scoring of the same conversation).
    async with store.write_lock(), store.engine.begin() as conn:
        await conn.execute(delete(p).where(_scored(p.c.conversation_id)))
    return len(ids)


async def unscored_conversations(store: Store, *, limit: int = 100) -> list[ToScore]:
    """Up to `limit` conversations whose human part is over (closed, or handed back to the bot) and not
    scored yet, the oldest end first among them.

    Read from qa_pending (a close leaves the conversation there), not from every conversation ever closed,
    which grew with the history. The pending ids are read first, then looked up by key: as a join or a
    subquery, a planner without statistics of the small pending table may start from the big ones instead.
    A conversation transferred to a group queue is not over: it is scored once its last agent ends it; one
    taken up again after its close (pending, not over now) waits there until it is closed again.
    """
    found: list[Any] = []
    async with store.engine.connect() as conn:
        pending = list((await conn.execute(_PENDING)).scalars())
        for start in range(0, len(pending), PENDING_CHUNK):
            found += (await conn.execute(_unscored(pending[start : start + PENDING_CHUNK]))).all()
            if len(found) >= limit:
                break
    found.sort(key=lambda r: (_aware(r.ended_at), r.id))
    return [ToScore(r.id, r.agent_id, r.group_name, _aware(r.ended_at)) for r in found[:limit]]  # type: ignore[arg-type]


async def conversation_messages(store: Store, conversation_id: int) -> list[QaMessage]:
    """The conversation's texts in order: customer (inbound), agent, bot, system."""
    m = MessageRecord
    query = (
        select(m.direction, m.sender, m.text, m.created_at)
        .where(m.conversation_id == conversation_id)
        .order_by(m.id)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [
        QaMessage("customer" if r.direction == "in" else r.sender, r.text or "", _aware(r.created_at))
        for r in rows
    ]


async def save_result(
    store: Store, item: ToScore, result: QaScore, *, rules_version: str, at: datetime
) -> bool:
    """Keep a conversation's score once; False when another process scored it first."""
    values = {
        "conversation_id": item.conversation_id,
        "agent_id": item.agent_id,
        "group_name": item.group,
        "closed_at": item.closed_at,
        "score": result.score,
        "max_score": result.max_score,
        "flagged": result.flagged,
        "hits": [h.as_dict() for h in result.hits],
        "rules_version": rules_version,
        "scored_at": at,
        "review": "open" if result.flagged else None,
    }
    pending = delete(QaPendingRecord).where(QaPendingRecord.conversation_id == item.conversation_id)
    try:
        async with store.write_lock(), store.engine.begin() as conn:
            await conn.execute(QaResultRecord.__table__.insert().values(**values))
            await conn.execute(pending)
    except IntegrityError:
        async with store.write_lock(), store.engine.begin() as conn:
            await conn.execute(pending)  # scored by another process: no longer pending either
        return False
    return True


@dataclass(frozen=True, slots=True)
class QaRow:
    """A stored 质检 result with the agent's name."""

    conversation_id: int
    agent_id: int | None
    agent: str | None
    group: str | None
    closed_at: datetime
    score: int
    max_score: int
    flagged: bool
    hits: list[dict[str, Any]]
    rules_version: str | None
    review: str | None
    review_note: str | None
    reviewed_by: str | None
    reviewed_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        """JSON-ready; `rules` lists the ids of the rules hit, each once."""
        return {
            "conversation_id": str(self.conversation_id),
            "agent": self.agent,
            "group": self.group,
            "closed_at": self.closed_at.isoformat(),
            "score": self.score,
            "max_score": self.max_score,
            "flagged": self.flagged,
            "rules": list(dict.fromkeys(h["rule"] for h in self.hits)),
            "hits": self.hits,
            "rules_version": self.rules_version,
            "review": self.review,
            "review_note": self.review_note,
            "reviewed_by": self.reviewed_by,
            "reviewed_at": self.reviewed_at.isoformat() if self.reviewed_at else None,
        }


def _query() -> Any:
    t = QaResultRecord.__table__
    return select(t, AgentRecord.name.label("agent_name")).outerjoin(
        AgentRecord, AgentRecord.id == t.c.agent_id
    )


def _row(r: Any) -> QaRow:
    m = r._mapping
    return QaRow(
        m["conversation_id"],
        m["agent_id"],
        m["agent_name"],
        m["group_name"],
        _aware(m["closed_at"]),  # type: ignore[arg-type]
        m["score"],
        m["max_score"],
        bool(m["flagged"]),
        list(m["hits"] or []),
        m["rules_version"],
        m["review"],
        m["review_note"],
        m["reviewed_by"],
        _aware(m["reviewed_at"]),
    )


async def list_results(
    store: Store,
    start: datetime,
    end: datetime,
    *,
    flagged: bool | None = None,
    review: str | None = None,
    agent_id: int | None = None,
    limit: int = 1000,
) -> list[QaRow]:
    """Results of conversations closed in [start, end), lowest score first."""
    q = QaResultRecord
    query = (
        _query()
        .where(and_(q.closed_at >= start, q.closed_at < end))
        .order_by(q.score, q.closed_at, q.conversation_id)
        .limit(limit)
    )
    if flagged is not None:
        query = query.where(q.flagged.is_(flagged))
    if review is not None:
        query = query.where(q.review == review)
    if agent_id is not None:
        query = query.where(q.agent_id == agent_id)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [_row(r) for r in rows]


async def get_result(store: Store, conversation_id: int) -> QaRow | None:
    """One conversation's result."""
    async with store.engine.connect() as conn:
        row = (await conn.execute(_query().where(QaResultRecord.conversation_id == conversation_id))).first()
    return _row(row) if row is not None else None


async def review_flag(
    store: Store, conversation_id: int, *, confirm: bool, note: str, by: str, at: datetime
) -> bool:
    """Confirm or dismiss an open flag (compare-and-set); False when not flagged or already reviewed."""
    q = QaResultRecord
    async with store.write_lock(), store.engine.begin() as conn:
        done = await conn.execute(
            update(q)
            .where(q.conversation_id == conversation_id, q.flagged.is_(True), q.review == "open")
            .values(
                review="confirmed" if confirm else "dismissed",
                review_note=note,
                reviewed_by=by,
                reviewed_at=at,
            )
        )
    if done.rowcount == 1:
        await store.audit(
            "qa_review",
            by,
            {
                "conversation_id": conversation_id,
                "review": "confirmed" if confirm else "dismissed",
                "note": note,
            },
        )
    return done.rowcount == 1
