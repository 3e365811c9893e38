"""period indexes: conversations.opened_at and messages.created_at

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06

The 受理记录 (`report_queries`), the dashboard (`stats_queries`) and 绩效 (`kpi_queries`) select a period
by `conversations.opened_at` and `messages.created_at`; without these indexes every refresh read the
whole history. Both keys grow with time, so the insert on the message path appends at the index's end.
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_conversations_opened", "conversations", ["opened_at"])
    op.create_index("ix_messages_created", "messages", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_messages_created", table_name="messages")
    op.drop_index("ix_conversations_opened", table_name="conversations")
