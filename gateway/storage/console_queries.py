"""The agent console's customer panel and history search: customer tags, and a bounded message search.

The search is LIKE with escaping (no FTS: the same SQL on SQLite and PostgreSQL), bounded three ways:
only conversations the agent may open (the same rule as `handoff.permissions.can_view`: their own, current
or last, and their groups' queue; supervisors and admins every one), only the latest `SEARCH_WINDOW`
messages (a primary-key range), and a page of `limit` hits with a keyset cursor (`before` = the last hit's
message id), newest first.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, delete, func, insert, or_, select
from sqlalchemy.exc import IntegrityError

from gateway.storage.errors import Conflict
from gateway.storage.rows import utcnow
from gateway.storage.schema.core import Conversation, Customer, MessageRecord
from gateway.storage.schema.handoff import AssignmentRecord, CustomerTagRecord
from gateway.storage.store import Store

SEARCH_WINDOW = 500_000  # the latest messages searched: a bound on the scan, whatever the history's size
MAX_TAGS = 20
TAG_MAX = 32


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose conversations a search covers: everything (supervisors, admins), or an agent's own and queues."""

    agent_id: int | None  # None = every conversation
    groups: Collection[str] = ()


@dataclass(frozen=True, slots=True)
class Hit:
    """One message that matched, with its conversation and customer."""

    message_id: int
    conversation_id: int
    direction: str
    sender: str
    text: str
    created_at: datetime
    channel: str
    state: str
    customer_name: str | None


def like_pattern(query: str) -> str:
    r"""`%query%` with LIKE's own characters escaped (`\` is the escape character)."""
    escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _visible(scope: Scope):  # type: ignore[no-untyped-def]
    """The conversations of the scope as a subquery of ids (can_view's rule in SQL)."""
    own = (
        select(AssignmentRecord.conversation_id)
        .join(Conversation, Conversation.id == AssignmentRecord.conversation_id)
        .where(
            AssignmentRecord.agent_id == scope.agent_id,
            or_(AssignmentRecord.active.is_(True), Conversation.state == "closed"),
        )
    )
    queued = select(Conversation.id).where(
        Conversation.state == "queued", Conversation.group.in_(list(scope.groups))
    )
    return own.union(queued)


async def search_messages(
    store: Store, query: str, scope: Scope, *, limit: int = 20, before: int | None = None
) -> tuple[list[Hit], int | None]:
    """(hits newest first, the next page's `before` or None) for messages containing `query`."""
    statement = (
        select(
            MessageRecord.id,
            MessageRecord.conversation_id,
            MessageRecord.direction,
            MessageRecord.sender,
            MessageRecord.text,
            MessageRecord.created_at,
            Conversation.channel,
            Conversation.state,
            Customer.name,
        )
        .join(Conversation, Conversation.id == MessageRecord.conversation_id)
        .join(Customer, Customer.id == Conversation.customer_id)
        .where(
            MessageRecord.text.like(like_pattern(query), escape="\\"),
            MessageRecord.id
            > select(func.coalesce(func.max(MessageRecord.id), 0) - SEARCH_WINDOW).scalar_subquery(),
        )
        .order_by(MessageRecord.id.desc())
        .limit(limit + 1)
    )
    if before is not None:
        statement = statement.where(MessageRecord.id < before)
    if scope.agent_id is not None:
        statement = statement.where(MessageRecord.conversation_id.in_(_visible(scope)))
    async with store.engine.connect() as conn:
        rows = list(await conn.execute(statement))
    hits = [Hit(r[0], r[1], r[2], r[3], r[4], _aware(r[5]), r[6], r[7], r[8]) for r in rows[:limit]]
    return hits, (hits[-1].message_id if len(rows) > limit and hits else None)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def customer_tags(store: Store, customer_id: int) -> list[str]:
    """The customer's tags in the order they were added."""
    statement = (
        select(CustomerTagRecord.tag)
        .where(CustomerTagRecord.customer_id == customer_id)
        .order_by(CustomerTagRecord.created_at, CustomerTagRecord.tag)
    )
    async with store.engine.connect() as conn:
        return [r[0] for r in await conn.execute(statement)]


async def set_customer_tags(
    store: Store, customer_id: int, tags: Sequence[str], agent_id: int | None
) -> list[str]:
    """Replace the customer's tags (kept ones keep their time, so their order); returns the new list."""
    wanted = list(dict.fromkeys(tags))
    try:
        await _replace_tags(store, customer_id, wanted, agent_id)
    except IntegrityError as exc:  # two agents added the same tag at the same moment
        raise Conflict(str(exc.orig)) from exc
    return await customer_tags(store, customer_id)


async def _replace_tags(store: Store, customer_id: int, wanted: list[str], agent_id: int | None) -> None:
    now = utcnow()
    async with store.write_lock(), store.engine.begin() as conn:
        have = {
            r[0]
            for r in await conn.execute(
                select(CustomerTagRecord.tag).where(CustomerTagRecord.customer_id == customer_id)
            )
        }
        gone = have - set(wanted)
        if gone:
            await conn.execute(
                delete(CustomerTagRecord).where(
                    and_(CustomerTagRecord.customer_id == customer_id, CustomerTagRecord.tag.in_(gone))
                )
            )
        new = [t for t in wanted if t not in have]
        if new:
            await conn.execute(
                insert(CustomerTagRecord),
                [
                    # A microsecond apart: tags added together keep the order they were given in.
                    {
                        "customer_id": customer_id,
                        "tag": t,
                        "created_by": agent_id,
                        "created_at": now + timedelta(microseconds=i),
                    }
                    for i, t in enumerate(new)
                ],
            )
