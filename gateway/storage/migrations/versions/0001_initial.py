"""the schema of kefu before migrations (every table the models declared, as create_all made them)

Revision ID: 0001
Revises:
Create Date: 2026-12-06

Frozen here as plain tables, not the models (which move on): `upgrade` creates them, and env.py's
adoption of a database made by `create_all` calls `complete_legacy`, which adds what an older kefu had
not created yet (tables and indexes that came later) before the database is stamped at this revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.engine import Connection

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

METADATA = sa.MetaData()


def _columns(table: str, *names: str) -> list[sa.Column[object]]:
    return [METADATA.tables[table].c[name] for name in names]


sa.Table(
    "agent_events",
    METADATA,
    sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
    sa.Column("type", sa.String(length=32), nullable=False),
    sa.Column("conversation_id", sa.Integer(), nullable=True),
    sa.Column("agent_id", sa.Integer(), nullable=True),
    sa.Column("group_name", sa.String(length=64), nullable=True),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("seq"),
)
sa.Index("ix_agent_events_created", *_columns("agent_events", "created_at"))
sa.Table(
    "agents",
    METADATA,
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("name", sa.String(length=64), nullable=False),
    sa.Column("role", sa.String(length=16), nullable=False),
    sa.Column("groups", sa.JSON(), nullable=False),
    sa.Column("max_chats", sa.Integer(), nullable=False),
    sa.Column("enabled", sa.Boolean(), nullable=False),
    sa.Column("token_hash", sa.String(length=64), nullable=False),
    sa.Column("presence", sa.String(length=16), nullable=False),
    sa.Column("last_heartbeat_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_assigned_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("name", name="uq_agents_name"),
    sa.UniqueConstraint("token_hash", name="uq_agents_token_hash"),
)
sa.Table(
    "audit_log",
    METADATA,
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("what", sa.String(length=64), nullable=False),
    sa.Column("who", sa.String(length=128), nullable=False),
    sa.Column("details", sa.JSON(), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("id"),
)
sa.Index("ix_audit_created", *_columns("audit_log", "created_at"))
sa.Table(
    "channel_cursors",
    METADATA,
    sa.Column("channel", sa.String(length=32), nullable=False),
    sa.Column("account", sa.String(length=64), nullable=False),
    sa.Column("scope", sa.String(length=128), nullable=False),
    sa.Column("cursor", sa.Text(), nullable=True),
    sa.Column("requested", sa.Integer(), nullable=False),
    sa.Column("pulled", sa.Integer(), nullable=False),
    sa.Column("token", sa.String(length=255), nullable=True),
    sa.Column("token_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("lease_owner", sa.String(length=64), nullable=True),
    sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("channel", "account", "scope"),
)
sa.Table(
    "conversation_forms",
    METADATA,
    sa.Column("conversation_key", sa.String(length=255), nullable=False),
    sa.Column("entry_id", sa.String(length=128), nullable=False),
    sa.Column("action", sa.String(length=128), nullable=False),
    sa.Column("form", sa.String(length=128), nullable=False),
    sa.Column("required", sa.JSON(), nullable=False),
    sa.Column("requested", sa.String(length=64), nullable=True),
    sa.Column("retries", sa.Integer(), nullable=False),
    sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("conversation_key"),
)
sa.Table(
    "conversation_slots",
    METADATA,
    sa.Column("conversation_key", sa.String(length=255), nullable=False),
    sa.Column("name", sa.String(length=64), nullable=False),
    sa.Column("value", sa.JSON(), nullable=False),
    sa.Column("set_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("conversation_key", "name"),
)
sa.Table(
    "customers",
    METADATA,
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("channel", sa.String(length=32), nullable=False),
    sa.Column("account", sa.String(length=64), nullable=False),
    sa.Column("user_id", sa.String(length=128), nullable=False),
    sa.Column("name", sa.String(length=128), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("channel", "account", "user_id", name="uq_customers_user"),
)
sa.Table(
    "follow_ups",
    METADATA,
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("conversation_id", sa.Integer(), nullable=False),
    sa.Column("group_name", sa.String(length=64), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("closed_by", sa.String(length=64), nullable=True),
    sa.Column("note", sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("conversation_id", name="uq_follow_ups_conversation"),
)
sa.Table(
    "qa_results",
    METADATA,
    sa.Column("conversation_id", sa.Integer(), nullable=False),
    sa.Column("agent_id", sa.Integer(), nullable=True),
    sa.Column("group_name", sa.String(length=64), nullable=True),
    sa.Column("closed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("score", sa.Integer(), nullable=False),
    sa.Column("max_score", sa.Integer(), nullable=False),
    sa.Column("flagged", sa.Boolean(), nullable=False),
    sa.Column("hits", sa.JSON(), nullable=False),
    sa.Column("rules_version", sa.String(length=32), nullable=True),
    sa.Column("scored_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("review", sa.String(length=16), nullable=True),
    sa.Column("review_note", sa.Text(), nullable=True),
    sa.Column("reviewed_by", sa.String(length=64), nullable=True),
    sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint("conversation_id"),
)
sa.Index("ix_qa_results_closed", *_columns("qa_results", "closed_at"))
sa.Table(
    "sla_notices",
    METADATA,
    sa.Column("conversation_id", sa.Integer(), nullable=False),
    sa.Column("handed_off_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("kind", sa.String(length=32), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint("conversation_id", "handed_off_at", "kind"),
)
sa.Table(
    "canned_replies",
    METADATA,
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("title", sa.String(length=64), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("group_name", sa.String(length=64), nullable=True),
    sa.Column("created_by", sa.Integer(), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["created_by"], ["agents.id"]),
    sa.PrimaryKeyConstraint("id"),
)
sa.Table(
    "conversations",
    METADATA,
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("customer_id", sa.Integer(), nullable=False),
    sa.Column("channel", sa.String(length=32), nullable=False),
    sa.Column("account", sa.String(length=64), nullable=False),
    sa.Column("conversation_key", sa.String(length=255), nullable=False),
    sa.Column("state", sa.String(length=16), nullable=False),
    sa.Column("priority", sa.String(length=16), nullable=False),
    sa.Column("handoff_reason", sa.String(length=64), nullable=True),
    sa.Column("group_name", sa.String(length=64), nullable=True),
    sa.Column("miss_streak", sa.Integer(), nullable=False),
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_activity_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("closed_reason", sa.String(length=64), nullable=True),
    sa.Column("kb_version", sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
    sa.PrimaryKeyConstraint("id"),
)
sa.Index("ix_conversations_key_opened", *_columns("conversations", "conversation_key", "opened_at"))
sa.Index("ix_conversations_state", *_columns("conversations", "state", "priority", "queued_at"))
sa.Index(
    "uq_conversations_open_key",
    *_columns("conversations", "conversation_key"),
    unique=True,
    sqlite_where=sa.text("state != 'closed'"),
    postgresql_where=sa.text("state != 'closed'"),
)
sa.Table(
    "shifts",
    METADATA,
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("agent_id", sa.Integer(), nullable=False),
    sa.Column("group_name", sa.String(length=64), nullable=False),
    sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("end_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("breaks", sa.JSON(), nullable=True),
    sa.Column("created_by", sa.String(length=64), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["agent_id"], ["agents.id"]),
    sa.PrimaryKeyConstraint("id"),
)
sa.Index("ix_shifts_agent", *_columns("shifts", "agent_id", "start_at"))
sa.Index("ix_shifts_start", *_columns("shifts", "start_at"))
sa.Table(
    "assignments",
    METADATA,
    sa.Column("conversation_id", sa.Integer(), nullable=False),
    sa.Column("agent_id", sa.Integer(), nullable=False),
    sa.Column("active", sa.Boolean(), nullable=False),
    sa.Column("group_name", sa.String(length=64), nullable=True),
    sa.Column("auto", sa.Boolean(), nullable=False),
    sa.Column("assigned_by", sa.String(length=64), nullable=True),
    sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("first_response_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_agent_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("reminded_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("tags", sa.JSON(), nullable=True),
    sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(["agent_id"], ["agents.id"]),
    sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"]),
    sa.PrimaryKeyConstraint("conversation_id"),
)
sa.Index("ix_assignments_agent_active", *_columns("assignments", "agent_id", "active"))
sa.Index("ix_assignments_group_auto", *_columns("assignments", "group_name", "auto", "assigned_at"))
sa.Table(
    "csat",
    METADATA,
    sa.Column("conversation_id", sa.Integer(), nullable=False),
    sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("rating", sa.Integer(), nullable=True),
    sa.Column("raw_text", sa.Text(), nullable=True),
    sa.Column("answered_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("skipped", sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"]),
    sa.PrimaryKeyConstraint("conversation_id"),
)
sa.Table(
    "messages",
    METADATA,
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("conversation_id", sa.Integer(), nullable=False),
    sa.Column("conversation_key", sa.String(length=255), nullable=False),
    sa.Column("channel", sa.String(length=32), nullable=False),
    sa.Column("account", sa.String(length=64), nullable=False),
    sa.Column("direction", sa.String(length=3), nullable=False),
    sa.Column("sender", sa.String(length=16), nullable=False),
    sa.Column("sender_name", sa.String(length=128), nullable=True),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("kind", sa.String(length=16), nullable=False),
    sa.Column("channel_msg_id", sa.String(length=128), nullable=True),
    sa.Column("reply_to", sa.Integer(), nullable=True),
    sa.Column("decision", sa.String(length=16), nullable=True),
    sa.Column("reason", sa.String(length=32), nullable=True),
    sa.Column("entry_id", sa.String(length=128), nullable=True),
    sa.Column("confidence", sa.Float(), nullable=True),
    sa.Column("kb_version", sa.String(length=64), nullable=True),
    sa.Column("suggestions", sa.JSON(), nullable=True),
    sa.Column("target", sa.JSON(), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"]),
    sa.ForeignKeyConstraint(["reply_to"], ["messages.id"]),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("channel", "account", "channel_msg_id", name="uq_messages_channel_msg"),
)
sa.Index("ix_messages_conversation", *_columns("messages", "conversation_id", "id"))
sa.Index("ix_messages_key", *_columns("messages", "conversation_key", "id"))
sa.Index("ix_messages_reply_to", *_columns("messages", "reply_to"))
sa.Table(
    "notes",
    METADATA,
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("conversation_id", sa.Integer(), nullable=False),
    sa.Column("agent_id", sa.Integer(), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(["agent_id"], ["agents.id"]),
    sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"]),
    sa.PrimaryKeyConstraint("id"),
)
sa.Index("ix_notes_conversation", *_columns("notes", "conversation_id", "id"))
sa.Table(
    "shift_swaps",
    METADATA,
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("shift_id", sa.Integer(), nullable=False),
    sa.Column("requester_id", sa.Integer(), nullable=False),
    sa.Column("with_agent_id", sa.Integer(), nullable=False),
    sa.Column("shift_start", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("decided_by", sa.String(length=64), nullable=True),
    sa.Column("note", sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(["requester_id"], ["agents.id"]),
    sa.ForeignKeyConstraint(["shift_id"], ["shifts.id"]),
    sa.ForeignKeyConstraint(["with_agent_id"], ["agents.id"]),
    sa.PrimaryKeyConstraint("id"),
)
sa.Index("ix_shift_swaps_requester", *_columns("shift_swaps", "requester_id", "shift_start"))
sa.Table(
    "tickets",
    METADATA,
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("conversation_id", sa.Integer(), nullable=False),
    sa.Column("group_name", sa.String(length=64), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(["conversation_id"], ["conversations.id"]),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("conversation_id", name="uq_tickets_conversation"),
)
sa.Table(
    "outbox",
    METADATA,
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("channel", sa.String(length=32), nullable=False),
    sa.Column("account", sa.String(length=64), nullable=False),
    sa.Column("conversation_key", sa.String(length=255), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("sender", sa.String(length=16), nullable=False),
    sa.Column("target", sa.JSON(), nullable=False),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("message_id", sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(["message_id"], ["messages.id"]),
    sa.PrimaryKeyConstraint("id"),
    sa.UniqueConstraint("message_id", name="uq_outbox_message"),
)
sa.Index("ix_outbox_conversation", *_columns("outbox", "conversation_key", "id"))
sa.Index("ix_outbox_due", *_columns("outbox", "status", "next_attempt_at"))


def upgrade() -> None:
    METADATA.create_all(op.get_bind(), checkfirst=False)


def downgrade() -> None:
    METADATA.drop_all(op.get_bind(), checkfirst=False)


def complete_legacy(connection: Connection) -> None:
    """Create this revision's tables and indexes that a database made by create_all lacks."""
    METADATA.create_all(connection, checkfirst=True)
    for table in METADATA.sorted_tables:
        for index in table.indexes:  # create_all adds an index only with its table
            index.create(connection, checkfirst=True)
