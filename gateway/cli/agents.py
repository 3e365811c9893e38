"""`kefu agent add|list|disable`: manage human agents in the server's own database (same --config)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import unicodedata
from dataclasses import dataclass
from typing import Any

from gateway.cli import add_config_option, load_cli_settings
from handoff.agents import MAX_CHATS_LIMIT, Role, new_token


def register(subparsers: Any) -> None:
    """Add the `agent` command group to the kefu CLI."""
    agent = subparsers.add_parser("agent", help="manage human agents (add, list, disable)")
    sub = agent.add_subparsers(dest="agent_command", metavar="ACTION")
    agent.set_defaults(func=lambda _args: (agent.print_help(), 2)[1])

    add = sub.add_parser("add", help="create an agent and print its API token (shown once)")
    add.add_argument("name", help="display name, shown to customers: 客服 <name> 为您服务")
    add.add_argument("--groups", default="", help="comma-separated skill groups, e.g. 售前,售后")
    add.add_argument(
        "--max-chats", type=int, default=5, help=f"parallel conversations (0–{MAX_CHATS_LIMIT}, default 5)"
    )
    add.add_argument("--role", choices=[r.value for r in Role], default=Role.AGENT.value)
    add_config_option(add)
    add.set_defaults(func=_add)

    listing = sub.add_parser("list", help="list agents with role, groups, presence and load")
    add_config_option(listing)
    listing.set_defaults(func=_list)

    disable = sub.add_parser("disable", help="disable an agent (their token stops working at once)")
    disable.add_argument("name")
    add_config_option(disable)
    disable.set_defaults(func=_disable)


@dataclass(frozen=True)
class _Target:
    db: Any  # gateway.storage.handoff_store.HandoffDb (imported lazily)
    configured_groups: tuple[str, ...]


def _db(args: argparse.Namespace) -> _Target | None:
    # Imported here: `kefu --help` should not pay for SQLAlchemy and pydantic.
    from gateway.storage import Store
    from gateway.storage.handoff_store import HandoffDb
    from handoff.routing import RoutingRules

    settings = load_cli_settings(args, warn_about=("database.", "handoff."))
    if settings is None:
        return None
    section = settings.handoff
    configured = (
        RoutingRules.from_config(
            {"groups": section.groups, "default_group": section.default_group}
        ).group_names
        if section.groups
        else ()
    )
    return _Target(HandoffDb(Store.from_url(settings.database.url)), configured)


async def _run(target: _Target, action: Any) -> int:
    db = target.db
    try:
        await db.store.create_all()  # the CLI may run before the server ever started
        return int(await action(db))
    finally:
        await db.store.dispose()


def _add(args: argparse.Namespace) -> int:
    from gateway.storage import Conflict

    groups = [g.strip() for g in args.groups.split(",") if g.strip()]
    target = _db(args)
    if target is None:
        return 2
    plain, token_hash = new_token()

    async def action(db: Any) -> int:
        configured = target.configured_groups
        unknown = [g for g in groups if configured and g not in configured]
        if unknown:
            # Not fatal (the config may be edited next), but an agent in a group nobody routes to waits forever.
            print(
                f"warning: group(s) {', '.join(unknown)} are not in handoff.groups of {args.config} "
                f"(configured: {', '.join(configured)})",
                file=sys.stderr,
            )
        try:
            agent = await db.add_agent(
                args.name,
                role=Role(args.role),
                groups=groups,
                max_chats=args.max_chats,
                token_hash=token_hash,
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except Conflict:
            print(f"error: an agent named {args.name!r} already exists", file=sys.stderr)
            return 1
        print(
            f"agent {agent.name} (id {agent.id}, {agent.role.value}, groups {','.join(sorted(agent.groups)) or '-'}, max {agent.max_chats} chats)"
        )
        print("API token (shown once, store it now; use as Authorization: Bearer <token>):")
        print(plain)
        return 0

    return asyncio.run(_run(target, action))


def _list(args: argparse.Namespace) -> int:
    target = _db(args)
    if target is None:
        return 2

    async def action(db: Any) -> int:
        rows = await db.list_agents()
        if not rows:
            print("no agents yet: kefu agent add NAME --groups 售前 --max-chats 5")
            return 0
        print(
            f"{'id':>4}  {_pad('name', 16)} {'role':<10} {_pad('groups', 20)} {'chats':>7}  {'presence':<8} enabled"
        )
        for row in rows:
            info = row.info
            chats = f"{row.load}/{info.max_chats}"
            groups = ",".join(sorted(info.groups)) or "-"
            enabled = "yes" if info.enabled else "no"
            print(
                f"{info.id:>4}  {_pad(info.name, 16)} {info.role.value:<10} {_pad(groups, 20)} {chats:>7}  "
                f"{row.presence.value:<8} {enabled}"
            )
        return 0

    return asyncio.run(_run(target, action))


def _disable(args: argparse.Namespace) -> int:
    target = _db(args)
    if target is None:
        return 2

    async def action(db: Any) -> int:
        agent = await db.set_agent_enabled(args.name, False)
        if agent is None:
            print(f"error: no agent named {args.name!r} (see: kefu agent list)", file=sys.stderr)
            return 1
        print(f"agent {agent.name} disabled; their token no longer works")
        return 0

    return asyncio.run(_run(target, action))


def _pad(text: str, width: int) -> str:
    """Left-align in a terminal column: CJK characters take two cells (f-string widths count one)."""
    cells = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)
    return text + " " * max(0, width - cells)
