"""Tables of custom actions (issue 15): the slots and the open form of each conversation key."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from gateway.storage.schema.core import Base, UTCDateTime


class ConversationSlotRecord(Base):
    """One filled slot of a conversation key."""

    __tablename__ = "conversation_slots"

    conversation_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # {"v": value}: JSON null would be ambiguous with "no value" on some drivers.
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    set_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ConversationFormRecord(Base):
    """The form a conversation key is filling, if any."""

    __tablename__ = "conversation_forms"

    conversation_key: Mapped[str] = mapped_column(String(255), primary_key=True)
    entry_id: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(128))
    form: Mapped[str] = mapped_column(String(128))
    required: Mapped[list[str]] = mapped_column(JSON)
    requested: Mapped[str | None] = mapped_column(String(64))
    retries: Mapped[int] = mapped_column(Integer, default=0)
    # When kefu last asked (the form is dropped after actions.form_ttl_minutes without an answer).
    asked_at: Mapped[datetime] = mapped_column(UTCDateTime())
