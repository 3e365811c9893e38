"""A customer's turn stored by a unit of work: their message, the bot's replies, the replies' outbox rows and
the conversation's update.

On SQLite each row is an INSERT on the driver's own thread, a call each. On PostgreSQL each statement is a
round trip, and a round trip costs kefu more CPU than anything else a FAQ message does (the send, the
wake-up that answers it, the protocol: ~50 µs each); the rows depend on each other (a reply names the
message it answers, an outbox row its reply), so they are one statement: INSERTs chained through
data-modifying CTEs, each reading the key the one before it returned, after the conversation's UPDATE.

Each INSERT selects its row FROM the CTE before it, the first FROM the UPDATE: when the UPDATE matches no
row (the conversation is gone, or, for a unit run without a transaction, it changed since the unit read
it: its row version, gateway/storage/messages.py), nothing at all is written, so the one statement is the
whole unit of work by itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Update, bindparam, func, literal_column, select

from gateway.storage.schema.core import MessageRecord, OutboxRecord
from gateway.storage.unit import Db

_MESSAGES = MessageRecord.__table__
_OUTBOX = OutboxRecord.__table__
_INSERT_MESSAGE = _MESSAGES.insert()
_INSERT_OUTBOX = _OUTBOX.insert()
_MESSAGE_COLUMNS = [c for c in _MESSAGES.columns if c.key != "id"]
_OUTBOX_COLUMNS = [c for c in _OUTBOX.columns if c.key != "id"]
# (replies, with outbox rows, the conversation's UPDATE) → the statement. A turn has a handful of replies at
# most, and the UPDATEs are built once per column set (messages._update_conversation): a few dozen in all.
_TURNS: dict[tuple[int, bool, Update | None], Any] = {}
_TURN_IDS: set[int] = set()  # the statements above (kept for ever, so their ids are never reused)


def is_turn(statement: Any) -> bool:
    """Whether `statement` is a turn's statement (a SELECT that writes, through its CTEs)."""
    return id(statement) in _TURN_IDS


def store_turn(
    db: Db,
    inbound: Mapping[str, Any],
    replies: Sequence[Mapping[str, Any]],
    boxes: Sequence[Mapping[str, Any]] | None,
    update: tuple[Update, Mapping[str, Any]] | None = None,
) -> tuple[list[int], list[int]]:
    """Insert the rows (column values; replies' reply_to and boxes' message_id are filled in here) and run
    `update` (an UPDATE of one conversation by its key, RETURNING it on PostgreSQL, and its parameters;
    LookupError when it matched no row). The messages' keys (the inbound first, then the replies in order) and the outbox rows' keys."""
    if boxes is not None and len(boxes) != len(replies):
        raise ValueError("one outbox row per reply")
    if db.dialect != "postgresql":
        ids, box_ids = _one_by_one(db, inbound, replies, boxes)
        if update is not None and db.run(*update) == 0:
            raise LookupError("no such conversation")
        return ids, box_ids
    params: dict[str, Any] = {f"m0_{name}": value for name, value in inbound.items()}
    for i, reply in enumerate(replies, start=1):
        params.update((f"m{i}_{name}", value) for name, value in reply.items() if name != "reply_to")
        if boxes is not None:
            box = boxes[i - 1]
            params.update((f"o{i}_{name}", value) for name, value in box.items() if name != "message_id")
    if update is not None:
        params.update(update[1])  # its names (set_…, conversation_id) are not prefixed like the rows'
    statement = _turn_statement(len(replies), boxes is not None, None if update is None else update[0])
    found = db.rows(statement, params)
    if not found:  # the cross join with the UPDATE's RETURNING is empty: it matched no conversation
        raise LookupError("no such conversation")
    row = found[0]
    ids = [int(row[f"m{i}"]) for i in range(len(replies) + 1)]
    box_ids = [] if boxes is None else [int(row[f"o{i}"]) for i in range(1, len(replies) + 1)]
    return ids, box_ids


