"""A system notice to a customer as one unit of work: addressing, the message and its outbox row.

Why one unit: a notice (queue position, 留言 confirmation, agent joined) used to cost two awaited reads and a
write transaction of its own (BEGIN IMMEDIATE outside the group commit on SQLite) for every handoff and
every queued customer's message. As a unit it rides the group commit's trip on SQLite and is one
transaction of three statements on PostgreSQL.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam, select

from gateway.storage.messages import Unit
from gateway.storage.schema.core import Conversation, MessageRecord

_CONVERSATIONS = Conversation.__table__
_MESSAGES = MessageRecord.__table__
# The conversation's addressing and its latest inbound message's target, in one statement (the
# ix_messages_conversation index answers the subquery with one row).
_ADDRESS = select(
    _CONVERSATIONS.c.state,
    _CONVERSATIONS.c.channel,
    _CONVERSATIONS.c.account,
    _CONVERSATIONS.c.conversation_key,
    select(_MESSAGES.c.target)
    .where(_MESSAGES.c.conversation_id == _CONVERSATIONS.c.id, _MESSAGES.c.direction == "in")
    .order_by(_MESSAGES.c.id.desc())
    .limit(1)
    .scalar_subquery()
    .label("target"),
).where(_CONVERSATIONS.c.id == bindparam("conversation_id"))


def store_notice(
    unit: Unit,
    conversation_id: int,
    text: str,
    sender: str,
    sender_name: str | None,
    now: datetime,
    outbox_now: datetime,
    delay: timedelta | None,
    while_queued: bool = False,
) -> int | None:
    """Store `text` as an outbound message and queue it (due `delay` from `outbox_now`); its id, or None
    when there is no such conversation (`while_queued`: 0, nothing stored, when it is no longer queued)."""
    rows = unit.db.rows(_ADDRESS, {"conversation_id": conversation_id})
    if not rows:
        return None
    address = rows[0]
    if while_queued and address["state"] != "queued":
        return 0
    target = dict(address["target"] or {})
    target.pop("channel_msg_id", None)  # a later push is not a reply to one platform message
    common = {
        "channel": address["channel"],
        "account": address["account"],
        "conversation_key": address["conversation_key"],
    }
    row = unit.add_message(
        **common,
        conversation_id=conversation_id,
        direction="out",
        sender=sender,
        sender_name=sender_name,
        text=text,
        target=target,
        created_at=now,
    )
    unit.add_outbox(
        **common,
        text=text,
        sender=sender,
        target=target,
        now=outbox_now,
        message_id=row.id,
        status="pending",
        next_attempt_at=outbox_now + delay if delay else outbox_now,
    )
    return row.id
