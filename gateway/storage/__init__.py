"""Persistence: the only package that imports SQLAlchemy (SQLite and PostgreSQL, the same code)."""

from gateway.storage.engine import safe_url
from gateway.storage.store import (
    OUTBOX_STATUSES,
    Conflict,
    ConversationRow,
    MessageRow,
    OutboxRow,
    Store,
    StoreUnavailable,
    Transaction,
    Unit,
    is_database_error,
)

__all__ = [
    "OUTBOX_STATUSES",
    "Conflict",
    "ConversationRow",
    "MessageRow",
    "OutboxRow",
    "Store",
    "StoreUnavailable",
    "Transaction",
    "Unit",
    "is_database_error",
    "safe_url",
]
