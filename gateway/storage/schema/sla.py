"""SLA tables: `sla_notices` (the once-only notice marks) and `follow_ups` (complaint 回访 tickets).

Their queries are in gateway/storage/sla_store.py; the tables sit with the others so that the models'
metadata (migrations, autogenerate) is complete without importing the stores.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.storage.schema.core import Base, UTCDateTime

__all__ = ["FollowUpRecord", "SlaNoticeRecord"]


class SlaNoticeRecord(Base):
    """An automatic SLA notice that was sent (or is being sent) for one handoff of a conversation."""

    __tablename__ = "sla_notices"

    conversation_id: Mapped[int] = mapped_column(primary_key=True)
    handed_off_at: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime())


class FollowUpRecord(Base):
    """A complaint's follow-up (回访) ticket: due `due_at`; overdue (red) while open past it."""

    __tablename__ = "follow_ups"
    __table_args__ = (UniqueConstraint("conversation_id", name="uq_follow_ups_conversation"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(Integer)
    group: Mapped[str | None] = mapped_column("group_name", String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_by: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
