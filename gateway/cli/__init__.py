"""The `kefu` command: one entry point; each module of this package registers one command group."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.settings import Settings

DEFAULT_CONFIG = "config/gateway.yaml"

# Modules that expose `register(subparsers)`; each subcommand sets `func(args) -> int`.
COMMAND_MODULES = (
    "gateway.cli.serve",  # serve
    "gateway.cli.kb",  # kb check, kb lint
    "gateway.cli.ask",  # ask, eval
    "gateway.cli.agents",  # agent add|list|disable
    "gateway.cli.reports",  # report, purge
    "gateway.cli.supervision",  # shifts check (report agents is dispatched from report)
    "gateway.cli.db",  # db upgrade|current|history
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


def load_cli_settings(
    args: argparse.Namespace,
    overrides: Mapping[str, Any] | None = None,
    *,
    warn_about: tuple[str, ...] | None = (),
    require_file: bool = False,
) -> Settings | None:
    """The settings every command reads, exactly as the server does: --config < `KEFU_*` < the flags.

    The default config file may be absent (defaults then; a named one must exist unless `require_file`).
    A problem is printed and None returned. Unset `${VAR}`s are said only for the sections the command
    uses (`warn_about` key prefixes; None = all, through the log, for `kefu serve`), so `kefu ask` does not
    warn about the WeChat AppSecret.
    """
    from gateway.settings import SettingsError, load_settings  # pydantic only when a command runs

    path: str | None = args.config
    if path == DEFAULT_CONFIG and not require_file and not Path(path).exists():
        path = None
    warnings: list[str] | None = None if warn_about is None else []
    try:
        settings = load_settings(path, overrides=overrides, warnings=warnings)
    except SettingsError as exc:
        print(f"kefu {args.command}: {exc}", file=sys.stderr)
        return None
    for warning in warnings or ():
        if warn_about and warning.startswith(warn_about):
            print(f"warning: config {warning}", file=sys.stderr)
    return settings


def shown_path(path: Path) -> str:
    """A configured path as people typed it: relative to the working directory when under it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# numpy's OpenBLAS runs a thread per core by default; kefu's matrix products are one query vector against
# the FAQ (microseconds), where those threads only spin against the event loop and the encoders: on the
# 2-core machine a novel text cost 3-4x the CPU with them (bench: every text new). Set before the
# command modules import numpy; an operator's own setting wins.
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def main(argv: Sequence[str] | None = None) -> int:
    for name in BLAS_THREADS:
        os.environ.setdefault(name, "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)
