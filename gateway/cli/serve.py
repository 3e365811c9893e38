"""`kefu serve`: load the config and run the gateway (gateway/serve.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from gateway.cli import add_config_option, load_cli_settings
from gateway.logs import set_level, setup_logging
from gateway.serve import StartupFailed, event_loop_factory, serve


def register(subparsers: Any) -> None:
    """Add `kefu serve [--config PATH] [--host HOST] [--port PORT] [--workers N]`."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve", help="run the gateway (webhooks, health, metrics)", description=__doc__
    )
    add_config_option(parser)
    parser.add_argument("--host", help="listen address (overrides server.host)")
    parser.add_argument("--port", type=int, help="listen port (overrides server.port)")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="N processes on the port (SO_REUSEPORT; PostgreSQL and redis.url needed for N > 1)",
    )
    # Set by the supervisor of --workers for each worker it starts: share the port, say less.
    parser.add_argument("--worker-id", type=int, default=None, help=argparse.SUPPRESS)
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
    if args.workers < 1:
        print("kefu serve: --workers must be at least 1", file=sys.stderr)
        return 2
    if args.workers > 1:
        return _supervise(args, settings)
    try:
        with asyncio.Runner(loop_factory=event_loop_factory(settings.server.event_loop)) as runner:
            runner.run(serve(settings, worker_id=args.worker_id))
    except KeyboardInterrupt:
        return 0
    except StartupFailed as exc:
        print(f"kefu serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _supervise(args: argparse.Namespace, settings: Any) -> int:
    from gateway.workers import WorkersRefused, run_workers

    host, port = settings.server.host, settings.server.port
    worker_args = ["--config", args.config, "--host", host, "--port", str(port)]
    try:
        return run_workers(settings, args.workers, worker_args)
    except WorkersRefused as exc:
        print(f"kefu serve: {exc}", file=sys.stderr)
        return 1
