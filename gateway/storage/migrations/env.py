"""Alembic's environment, for Alembic's own commands (`kefu db revision --autogenerate` runs through it).

kefu's upgrades (`kefu serve` start-up, `kefu db upgrade`) do the same in gateway/storage/migrate.py
without reading this file: on the connection kefu hands over (its async engine, `run_sync`), with the
lock held and a pre-migration database adopted first. Here the connection comes the same way
(`config.attributes["connection"]`); the models' metadata is what autogenerate compares with.
"""

from __future__ import annotations

from alembic import context

from gateway.storage.migrate import adopt_legacy
from gateway.storage.migrations import target_metadata


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run Alembic through `kefu db …` (it connects with the gateway's settings)")
    context.configure(connection=connection, target_metadata=target_metadata(), compare_type=True)
    with context.begin_transaction():
        adopt_legacy(context.get_context(), context.script, connection)
        context.run_migrations()


run()
