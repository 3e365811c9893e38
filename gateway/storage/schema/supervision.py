"""排班 and 质检 tables: shifts, shift_swaps (issue 19), qa_results and qa_pending, on the same metadata as
core.py."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.storage.schema.core import Base, UTCDateTime

__all__ = ["QaPendingRecord", "QaResultRecord", "ShiftRecord", "ShiftSwapRecord"]


class ShiftRecord(Base):
    """One agent on duty for one skill group from start_at to end_at; `breaks` as [[start, end], …] ISO."""

    __tablename__ = "shifts"
    __table_args__ = (Index("ix_shifts_start", "start_at"), Index("ix_shifts_agent", "agent_id", "start_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    group: Mapped[str] = mapped_column("group_name", String(64))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime())
    end_at: Mapped[datetime] = mapped_column(UTCDateTime())
    breaks: Mapped[list[list[str]] | None] = mapped_column(JSON)
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ShiftSwapRecord(Base):
    """A request to hand a shift to a colleague: pending until a supervisor approves or rejects it."""

    __tablename__ = "shift_swaps"
    __table_args__ = (Index("ix_shift_swaps_requester", "requester_id", "shift_start"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    shift_id: Mapped[int] = mapped_column(ForeignKey("shifts.id"))
    requester_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    with_agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    # The shift's start when asked: "swaps per month" counts by it, even after the shift was deleted.
    shift_start: Mapped[datetime] = mapped_column(UTCDateTime())
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)


class QaResultRecord(Base):
    """The 质检 score of one closed human conversation; `review` open/confirmed/dismissed when flagged."""

    __tablename__ = "qa_results"
    __table_args__ = (Index("ix_qa_results_closed", "closed_at"),)

    conversation_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[int | None] = mapped_column(Integer)
    group: Mapped[str | None] = mapped_column("group_name", String(64))
    closed_at: Mapped[datetime] = mapped_column(UTCDateTime())
    score: Mapped[int] = mapped_column(Integer)
    max_score: Mapped[int] = mapped_column(Integer)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)
    hits: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    rules_version: Mapped[str | None] = mapped_column(String(32))
    scored_at: Mapped[datetime] = mapped_column(UTCDateTime())
    review: Mapped[str | None] = mapped_column(String(16))
    review_note: Mapped[str | None] = mapped_column(Text)
    reviewed_by: Mapped[str | None] = mapped_column(String(64))
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class QaPendingRecord(Base):
    """A conversation whose human part ended (its close, `assignments.close`) and that 质检 may still have
    to score. The scoring job reads these, not every conversation ever closed: that look-up grew with the
    history, every round (migration 0007). Removed once scored."""

    __tablename__ = "qa_pending"

    conversation_id: Mapped[int] = mapped_column(Integer, primary_key=True)
