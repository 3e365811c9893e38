"""`kefu db upgrade|current|history`: the schema migrations (Alembic) of the server's own database.

`kefu serve` upgrades at start-up as well; `kefu db upgrade` is for deploys that migrate first and start
the processes after (the same --config and `KEFU_*` variables as the server, so the same database).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.cli import add_config_option, load_cli_settings


def register(subparsers: Any) -> None:
    """Add the `db` command group to the kefu CLI."""
    db = subparsers.add_parser("db", help="database schema migrations (upgrade, current, history)")
    sub = db.add_subparsers(dest="db_command", metavar="ACTION")
    db.set_defaults(func=lambda _args: (db.print_help(), 2)[1])
    for name, func, text in (
        ("upgrade", _upgrade, "migrate the database to the newest revision (once, even with N processes)"),
        ("current", _current, "print the database's revision"),
        ("history", _history, "list the revisions, newest first"),
    ):
        parser = sub.add_parser(name, help=text)
        add_config_option(parser)
        parser.set_defaults(func=func)


def _with_engine(args: argparse.Namespace, work: Callable[[Any], Awaitable[int]]) -> int:
    from gateway.storage import is_database_error, safe_url
    from gateway.storage.engine import create_engine

    settings = load_cli_settings(args, warn_about=("database.",))
    if settings is None:
        return 2
    url = settings.database.url

    async def run() -> int:
        engine = create_engine(url)
        try:
            return await work(engine)
        finally:
            await engine.dispose()

    try:
        return asyncio.run(run())
    except Exception as exc:
        if not is_database_error(exc):
            raise
        detail = (str(exc).splitlines() or [""])[0][:200]
        print(
            f"kefu db: cannot use the database {safe_url(url)}: {type(exc).__name__}: {detail}",
            file=sys.stderr,
        )
        return 1


def _upgrade(args: argparse.Namespace) -> int:
    from gateway.storage import migrate
    from gateway.storage.engine import sqlite_directory

    async def work(engine: Any) -> int:
        directory = sqlite_directory(str(engine.url))
        if directory is not None:
            await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
        before = await migrate.current(engine)
        await migrate.upgrade(engine)
        after = await migrate.current(engine)
        shown = "+".join(after)
        print(
            f"database at {shown}"
            if after == before
            else f"migrated {'+'.join(before) or '(new)'} -> {shown}"
        )
        return 0

    return _with_engine(args, work)


def _current(args: argparse.Namespace) -> int:
    from gateway.storage import migrate

    async def work(engine: Any) -> int:
        at = await migrate.current(engine)
        heads = set(migrate.heads())
        for revision in at:
            print(f"{revision} (head)" if revision in heads else revision)
        if not at:
            print("(none): never migrated; `kefu db upgrade` or `kefu serve` creates the schema")
        return 0

    return _with_engine(args, work)


def _history(args: argparse.Namespace) -> int:
    from gateway.storage import migrate

    for line in migrate.history():
        print(line)
    return 0
