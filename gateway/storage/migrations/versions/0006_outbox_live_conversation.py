"""outbox live index: the claim's per-conversation look-up reads live rows only (issue 14)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

A claim checks every due row for an earlier row of its conversation still to be sent. Through
`ix_outbox_conversation` (conversation_key, id) that check read every earlier row of the conversation,
its delivered and cancelled history included: a backlog of due rows cost its size times the conversations'
history (`python -m bench outbox`). `ix_outbox_live_conversation` has the same columns and only the rows
whose status is pending, held, sending or failed, so the check reads what is still to send.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_LIVE = "status IN ('pending', 'held', 'sending', 'failed')"


def upgrade() -> None:
    where = sa.text(_LIVE)
    op.create_index(
        "ix_outbox_live_conversation",
        "outbox",
        ["conversation_key", "id"],
        sqlite_where=where,
        postgresql_where=where,
    )
    op.drop_index("ix_outbox_conversation", table_name="outbox")


def downgrade() -> None:
    op.create_index("ix_outbox_conversation", "outbox", ["conversation_key", "id"])
    op.drop_index("ix_outbox_live_conversation", table_name="outbox")
