"""The queue's serving-order key: one indexed BIGINT per queued conversation (conversations.queue_key).

The order is `handoff.queue.queue_sort_key`: priority (high first), 留言 tickets first, FIFO on
coalesce(queued_at, opened_at), then the id. The first three are folded into one integer,

    key = (priority rank * 2 + ticket rank) * 2**56 + microseconds since the epoch of the wait's start,

so `ORDER BY queue_key, id` is the serving order, a page is a range of an index and a position an indexed
COUNT of the keys before it (gateway/storage/queue.py) instead of a sort or a window over the whole
queue. The key is NULL when the conversation is not queued. Every statement that queues a conversation,
takes it out of the queue or changes its priority or wait sets the key in the same statement, computed by
the database from the row's new values (`key_for`), so it cannot disagree with the columns it is made of.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, and_, case, cast, exists, func, literal_column, or_, update
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from gateway.storage.schema.core import Conversation
from gateway.storage.schema.handoff import TicketRecord
from handoff.queue import Priority
from handoff.state import ConversationState

__all__ = [
    "RANK_STEP",
    "key_for",
    "rank_of",
    "rekey",
    "repair",
    "ticket_after_enqueue",
    "ticket_waiting",
    "wait_start",
]

_C, _T = Conversation.__table__, TicketRecord.__table__
# 2**56 µs is ~2,280 years: the epoch part never reaches the rank bits; (3 + 1) * 2**56 < 2**63.
RANK_STEP = 2**56


class _EpochMicros(FunctionElement[int]):
    """Microseconds since 1970 of a UTCDateTime expression, exact on both databases."""

    type = BigInteger()
    inherit_cache = True


@compiles(_EpochMicros, "sqlite")
def _sqlite_micros(element: Any, compiler: Any, **kw: Any) -> str:
    # SQLAlchemy stores SQLite datetimes as 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC, see UTCDateTime): whole
    # seconds from strftime on the first 19 characters only (given the fraction, strftime rounds it to
    # milliseconds first, so .9995 s and later counted a second too many), then the six digits after the
    # dot as they are (julianday's float loses µs).
    value = compiler.process(list(element.clauses)[0], **kw)
    return (
        f"(CAST(strftime('%s', substr({value}, 1, 19)) AS INTEGER) * 1000000"
        f" + CAST(substr({value}, 21, 6) AS INTEGER))"
    )


@compiles(_EpochMicros, "postgresql")
def _pg_micros(element: Any, compiler: Any, **kw: Any) -> str:
    # Whole seconds, then the microseconds within the second: exact on every version (EXTRACT(EPOCH) of the
    # whole value is numeric only since PostgreSQL 14, a double before, which can miss by a microsecond).
    value = compiler.process(list(element.clauses)[0], **kw)
    return (
        f"(CAST(EXTRACT(EPOCH FROM date_trunc('second', {value})) AS BIGINT) * 1000000"
        f" + CAST(EXTRACT(MICROSECONDS FROM {value}) AS BIGINT) % 1000000)"
    )


def ticket_waiting(conversation_id: Any = _C.c.id) -> Any:
    """True while the conversation has an unresolved 留言 (what makes it a ticket in the queue)."""
    return exists().where(_T.c.conversation_id == conversation_id, _T.c.resolved_at.is_(None))


def ticket_after_enqueue(is_ticket: Any) -> Any:
    """Whether the conversation is a ticket once enqueue has run: its unresolved 留言, or the one enqueue
    inserts (is_ticket and no 留言 at all yet: assignments.py inserts one only then)."""
    return or_(
        ticket_waiting(),
        and_(is_ticket, ~exists().where(_T.c.conversation_id == _C.c.id)),
    )


def key_for(state: Any, priority: Any, ticket: Any, since: Any) -> Any:
    """The key of a row whose new state, priority, ticket-ness and wait start are these SQL expressions
    (a bound parameter for a value the statement sets, the column for one it keeps); state None: queued."""
    # Literals, not parameters: the statement's text is the same on every execution (cached plans).
    rank = case(
        (priority == literal_column(f"'{Priority.HIGH.value}'"), literal_column("0")),
        else_=literal_column("2"),
    )
    rank = rank + case((ticket, literal_column("0")), else_=literal_column("1"))
    key = cast(rank, BigInteger) * literal_column(str(RANK_STEP), BigInteger) + _EpochMicros(since)
    if state is None:
        return key
    return case((state == literal_column(f"'{ConversationState.QUEUED.value}'"), key), else_=None)


def wait_start(queued_at: Any) -> Any:
    """The wait's start of the order: queued_at, else opened_at (rows queued before queued_at existed)."""
    return func.coalesce(queued_at, _C.c.opened_at)


def rank_of(key: int) -> tuple[int, int]:
    """(priority rank, ticket rank) of a key: 0 = high / 留言, as the queue order's first two fields."""
    rank = key // RANK_STEP
    return (0 if rank < 2 else 1), rank % 2


def rekey() -> Any:
    """UPDATE conversations' keys from their own columns (add a WHERE): for rows written by something else
    than kefu's statements, such as the tests' bulk inserts of a long queue."""
    return update(_C).values(
        queue_key=key_for(_C.c.state, _C.c.priority, ticket_waiting(), wait_start(_C.c.queued_at))
    )


def repair() -> Any:
    """UPDATE the keys that disagree with the state: a queued row without a key, a key on a row no longer
    queued. Only a process of a release before the key writes such rows (a rolling upgrade: it queues
    without a key, which no page, position or head would ever show, and assigns or closes without
    clearing it, which would hold a head slot), or a hand-made SQL change; kefu's own statements never do.
    One pass over the queued rows of the state index and the keyed rows of the partial key index."""
    queued = _C.c.state == literal_column(f"'{ConversationState.QUEUED.value}'")
    stale = or_(and_(queued, _C.c.queue_key.is_(None)), and_(_C.c.queue_key.is_not(None), ~queued))
    return rekey().where(stale)
