"""Alembic migrations of the gateway's schema (run by gateway/storage/migrate.py, `kefu db upgrade`).

`target_metadata()` is every table the models declare (the modules of `schema/`): autogenerate compares
it with a database, and a database made before migrations is stamped at head when it already matches it.
"""

from __future__ import annotations

from sqlalchemy import MetaData


def target_metadata() -> MetaData:
    """The models' metadata with every table registered (the imports register them)."""
    from gateway.storage.schema import cursors, handoff, sla, slots, supervision  # noqa: F401
    from gateway.storage.schema.core import Base

    return Base.metadata
