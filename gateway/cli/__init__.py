"""The `kefu` command: one entry point; each module of this package registers one command group."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

DEFAULT_CONFIG = "config/gateway.yaml"

# Modules that expose `register(subparsers)`; each subcommand sets `func(args) -> int`.
COMMAND_MODULES = (
    "gateway.cli.serve",  # serve
    "gateway.cli.kb",  # kb check, kb lint
    "gateway.cli.ask",  # ask, eval
    "gateway.cli.agents",  # agent add|list|disable
    "gateway.cli.reports",  # report, purge
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kefu", description="kefu — bot-first customer-service gateway")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """Every subcommand takes --config, so CLI and server always agree on database and thresholds."""
    parser.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        metavar="PATH",
        help=f"deployment config (default {DEFAULT_CONFIG})",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)
