"""attachments: messages.attachment and outbox.attachment (images and files, issue 17 item 4)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06

A message's image or file (`gateway.message.Attachment.as_json`: kind, mime, name, size, key / url /
media_id) and the one an outbox row must deliver. Nullable JSON: every earlier row has none.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("attachment", sa.JSON(), nullable=True))
    op.add_column("outbox", sa.Column("attachment", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("attachment")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("attachment")
