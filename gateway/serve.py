"""`kefu serve`: load the config, run the gateway, print the URLs to configure, stop cleanly on signals."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import signal
import sys
from typing import Any

from aiohttp import web

from gateway.agent_api import PREFIX as AGENT_API_PREFIX
from gateway.cli import add_config_option
from gateway.logs import set_level, setup_logging
from gateway.settings import Settings, SettingsError, load_settings
from gateway.storage import is_database_error, safe_url

logger = logging.getLogger(__name__)


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
    try:
        settings = load_settings(args.config, overrides={"server.host": args.host, "server.port": args.port})
    except SettingsError as exc:
        print(f"kefu serve: {exc}", file=sys.stderr)
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


class StartupFailed(Exception):
    """The gateway could not start for a reason the operator must fix (database, port)."""


def urls(settings: Settings, app: web.Application) -> list[tuple[str, str]]:
    """(what, URL) pairs to print: health, metrics and every channel's webhook."""
    from gateway.runtime import RUNTIME

    host = settings.server.host
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base = (settings.server.public_url or f"http://{shown}:{settings.server.port}").rstrip("/")
    out = [
        ("health", f"{base}/healthz"),
        ("metrics", f"{base}/metrics"),
        ("admin API", f"{base}/admin/api/"),
        ("agent API", f"{base}{AGENT_API_PREFIX}/"),
    ]
    for (channel, account), adapter in app[RUNTIME].adapters.items():
        methods: dict[str, list[str]] = {}
        for route in adapter.routes():
            path = getattr(route, "path", None)
            if path:
                methods.setdefault(path, []).append(getattr(route, "method", ""))
        for path, verbs in methods.items():
            label = f"{channel} {account}" if channel != "web" else "web"
            out.append((f"{label} ({'/'.join(verbs)})", f"{base}{path}"))
    return out


async def serve(settings: Settings) -> None:
    """Run until SIGINT/SIGTERM, then shut down (in-flight requests finish, resources close)."""
    from gateway.app import create_app

    app = create_app(settings, handle_signals=True)
    runner = web.AppRunner(app, handle_signals=False, access_log=logging.getLogger("aiohttp.access"))
    try:
        await runner.setup()
    except Exception as exc:
        if not is_database_error(exc):
            raise
        # Startup creates the tables: an unreachable or misconfigured database shows up here.
        raise StartupFailed(f"cannot use the database {safe_url(settings.database.url)}: {exc}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, settings.server.host, settings.server.port, shutdown_timeout=10)
        try:
            await site.start()
        except OSError as exc:  # the port is taken, the address does not exist...
            where = f"{settings.server.host}:{settings.server.port}"
            raise StartupFailed(f"cannot listen on {where}: {exc.strerror or exc}") from None
        print(f"kefu gateway listening on {settings.server.host}:{settings.server.port}", flush=True)
        for what, url in urls(settings, app):
            print(f"  {what:<24} {url}", flush=True)
        # Everything loaded at startup (jieba's dictionary, the FAQ index, the libraries) lives as long as the
        # process: out of the cyclic GC's sight, a full collection no longer stalls requests for tens of ms.
        gc.freeze()
        await stop.wait()
        logger.info("shutting down")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
