"""customer tags: the agent console's tags per customer (issue 17, item 8)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-06

Written on the `screens` branch before Alembic reached it: it chains after the migrate branch's 0002
(period indexes). If another branch also revised 0002, put one after the other.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customer_tags",
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=32), nullable=False),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"]),
        sa.ForeignKeyConstraint(["created_by"], ["agents.id"]),
        sa.PrimaryKeyConstraint("customer_id", "tag"),
    )


def downgrade() -> None:
    op.drop_table("customer_tags")
