"""Handoff tables on the same metadata as models.py: agents, assignments, notes, canned replies, CSAT,
留言 tickets and the agent event log (the WebSocket's replayable sequence)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.storage.schema.core import Base, UTCDateTime


class AgentRecord(Base):
    """A human agent; the API token is stored only as its sha256 (handoff.agents.hash_token)."""

    __tablename__ = "agents"
    __table_args__ = (
        UniqueConstraint("name", name="uq_agents_name"),
        UniqueConstraint("token_hash", name="uq_agents_token_hash"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(16), default="agent")
    groups: Mapped[list[str]] = mapped_column(JSON, default=list)
    max_chats: Mapped[int] = mapped_column(Integer, default=5)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    token_hash: Mapped[str] = mapped_column(String(64))
    # What the agent chose (online/away); the effective presence also needs a fresh heartbeat.
    presence: Mapped[str] = mapped_column(String(16), default="offline")
    last_heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AssignmentRecord(Base):
    """Who holds a conversation. One row per conversation (the primary key): never assigned twice.

    `active` is false once the human part ended (closed, handed back, transferred to a group queue);
    the row is kept so a closed conversation still names its last agent.
    """

    __tablename__ = "assignments"
    __table_args__ = (
        Index("ix_assignments_agent_active", "agent_id", "active"),
        Index("ix_assignments_group_auto", "group_name", "auto", "assigned_at"),
    )

    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    group: Mapped[str | None] = mapped_column("group_name", String(64))
    auto: Mapped[bool] = mapped_column(Boolean, default=False)  # the assigner chose (round-robin cursor)
    assigned_by: Mapped[str | None] = mapped_column(String(64))
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime())
    first_response_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_agent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    tags: Mapped[list[str] | None] = mapped_column(JSON)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class NoteRecord(Base):
    """An internal note on a conversation: agents only, never sent to the customer."""

    __tablename__ = "notes"
    __table_args__ = (Index("ix_notes_conversation", "conversation_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    text: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CannedReplyRecord(Base):
    """A canned reply (话术); `group` NULL = offered to every group."""

    __tablename__ = "canned_replies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    group: Mapped[str | None] = mapped_column("group_name", String(64))
    created_by: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CsatRecord(Base):
    """The satisfaction question asked after a close, and the answer (rating NULL = still awaited)."""

    __tablename__ = "csat"

    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"), primary_key=True)
    asked_at: Mapped[datetime] = mapped_column(UTCDateTime())
    rating: Mapped[int | None] = mapped_column(Integer)
    raw_text: Mapped[str | None] = mapped_column(Text)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The customer wrote something that was not a rating: stop waiting, so a later "5" is a question again.
    skipped: Mapped[bool] = mapped_column(Boolean, default=False)


class TicketRecord(Base):
    """A 留言: queued while nobody of the group was online; agents see these first."""

    __tablename__ = "tickets"
    __table_args__ = (UniqueConstraint("conversation_id", name="uq_tickets_conversation"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    group: Mapped[str] = mapped_column("group_name", String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AgentEventRecord(Base):
    """One console event; `seq` orders them across processes and restarts (WS resume replays after it).

    Audience: `agent_id` set = that agent (and supervisors); else `group` set = its members (and
    supervisors); neither = supervisors only.
    """

    __tablename__ = "agent_events"
    __table_args__ = (Index("ix_agent_events_created", "created_at"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(32))
    conversation_id: Mapped[int | None] = mapped_column(Integer)
    agent_id: Mapped[int | None] = mapped_column(Integer)
    group: Mapped[str | None] = mapped_column("group_name", String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class CustomerTagRecord(Base):
    """A tag an agent put on a customer (VIP, 老客户, 易投诉…), shown in the console's customer panel."""

    __tablename__ = "customer_tags"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_by: Mapped[int | None] = mapped_column(ForeignKey("agents.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
