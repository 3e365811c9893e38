"""The plain rows the Store returns (conversations, messages, outbox rows) and their mappers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from gateway.storage.schema.core import (
    OutboxRecord,
)
from handoff.state import ConversationState

# held: written with the replies in the message's own transaction, waiting for the adapter's passive-reply
# decision (cancelled: the passive reply carried it; pending: it goes out through the worker; a held row
# nobody decided about is sent when its hold expires, e.g. after a crash).
OUTBOX_STATUSES = ("held", "pending", "sending", "sent", "failed", "undeliverable", "cancelled")


def utcnow() -> datetime:
    """Now, timezone-aware UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class ConversationRow:
    """A stored conversation."""

    id: int
    customer_id: int
    channel: str
    account: str
    conversation_key: str
    state: ConversationState
    priority: str
    handoff_reason: str | None
    group: str | None
    miss_streak: int
    opened_at: datetime
    last_activity_at: datetime
    queued_at: datetime | None
    closed_at: datetime | None
    closed_reason: str | None
    kb_version: str | None


@dataclass(frozen=True, slots=True)
class MessageRow:
    """A stored message, inbound (from the customer) or outbound (bot, agent or system)."""

    id: int
    conversation_id: int
    conversation_key: str
    channel: str
    account: str
    direction: str
    sender: str
    sender_name: str | None
    text: str
    kind: str
    channel_msg_id: str | None
    reply_to: int | None
    decision: str | None
    reason: str | None
    entry_id: str | None
    confidence: float | None
    kb_version: str | None
    suggestions: tuple[str, ...]
    target: Mapping[str, Any]
    created_at: datetime
    attachment: Mapping[str, Any] | None = None  # gateway.message.Attachment's stored form


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One asynchronous send and where it stands."""

    id: int
    channel: str
    account: str
    conversation_key: str
    text: str
    sender: str
    target: Mapping[str, Any]
    status: str
    attempts: int
    next_attempt_at: datetime
    locked_until: datetime | None
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    message_id: int | None
    # Claimed from an expired `sending` lease: the previous attempt may have reached the platform.
    resumed: bool = False
    attachment: Mapping[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict (datetimes as ISO 8601)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "resumed":
                continue
            value = getattr(self, f.name)
            out[f.name] = value.isoformat() if isinstance(value, datetime) else value
        out["target"] = dict(self.target)
        return out


# OutboxRow's stored fields (all but `resumed`, which only a claim knows), named as the table's columns.
_OUTBOX_FIELDS = tuple(f.name for f in fields(OutboxRow) if f.name != "resumed")


def outbox_row(row: OutboxRecord) -> OutboxRow:
    """An outbox row from its ORM record."""
    return outbox_row_from({name: getattr(row, name) for name in _OUTBOX_FIELDS})


def outbox_row_from(m: Mapping[str, Any]) -> OutboxRow:
    """An outbox row from a unit of work's result row (column key → value)."""
    values = {name: m[name] for name in _OUTBOX_FIELDS}
    values["target"] = dict(values["target"] or {})
    return OutboxRow(**values)


def conversation_from(m: Mapping[str, Any]) -> ConversationRow:
    return ConversationRow(
        id=m["id"],
        customer_id=m["customer_id"],
        channel=m["channel"],
        account=m["account"],
        conversation_key=m["conversation_key"],
        state=ConversationState(m["state"]),
        priority=m["priority"],
        handoff_reason=m["handoff_reason"],
        group=m["group_name"],
        miss_streak=m["miss_streak"],
        opened_at=m["opened_at"],
        last_activity_at=m["last_activity_at"],
        queued_at=m["queued_at"],
        closed_at=m["closed_at"],
        closed_reason=m["closed_reason"],
        kb_version=m["kb_version"],
    )


def message_from(m: Mapping[str, Any]) -> MessageRow:
    return MessageRow(
        id=m["id"],
        conversation_id=m["conversation_id"],
        conversation_key=m["conversation_key"],
        channel=m["channel"],
        account=m["account"],
        direction=m["direction"],
        sender=m["sender"],
        sender_name=m["sender_name"],
        text=m["text"],
        kind=m["kind"],
        channel_msg_id=m["channel_msg_id"],
        reply_to=m["reply_to"],
        decision=m["decision"],
        reason=m["reason"],
        entry_id=m["entry_id"],
        confidence=m["confidence"],
        kb_version=m["kb_version"],
        suggestions=tuple(m["suggestions"] or ()),
        target=dict(m["target"] or {}),
        created_at=m["created_at"],
        attachment=m.get("attachment"),
    )


# Built once, executed with parameters: constructing a statement per call costs more than running it, and
# SqliteDb compiles each statement object once.
