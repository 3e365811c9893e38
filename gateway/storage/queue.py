"""The queue's reads by bounded queries: positions by indexed COUNT, pages by index range, heads.

The serving order is `handoff.queue.queue_sort_key`: priority (high first), 留言 tickets first, FIFO on
queued_at, then the id — in SQL `ORDER BY queue_key, id` (gateway/storage/serving_key.py). Nothing here
loads the whole queue into Python: a handoff or a queued customer's message costs the same statements at
queue length 10 as at 5,000 (tests/gateway/test_handoff_statements.py counts them); a position counts the
group's index entries before the conversation's key and `GET /api/v1/queue` reads one page off an index.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, and_, bindparam, func, insert, select, tuple_, union_all

from gateway.storage.errors import Conflict
from gateway.storage.handoff_base import HandoffTables
from gateway.storage.schema.core import Conversation, Customer, MessageRecord
from gateway.storage.schema.handoff import TicketRecord
from gateway.storage.schema.sla import SlaNoticeRecord
from gateway.storage.serving_key import rank_of, repair
from gateway.storage.sla_store import mark_notice
from handoff.queue import Priority, QueueItem
from handoff.state import ConversationState

_C, _T = Conversation.__table__, TicketRecord.__table__
_CUSTOMERS, _MESSAGES = Customer.__table__, MessageRecord.__table__
TICKET_FOLLOWUP = "ticket_followup"  # the sla_notices kind that sends "您补充的内容已记录" once per 留言

_DEFAULT_GROUP = bindparam("default_group", type_=_C.c.group_name.type)
_GROUP = func.coalesce(_C.c.group_name, _DEFAULT_GROUP)
_QUEUED_AT = func.coalesce(_C.c.queued_at, _C.c.opened_at)
_IS_QUEUED = _C.c.state == ConversationState.QUEUED.value
_KEY = _C.c.queue_key
_KEYED = _KEY.is_not(None)  # the partial indexes' WHERE: only queued rows have a key


def _position_query() -> Any:
    """Entries of the conversation's group at or before its key: its position (no row: not queued).

    Two indexed COUNTs on ix_conversations_group_queue_key: the rows naming the group, and the rows with
    no group (the default group's) when it is the default; each walks only the keys before its own.
    """
    own = (
        select(_C.c.id.label("id"), _GROUP.label("grp"), _KEY.label("k"))
        .where(_C.c.id == bindparam("conversation_id"), _KEYED)
        .subquery("own")
    )

    def before(group: Any) -> Any:
        at_or_before = tuple_(_KEY, _C.c.id) <= tuple_(own.c.k, own.c.id)
        return select(func.count()).where(_KEYED, group, at_or_before).scalar_subquery()

    named = before(_C.c.group_name == own.c.grp)
    unnamed = before(and_(_C.c.group_name.is_(None), own.c.grp == _DEFAULT_GROUP))
    return select((named + unnamed).label("n")).select_from(own)


_POSITION = _position_query()
POSITION = _POSITION  # also enqueue's, in its unit of work (assignments.py)


_QUEUED_BEFORE = bindparam("queued_before", type_=_C.c.queued_at.type)
_NO_BOUND = 2**63 - 1  # a group with fewer than `per_group` rows: all of them


def _heads_query(before: bool) -> Any:
    """The first `per_group` of every group's queue, in serving order, without ranking the whole queue.

    The named groups come from a loose scan of ix_conversations_group_queue_key (a recursive CTE: one
    probe per group); each group's `per_group`-th (key, id) is one probe of the same index (OFFSET), and
    its rows up to it one range of it. With the first `per_group` rows that name no group (the default
    group's), these few candidates are ranked within their group, as the whole queue used to be.
    """

    def waited(table: Any) -> list[Any]:
        return [func.coalesce(table.c.queued_at, table.c.opened_at) <= _QUEUED_BEFORE] if before else []

    named = _C.c.group_name
    groups = (
        select(func.min(named).label("name")).where(_KEYED, named.is_not(None)).cte("groups", recursive=True)
    )
    following = select(func.min(named)).where(_KEYED, named > groups.c.name).scalar_subquery()
    groups = groups.union_all(select(following).where(groups.c.name.is_not(None)))
    offset = bindparam("per_group_offset", type_=Integer)

    def last(column: Any) -> Any:
        of_group = select(column).where(_KEYED, named == groups.c.name, *waited(_C))
        return of_group.order_by(_KEY, _C.c.id).limit(1).offset(offset).scalar_subquery()

    bounds = (
        select(groups.c.name, last(_KEY).label("k"), last(_C.c.id).label("i"))
        .where(groups.c.name.is_not(None))
        .cte("bounds")
    )
    head = _C.alias("head")
    within = tuple_(head.c.queue_key, head.c.id) <= tuple_(
        func.coalesce(bounds.c.k, _NO_BOUND), func.coalesce(bounds.c.i, _NO_BOUND)
    )
    of_named = select(head.c.id).select_from(
        bounds.join(
            head,
            and_(head.c.group_name == bounds.c.name, head.c.queue_key.is_not(None), within, *waited(head)),
        )
    )
    unnamed = (
        select(_C.c.id)
        .where(_KEYED, named.is_(None), *waited(_C))
        .order_by(_KEY, _C.c.id)
        .limit(bindparam("per_group", type_=Integer))
        .subquery("unnamed")
    )
    candidates = union_all(of_named, select(unnamed.c.id)).subquery("candidates")
    ranked = (
        select(
            _C.c.id.label("id"),
            _GROUP.label("grp"),
            _C.c.priority.label("priority"),
            _KEY.label("qk"),
            _QUEUED_AT.label("qa"),
            func.row_number().over(partition_by=_GROUP, order_by=(_KEY, _C.c.id)).label("pos"),
        )
        .select_from(candidates.join(_C, _C.c.id == candidates.c.id))
        .subquery("ranked")
    )
    return (
        select(ranked)
        .where(ranked.c.pos <= bindparam("per_group", type_=Integer))
        .order_by(ranked.c.qk, ranked.c.id)
    )


_HEADS = _heads_query(before=False)
_HEADS_BEFORE = _heads_query(before=True)
_LENGTH = select(func.count().label("n")).select_from(_C).where(_IS_QUEUED)
_LENGTH_OF = _LENGTH.where(_GROUP.in_(bindparam("groups", expanding=True)))
_FOLLOWUP_DUE = (
    select(_C.c.queued_at)
    .select_from(_C.join(_T, _T.c.conversation_id == _C.c.id))
    .where(_C.c.id == bindparam("conversation_id"), _IS_QUEUED, _T.c.resolved_at.is_(None))
)
# The 留言 follow-up's once-only mark, claimed from the waiting 留言's row itself (handed_off_at = queued_at).
_CLAIM_FOLLOWUP = insert(SlaNoticeRecord.__table__).from_select(
    ["conversation_id", "handed_off_at", "kind", "sent_at"],
    select(
        _C.c.id,
        _C.c.queued_at,
        bindparam("kind", type_=SlaNoticeRecord.__table__.c.kind.type),
        bindparam("sent_at", type_=SlaNoticeRecord.__table__.c.sent_at.type),
    )
    .select_from(_C.join(_T, _T.c.conversation_id == _C.c.id))
    .where(
        _C.c.id == bindparam("conversation_id"),
        _IS_QUEUED,
        _T.c.resolved_at.is_(None),
        _C.c.queued_at.is_not(None),
    ),
)
_QUEUED_AT_OF = select(_C.c.queued_at).where(_C.c.id == bindparam("conversation_id"), _IS_QUEUED)
POSITION_NOTE = (
    "position:"  # the sla_notices kind (+ the place) of "您仍在排队，前面还有 N 位" after a bot answer
)
_LAST_INBOUND_TEXT = (
    select(_MESSAGES.c.text).where(_MESSAGES.c.direction == "in").order_by(_MESSAGES.c.id.desc()).limit(1)
)


def _page_query(groups: bool, after: bool) -> Any:
    """A page in serving order, positions included, without ranking or sorting the whole queue.

    The page is the first `limit` entries of ix_conversations_queue_key after the cursor (a range of the
    index, read in order); only the page's rows are then joined to their customer and last message.
    Within a group the page's rows follow each other in serving order, so a row's position is the group's
    entries at or before the cursor (one grouped COUNT, on later pages only) plus its rank on the page.
    """
    key = tuple_(_KEY, _C.c.id)
    cursor = tuple_(bindparam("after_key", type_=_KEY.type), bindparam("after_id", type_=_C.c.id.type))
    page = select(_C.c.id.label("id"), _GROUP.label("grp"), _KEY.label("qk")).where(_KEYED)
    if groups:
        page = page.where(_GROUP.in_(bindparam("groups", expanding=True)))
    if after:
        page = page.where(key > cursor)
    page = page.order_by(_KEY, _C.c.id).limit(bindparam("limit", type_=Integer)).cte("page")
    order = (page.c.qk, page.c.id)
    rank = func.row_number().over(partition_by=page.c.grp, order_by=order)
    source = page
    if after:
        before = (
            select(_GROUP.label("grp"), func.count().label("n"))
            .where(_KEYED, key <= cursor, _GROUP.in_(select(page.c.grp)))
            .group_by(_GROUP)
            .cte("before")
        )
        source = page.outerjoin(before, before.c.grp == page.c.grp)
        rank = func.coalesce(before.c.n, 0) + rank
    return (
        select(
            page.c.id,
            page.c.grp,
            _C.c.priority,
            page.c.qk,
            _QUEUED_AT.label("qa"),
            rank.label("pos"),
            _C.c.handoff_reason,
            _C.c.channel,
            _CUSTOMERS.c.name.label("customer_name"),
            _CUSTOMERS.c.user_id.label("customer_user_id"),
            _LAST_INBOUND_TEXT.where(_MESSAGES.c.conversation_id == page.c.id)
            .scalar_subquery()
            .label("last_message"),
        )
        .select_from(
            source.join(_C, _C.c.id == page.c.id).outerjoin(_CUSTOMERS, _CUSTOMERS.c.id == _C.c.customer_id)
        )
        .order_by(*order)
    )


_PAGES = {(g, a): _page_query(g, a) for g in (False, True) for a in (False, True)}


@dataclass(frozen=True, slots=True)
class QueuePage:
    """One page of the queue in serving order, each row with its position in its group."""

    rows: list[Mapping[str, Any]]
    next_cursor: str | None


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _cursor(row: Mapping[str, Any]) -> str:
    key = [row["qk"], row["id"]]
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def parse_cursor(cursor: str) -> tuple[int, int]:
    """The (key, id) a cursor names; ValueError for anything that is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        key, cid = json.loads(raw)
        if not all(type(v) is int for v in (key, cid)):
            raise TypeError("not integers")
        if not (0 <= key < 2**63 and 0 < cid < 2**63):  # beyond a BIGINT the driver, not us, would refuse
            raise ValueError("out of range")
    except Exception as exc:  # any malformed cursor is the client's error
        raise ValueError("invalid cursor") from exc
    return key, cid


def position_read(unit: Any, conversation_id: int, default_group: str) -> int | None:
    """`QueueQueries.queue_position` in a read unit of the caller's."""
    rows = unit.db.rows(_POSITION, {"conversation_id": conversation_id, "default_group": default_group})
    return int(rows[0]["n"]) or None if rows else None


def waiting_ticket_read(unit: Any, conversation_id: int) -> bool:
    """`QueueQueries.waiting_ticket` in a read unit of the caller's."""
    return bool(unit.db.rows(_FOLLOWUP_DUE, {"conversation_id": conversation_id}))


class QueueQueries(HandoffTables):
    """Mixed into HandoffDb (gateway/storage/handoff_store.py)."""

    async def _rows(self, statement: Any, params: dict[str, Any]) -> list[Mapping[str, Any]]:
        params.setdefault("default_group", self.default_group)
        return await self.store.read(lambda unit: unit.db.rows(statement, params))

    def _item(self, row: Mapping[str, Any]) -> QueueItem:
        _, ticket_rank = rank_of(row["qk"])
        return QueueItem(
            str(row["id"]), row["grp"], Priority.parse(row["priority"]), _aware(row["qa"]), ticket_rank == 0
        )

    async def queue_position(self, conversation_id: str) -> int | None:
        """1-based place of a queued conversation in its group's queue (one COUNT), None when not queued."""
        return await self.store.read(
            lambda unit: position_read(unit, int(conversation_id), self.default_group)
        )

    async def queue_heads(
        self, per_group: int, *, queued_before: datetime | None = None
    ) -> Sequence[QueueItem]:
        """The first `per_group` items of every group's queue, in serving order (one statement)."""
        if per_group <= 0:
            return []
        if queued_before is None:
            rows = await self._rows(_HEADS, {"per_group": per_group, "per_group_offset": per_group - 1})
        else:
            params = {
                "per_group": per_group,
                "per_group_offset": per_group - 1,
                "queued_before": queued_before,
            }
            rows = await self._rows(_HEADS_BEFORE, params)
        return [self._item(r) for r in rows]

    async def queue_length(self, groups: Collection[str] | None = None) -> int:
        """How many conversations wait (tickets included), of the given groups or all (one COUNT)."""
        if groups is not None and not groups:
            return 0
        if groups is None:
            rows = await self._rows(_LENGTH, {})
        else:
            rows = await self._rows(_LENGTH_OF, {"groups": list(groups)})
        return int(rows[0]["n"]) if rows else 0

    async def repair_queue_keys(self) -> int:
        """Rekeys the rows whose serving key disagrees with their state (serving_key.repair); how many."""
        statement = repair()
        return await self.store.run(lambda unit: unit.db.run(statement))

    async def waiting_ticket(self, conversation_id: int) -> bool:
        """True when the conversation is a 留言 still waiting (see handoff.store.HandoffStore)."""
        return await self.store.read(lambda unit: waiting_ticket_read(unit, conversation_id))

    async def claim_position_note(self, conversation_id: int, position: int, at: datetime) -> bool:
        """True once per place in the queue of a queued conversation (handoff.store.HandoffStore)."""
        rows = await self._rows(_QUEUED_AT_OF, {"conversation_id": conversation_id})
        if not rows or rows[0]["queued_at"] is None:
            return False
        queued_at = _aware(rows[0]["queued_at"])
        return await mark_notice(self.store, conversation_id, queued_at, f"{POSITION_NOTE}{position}", at)

    async def claim_ticket_followup(self, conversation_id: int, at: datetime) -> bool:
        """True once per 留言 (see handoff.store.HandoffStore.claim_ticket_followup).

        One unit: the mark is inserted from the waiting 留言's own row (nothing inserted: no 留言 waits),
        and its primary key refuses a second claim of the same handoff (it used to read the row first).
        """
        params = {"conversation_id": conversation_id, "kind": TICKET_FOLLOWUP, "sent_at": at}
        try:
            inserted = await self.store.run(lambda unit: unit.db.run(_CLAIM_FOLLOWUP, params))
        except Conflict:
            return False
        return inserted == 1

    async def queue_page(
        self, groups: Collection[str] | None, *, limit: int, cursor: str | None = None
    ) -> QueuePage:
        """A page of the queue (of `groups`, or all) after `cursor`; ValueError for a bad cursor."""
        params: dict[str, Any] = {"limit": limit + 1}
        if groups is not None:
            params["groups"] = list(groups)
        if cursor is not None:
            key, cid = parse_cursor(cursor)
            params.update(after_key=key, after_id=cid)
        if groups is not None and not params["groups"]:
            return QueuePage([], None)
        rows = await self._rows(_PAGES[(groups is not None, cursor is not None)], params)
        more = len(rows) > limit
        rows = rows[:limit]
        return QueuePage(rows, _cursor(rows[-1]) if more and rows else None)

    def page_item(self, row: Mapping[str, Any]) -> QueueItem:
        """The QueueItem of a `queue_page` row."""
        return self._item(row)
