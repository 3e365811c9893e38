"""`kefu serve`: load the config and run the gateway (gateway/serve.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from gateway.cli import add_config_option, load_cli_settings
from gateway.logs import set_level, setup_logging
from gateway.serve import StartupFailed, serve


def register(subparsers: Any) -> None:
    """Add `kefu serve [--config PATH] [--host HOST] [--port PORT]`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="run the gateway (webhooks, health, metrics)", description=__doc__
    )
    add_config_option(parser)
    parser.add_argument("--host", help="listen address (overrides server.host)")
    parser.add_argument("--port", type=int, help="listen port (overrides server.port)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry point of `kefu serve`; exit code 2 for a bad config (message only, no traceback)."""
    setup_logging("INFO")  # before loading, so config warnings (unset ${VARS}) are formatted and masked
    # Every unset ${VAR} is said here, once: serving is where a missing secret matters.
    overrides = {"server.host": args.host, "server.port": args.port}
    settings = load_cli_settings(args, overrides, warn_about=None, require_file=True)
    if settings is None:
        return 2
    set_level(settings.logging.level)
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        return 0
    except StartupFailed as exc:
        print(f"kefu serve: {exc}", file=sys.stderr)
        return 1
    return 0
