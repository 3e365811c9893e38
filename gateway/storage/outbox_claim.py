"""The outbox claim's statements: which due rows a claim may lease, oldest first, and the lease itself.

A row is claimable when it is due and no earlier row of its conversation is still waiting its turn (see
`OutboxQueries.claim_outbox`). The look-up of such an earlier row reads `ix_outbox_live_conversation`
(live rows only, migration 0006); on SQLite a claim checks the oldest CLAIM_WINDOW due rows first
(`claimable`), so its cost does not grow with a backlog (`python -m bench outbox`). The due rows come
from ix_outbox_due, never from a walk of the table in id order (`_oldest_first`): its cost would grow with
the delivered history.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import any_, bindparam, func, literal_column, or_, select, text, update

from gateway.storage.pg_unit import id_array
from gateway.storage.schema.core import OUTBOX_LIVE_SQL, OutboxRecord
from gateway.storage.unit import Db

_OUTBOX = OutboxRecord.__table__


def _oldest_first(ids: Any) -> Any:
    """ORDER BY the outbox's `ids`, oldest first, as an expression no index yields. Ordered by the primary
    key itself, PostgreSQL's planner chose (with a backlog, after ANALYZE) to walk the primary key and
    filter, through the whole delivered history before the first due row: 7-10 ms a claim at 40,000 rows
    delivered, growing with them. This way the due rows come from ix_outbox_due and only they are sorted
    (SQLite plans it so either way)."""
    return ids + literal_column("0")


def _is(status: Any, *values: str) -> Any:
    """`status` is one of `values`, written into the SQL (they are the code's own constants): bound as
    parameters, they hide from PostgreSQL's generic plan that few rows are pending or sending, and it
    planned a scan of the whole table (10-15 ms a claim with 43,000 rows)."""
    return status.in_([literal_column(f"'{value}'") for value in values])


def _due(o: Any, failing: bool) -> list[Any]:
    """The conditions of a due row of the outbox (or of an alias of it: `o` is its columns)."""
    now = bindparam("now")
    due = [
        _is(o.status, "pending", "held") & (o.next_attempt_at <= now),
        _is(o.status, "sending") & (o.locked_until <= now),
    ]
    if failing:
        # `next_attempt_at > cutoff` follows from `created_at > cutoff` (a row is never due before it was
        # written); said, it bounds the failed rows read from ix_outbox_due to those of the last
        # give_up_after, not every failed row ever (those given up stay `failed`, due in the past).
        cutoff = bindparam("cutoff")
        due.append(
            _is(o.status, "failed")
            & (o.next_attempt_at <= now)
            & (o.next_attempt_at > cutoff)
            & (o.created_at > cutoff)
        )
    return due


def _not_skipped(o: Any, skipping: bool) -> list[Any]:
    """[not of the accounts in `skip` ("channel/account")], or nothing to add."""
    return [(o.channel + "/" + o.account).not_in(bindparam("skip", expanding=True))] if skipping else []


def _due_ids(failing: bool, skipping: bool) -> Any:
    """The ids of the due rows (not of the accounts in `skip`), in no particular order."""
    w = _OUTBOX.alias("due_rows").c
    return select(w.id).where(or_(*_due(w, failing)), *_not_skipped(w, skipping))


def _claimable(failing: bool, skipping: bool, *, windowed: bool = False) -> Any:
    """The due rows no earlier row of their conversation holds back (see claim_outbox), oldest first;
    `skipping`: not of the accounts in `skip` ("channel/account"). `windowed` (SQLite): only among the
    first `window` due rows by id (_claimable_on_sqlite says why and when that is all of them)."""
    o = _OUTBOX.c
    now, cutoff = bindparam("now"), bindparam("cutoff")
    earlier = _OUTBOX.alias("earlier")
    e = earlier.c
    waiting = [
        _is(e.status, "pending", "held") & (e.next_attempt_at > now),
        _is(e.status, "sending") & (e.locked_until > now),
    ]
    if failing:
        # A failed row still on its slow schedule holds its conversation too: after a platform outage
        # the customer gets the answers in the order they were written (chaos: api-outage).
        waiting.append(_is(e.status, "failed") & (e.next_attempt_at > now) & (e.created_at > cutoff))
    # The live rows' predicate (implied by `waiting`), in the partial index's own literal words: a planner
    # uses ix_outbox_live_conversation only for a query it can see implies the index's WHERE, and SQLite
    # sees that only in these words (with bound parameters neither database did).
    live = text(f"earlier.{OUTBOX_LIVE_SQL}")
    blocked = (
        select(e.id)
        .where(e.conversation_key == o.conversation_key, e.id < o.id, live, or_(*waiting))
        .exists()
    )
    if windowed:
        due = _due_ids(failing, skipping)
        where = [
            o.id.in_(due.order_by(_oldest_first(due.selected_columns.id)).limit(bindparam("window"))),
            ~blocked,
        ]
        order = o.id  # the window's rows, looked up by the primary key in its order
    else:
        where = [or_(*_due(o, failing)), ~blocked, *_not_skipped(o, skipping)]
        order = _oldest_first(o.id)
    return (
        select(o.id, o.status, o.conversation_key, o.channel, o.account)
        .where(*where)
        .order_by(order)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True, of=_OUTBOX)
    )


def _due_seen(failing: bool, skipping: bool) -> Any:
    """How many due rows there are (of the accounts not in `skip`), counted up to `window`."""
    found = _due_ids(failing, skipping).limit(bindparam("window")).subquery()
    return select(func.count().label("n")).select_from(found)


# (give_up_after given, accounts skipped) → the claim's SELECT; then the lease (LEASE), returning the rows.
_VARIANTS = [(failing, skipping) for failing in (False, True) for skipping in (False, True)]
CLAIMABLE = {(f, s): _claimable(f, s) for f, s in _VARIANTS}
WINDOWED = {(f, s): _claimable(f, s, windowed=True) for f, s in _VARIANTS}
DUE_SEEN = {(f, s): _due_seen(f, s) for f, s in _VARIANTS}
# Due rows a SQLite claim looks at first (see _claimable_on_sqlite).
CLAIM_WINDOW = 200


def _claimable_on_sqlite(db: Db, failing: bool, skipping: bool, params: Mapping[str, Any]) -> list[Any]:
    """The claim's rows on SQLite, checking as few due rows as it can for an earlier row that holds them back.

    CLAIMABLE checks every due row, then sorts them all to take the oldest `limit`: with thousands due (a
    platform that was down, a rush of notices) each claim cost milliseconds of the writer's transaction
    (`python -m bench outbox`). Here only the oldest CLAIM_WINDOW due rows are checked. That is exact when
    there are no more due rows than that (counted first, cheaply: no check, no sort), or when the window
    holds `limit` claimable rows (any row past it is younger); otherwise CLAIMABLE looks at them all.
    """
    windowed = {**params, "window": CLAIM_WINDOW}
    seen = db.rows(DUE_SEEN[failing, skipping], windowed)[0]["n"]
    if not seen:
        return []
    found = db.rows(WINDOWED[failing, skipping], windowed)
    if len(found) < params["limit"] and seen >= CLAIM_WINDOW:
        found = db.rows(CLAIMABLE[failing, skipping], params)  # the window's rows were held back
    return list(found)


_CLAIMED = id_array("claimed")  # the rows a claim selected (PostgreSQL only: see _held_back)


def _held_back(failing: bool) -> Any:
    """PostgreSQL: per conversation of a claim's rows (`claimed`), its first row still to be sent that the
    claim did not select. The claim's SELECT takes a due row only when the earlier rows of its conversation
    are due too, expecting to take them itself; but SKIP LOCKED passes over rows that another process's
    claim has selected and not yet leased, which still read `pending` and due here. Such a row must hold
    its conversation's later rows back exactly as a row being sent does (two processes sent one
    conversation's replies at once, out of order)."""
    o = _OUTBOX.c
    mine = _OUTBOX.alias("mine")
    live = [_is(o.status, "pending", "held", "sending")]
    if failing:
        live.append(_is(o.status, "failed") & (o.created_at > bindparam("cutoff")))
    return (
        select(o.conversation_key, func.min(o.id).label("first"))
        .where(
            o.conversation_key.in_(select(mine.c.conversation_key).where(mine.c.id == any_(_CLAIMED))),
            ~(o.id == any_(_CLAIMED)),
            # The partial index's predicate in its own words (see `blocked` in _claimable): each claimed
            # conversation's live rows are looked up in it, not every live row read to pick theirs.
            text(f"outbox.{OUTBOX_LIVE_SQL}"),
            or_(*live),
        )
        .group_by(o.conversation_key)
    )


HELD_BACK = {failing: _held_back(failing) for failing in (False, True)}
LEASE = (
    update(_OUTBOX)
    .where(_OUTBOX.c.id.in_(bindparam("ids", expanding=True)))
    .values(status="sending", locked_until=bindparam("locked_until"), attempts=_OUTBOX.c.attempts + 1)
    .returning(*_OUTBOX.c)
)


def claimable(db: Db, failing: bool, skipping: bool, params: Mapping[str, Any]) -> list[Any]:
    """The rows a claim may lease (id, status, conversation_key, channel, account), oldest first, at most
    `params["limit"]`; on PostgreSQL locked (SKIP LOCKED) until the unit ends."""
    if db.dialect == "sqlite":
        return _claimable_on_sqlite(db, failing, skipping, params)
    return list(db.rows(CLAIMABLE[failing, skipping], params))
