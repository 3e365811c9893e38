"""Slots and the open form of each conversation key (issue 15: custom actions and forms).

Two tables (`storage/schema/slots.py`, created by migration 0001): `conversation_slots` (one row per key and slot: its value and when it was set, for the slot's TTL) and
`conversation_forms` (at most one row per key: the form being filled and the slot asked for last).
Keyed by the conversation key (the action tracker's `sender_id`), so an order number given yesterday is
still known today unless its `ttl_minutes` ran out. The functions are sync over a `Unit`, so the writes
commit in the message's own unit of work, with its replies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, insert, select

from gateway.storage.messages import Unit, _utc
from gateway.storage.schema.core import MessageRecord
from gateway.storage.schema.slots import ConversationFormRecord, ConversationSlotRecord

HISTORY_LIMIT = 10


@dataclass(frozen=True, slots=True)
class StoredSlot:
    """A slot as stored."""

    name: str
    value: Any
    set_at: datetime


@dataclass(frozen=True, slots=True)
class StoredForm:
    """A form as stored."""

    entry_id: str
    action: str
    form: str
    required: tuple[str, ...]
    requested: str | None
    retries: int
    asked_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """An earlier message of the key (for the tracker's events)."""

    direction: str
    text: str
    entry_id: str | None
    created_at: datetime


_SLOTS = ConversationSlotRecord.__table__
_FORMS = ConversationFormRecord.__table__
_MESSAGES = MessageRecord.__table__

_LOAD_SLOTS = select(_SLOTS).where(_SLOTS.c.conversation_key == bindparam("key"))
_LOAD_FORM = select(_FORMS).where(_FORMS.c.conversation_key == bindparam("key"))
_DELETE_SLOT = delete(_SLOTS).where(
    _SLOTS.c.conversation_key == bindparam("key"), _SLOTS.c.name == bindparam("slot_name")
)
_INSERT_SLOT = insert(_SLOTS)
_DELETE_FORM = delete(_FORMS).where(_FORMS.c.conversation_key == bindparam("key"))
_INSERT_FORM = insert(_FORMS)
_HISTORY = (
    select(_MESSAGES.c.direction, _MESSAGES.c.text, _MESSAGES.c.entry_id, _MESSAGES.c.created_at)
    .where(_MESSAGES.c.conversation_key == bindparam("key"))
    .order_by(_MESSAGES.c.id.desc())
    .limit(HISTORY_LIMIT)
)


def load_slots(unit: Unit, key: str) -> list[StoredSlot]:
    """Every stored slot of a conversation key (expired ones included: the caller applies TTLs)."""
    return [
        StoredSlot(row["name"], (row["value"] or {}).get("v"), row["set_at"])
        for row in unit.db.rows(_LOAD_SLOTS, {"key": key})
    ]


def load_form(unit: Unit, key: str) -> StoredForm | None:
    """The form the key is filling, or None."""
    rows = unit.db.rows(_LOAD_FORM, {"key": key})
    if not rows:
        return None
    row = rows[0]
    return StoredForm(
        row["entry_id"],
        row["action"],
        row["form"],
        tuple(row["required"] or ()),
        row["requested"],
        int(row["retries"] or 0),
        row["asked_at"],
    )


def history(unit: Unit, key: str) -> list[HistoryRow]:
    """The key's last few messages, oldest first."""
    rows = unit.db.rows(_HISTORY, {"key": key})
    return [HistoryRow(r["direction"], r["text"], r["entry_id"], r["created_at"]) for r in reversed(rows)]


def set_slots(unit: Unit, key: str, values: dict[str, Any], now: datetime) -> None:
    """Set (or, with None, clear) slots of a key."""
    now = _utc(now)
    for name, value in values.items():
        unit.db.run(_DELETE_SLOT, {"key": key, "slot_name": name})
        if value is not None:
            unit.db.run(
                _INSERT_SLOT, {"conversation_key": key, "name": name, "value": {"v": value}, "set_at": now}
            )


def set_form(unit: Unit, key: str, form: StoredForm | None, now: datetime) -> None:
    """Replace the key's form (None: the key is in no form)."""
    unit.db.run(_DELETE_FORM, {"key": key})
    if form is not None:
        unit.db.run(
            _INSERT_FORM,
            {
                "conversation_key": key,
                "entry_id": form.entry_id,
                "action": form.action,
                "form": form.form,
                "required": list(form.required),
                "requested": form.requested,
                "retries": form.retries,
                "asked_at": _utc(now),
            },
        )
