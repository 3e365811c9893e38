"""queue key: conversations.queue_key, the queue's serving order as one indexed integer (issue 14)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

While a conversation is queued, `queue_key` = (priority rank * 2 + 留言 rank) * 2**56 + µs since 1970 of
coalesce(queued_at, opened_at) (gateway/storage/serving_key.py); NULL otherwise. `ORDER BY queue_key, id`
is the serving order, so the queue page is a range of `ix_conversations_queue_key` and a position an
indexed COUNT on `ix_conversations_group_queue_key`, instead of ranking the whole queue. Both indexes are
partial (queued rows only). The rows already queued get their key here, computed as the code does.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_RANK = (
    "(CASE WHEN priority = 'high' THEN 0 ELSE 2 END + CASE WHEN EXISTS (SELECT 1 FROM tickets "
    "WHERE tickets.conversation_id = conversations.id AND tickets.resolved_at IS NULL) THEN 0 ELSE 1 END)"
)
_SINCE = "coalesce(queued_at, opened_at)"
# As gateway/storage/serving_key.py computes it (see there why these exact forms).
_MICROS = {
    "sqlite": (
        f"(CAST(strftime('%s', substr({_SINCE}, 1, 19)) AS INTEGER) * 1000000"
        f" + CAST(substr({_SINCE}, 21, 6) AS INTEGER))"
    ),
    "postgresql": (
        f"(CAST(EXTRACT(EPOCH FROM date_trunc('second', {_SINCE})) AS BIGINT) * 1000000"
        f" + CAST(EXTRACT(MICROSECONDS FROM {_SINCE}) AS BIGINT) % 1000000)"
    ),
}


def upgrade() -> None:
    op.add_column("conversations", sa.Column("queue_key", sa.BigInteger(), nullable=True))
    micros = _MICROS[op.get_bind().dialect.name]
    op.execute(
        f"UPDATE conversations SET queue_key = CAST({_RANK} AS BIGINT) * {2**56} + {micros} "
        "WHERE state = 'queued'"
    )
    where = sa.text("queue_key IS NOT NULL")
    op.create_index(
        "ix_conversations_queue_key",
        "conversations",
        ["queue_key", "id"],
        sqlite_where=where,
        postgresql_where=where,
    )
    op.create_index(
        "ix_conversations_group_queue_key",
        "conversations",
        ["group_name", "queue_key", "id"],
        sqlite_where=where,
        postgresql_where=where,
    )


def downgrade() -> None:
    op.drop_index("ix_conversations_group_queue_key", table_name="conversations")
    op.drop_index("ix_conversations_queue_key", table_name="conversations")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("queue_key")
