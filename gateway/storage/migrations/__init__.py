"""Alembic migrations of the gateway's schema (run by gateway/storage/migrate.py, `kefu db upgrade`).

`target_metadata()` is every table the models declare: the schema modules plus the stores that keep
their table beside their queries (sla_store, cursor_store). Autogenerate compares it with a database.
"""

from __future__ import annotations

from sqlalchemy import MetaData


def target_metadata() -> MetaData:
    """The models' metadata with every table registered (the imports register them)."""
    from gateway.storage import cursor_store, sla_store  # noqa: F401  (their tables)
    from gateway.storage.schema import handoff, slots, supervision  # noqa: F401
    from gateway.storage.schema.core import Base

    return Base.metadata