def _one_by_one(
    db: Db,
    inbound: Mapping[str, Any],
    replies: Sequence[Mapping[str, Any]],
    boxes: Sequence[Mapping[str, Any]] | None,
) -> tuple[list[int], list[int]]:
    ids = [db.insert(_INSERT_MESSAGE, inbound)]
    box_ids = []
    for i, reply in enumerate(replies):
        ids.append(db.insert(_INSERT_MESSAGE, {**reply, "reply_to": ids[0]}))
        if boxes is not None:
            box_ids.append(db.insert(_INSERT_OUTBOX, {**boxes[i], "message_id": ids[-1]}))
    return ids, box_ids


def _turn_statement(replies: int, boxes: bool, update: Update | None) -> Any:
    """WITH c AS (UPDATE conversation RETURNING id), m0 AS (INSERT message SELECT … FROM c), m1 AS (INSERT
    reply … reply_to (SELECT id FROM m0) FROM m0), o1 AS (INSERT outbox … message_id m1.id FROM m1), …
    SELECT every key FROM all of them. Reply i draws its key from m{i-1}'s row, outbox row i from o{i-1}'s:
    the keys keep the order of the question and its replies (a conversation reads, and the outbox sends, in
    key order). Without `update` the message is inserted whatever happens."""
    cache_key = (replies, boxes, update)
    statement = _TURNS.get(cache_key)
    if statement is not None:
        return statement
    keys = []
    gate = None
    if update is not None:
        gate = update.cte("c")
        keys.append(gate.c.id.label("c"))
    inbound = _insert_cte(_MESSAGES, _MESSAGE_COLUMNS, "m0", {}, gate)
    keys.append(inbound.c.id.label("m0"))
    previous, previous_box = inbound, None
    for i in range(1, replies + 1):
        reply = _insert_cte(
            _MESSAGES,
            _MESSAGE_COLUMNS,
            f"m{i}",
            {"id": _key_after(_MESSAGES, previous), "reply_to": select(inbound.c.id).scalar_subquery()},
            previous,
        )
        keys.append(reply.c.id.label(f"m{i}"))
        if boxes:
            computed = {"message_id": reply.c.id}
            if previous_box is not None:
                computed["id"] = _key_after(_OUTBOX, previous_box)
            previous_box = _insert_cte(_OUTBOX, _OUTBOX_COLUMNS, f"o{i}", computed, reply)
            keys.append(previous_box.c.id.label(f"o{i}"))
        previous = reply
    statement = select(*keys)
    _TURNS[cache_key] = statement
    _TURN_IDS.add(id(statement))
    return statement


def _key_after(table: Any, previous: Any) -> Any:
    """(SELECT nextval(<the table's key sequence>) FROM previous): a key drawn only once `previous` produced
    its row, so after its key. (A plain column default is drawn when PostgreSQL builds the row, in whatever
    order its join of the CTEs reads them: a reply got a key below its question's with many CTEs, where the
    planner's genetic search takes over, or with `geqo_threshold` low.)"""
    sequence = func.pg_get_serial_sequence(literal_column(f"'{table.name}'"), literal_column("'id'"))
    return select(func.nextval(sequence)).select_from(previous).scalar_subquery()


def _insert_cte(table: Any, columns: list[Any], name: str, computed: dict[str, Any], gate: Any) -> Any:
    """INSERT one row SELECTed FROM `gate` (none when the gate has no row), or of VALUES without a gate."""
    values = {
        c.key: computed[c.key] if c.key in computed else bindparam(f"{name}_{c.key}", type_=c.type)
        for c in columns
    }
    values.update((key, value) for key, value in computed.items() if key not in values)  # the key, if drawn
    if gate is None:
        return table.insert().values(values).returning(table.c.id).cte(name)
    row = select(*(value.label(key) for key, value in values.items())).select_from(gate)
    return table.insert().from_select(list(values), row).returning(table.c.id).cte(name)
