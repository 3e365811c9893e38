"""qa_pending: the conversations 质检 may still have to score (issue 14's "no growth with history")

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08

The scoring job looked for closed human conversations without a score by reading every conversation ever
closed (with its assignment and its score), every round (`qa.job_interval_s`, 30 s): a cost that grew with
the history (67-107 ms a round at 200,000 scored conversations on SQLite; now ~2 ms). A close now leaves a
row here, the job reads these and removes each once scored. The upgrade fills it with what the old look-up
would find, so nothing waiting is skipped; the job runs that look-up itself at its first round and hourly,
for closes that left no row (a process of the release before this one, during a rolling deploy).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "qa_pending",
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("conversation_id"),
    )
    op.execute(
        "INSERT INTO qa_pending (conversation_id) "
        "SELECT c.id FROM conversations c JOIN assignments a ON a.conversation_id = c.id "
        "WHERE c.state IN ('closed', 'bot') AND a.active = false AND a.ended_at IS NOT NULL "
        "AND NOT EXISTS (SELECT 1 FROM qa_results r WHERE r.conversation_id = c.id)"
    )


def downgrade() -> None:
    op.drop_table("qa_pending")
