"""Persistence: the only package that imports SQLAlchemy (SQLite and PostgreSQL, the same code).

Tables in `schema/`; the Store (`store.py`) over one module per aggregate: messages and conversations
(`messages.py`), the outbox (`outbox.py`); the handoff side (`handoff_store.py`) over agents, assignments,
csat and events; stats, reports and SLA queries in their own modules.
"""

from gateway.storage.engine import safe_url, sqlite_file
from gateway.storage.errors import Conflict, StoreUnavailable
from gateway.storage.messages import Unit
from gateway.storage.rows import OUTBOX_STATUSES, ConversationRow, MessageRow, OutboxRow
from gateway.storage.store import Store, Transaction, is_database_error, is_refused, is_unavailable

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
    "is_refused",
    "is_unavailable",
    "safe_url",
    "sqlite_file",
]
