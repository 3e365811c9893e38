"""Run the gateway until a signal: start the app, print the URLs to configure, stop cleanly (`kefu serve`)."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import os
import signal
from collections.abc import Callable

from aiohttp import web

from gateway.coord import check_processes, declared_processes
from gateway.http.agent_api import PREFIX as AGENT_API_PREFIX
from gateway.settings import Settings
from gateway.storage import is_database_error, safe_url

logger = logging.getLogger(__name__)

# The cyclic GC's thresholds while serving (CPython's default: 700, 10, 10). A webhook allocates hundreds of
# tracked objects, most freed by reference counting, so at 700 a young collection ran every message or two
# under load, each traversing every in-flight request's objects, and every tenth of them (generation 1)
# took ~8 ms of CPU on the loop: at 500 msg/s ~7 % of kefu's CPU and pauses in every request's latency.
# At 50,000 a young collection is rare and still bounded (a few ms); garbage cycles wait a little longer.
GC_THRESHOLDS = (50_000, 20, 10)


class StartupFailed(Exception):
    """The gateway could not start for a reason the operator must fix (database, port)."""


def event_loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """`server.event_loop` → the factory of the loop `kefu serve` runs on (None: asyncio's own)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise StartupFailed("server.event_loop is uvloop, but uvloop is not installed") from None
        return None  # "auto" on a platform without a uvloop wheel
    return uvloop.new_event_loop


def check_exposure(settings: Settings) -> None:
    """Refuse to serve the web channel unsigned beyond this machine (anyone could read any history)."""
    web_settings = settings.channels.web
    if not web_settings.enabled or web_settings.secret is not None or web_settings.public_history:
        return
    if not _loopback(settings.server.host):
        raise StartupFailed(
            f"server.host {settings.server.host or '(all)'} is reachable from other machines but "
            "channels.web.secret is empty: anyone could post as any visitor and read their history. "
            "Set channels.web.secret (e.g. ${KEFU_WEB_SECRET}), or set channels.web.public_history: true "
            "if that is intended, or disable the web channel"
        )


def check_coordination(settings: Settings, processes: int | None = None) -> None:
    """Refuse several processes on PostgreSQL without Redis (`processes`: default `KEFU_PROCESSES`)."""
    try:
        count = declared_processes(os.environ) if processes is None else processes
    except ValueError as exc:
        raise StartupFailed(str(exc)) from None
    problem = check_processes(settings.database.url, settings.redis, count)
    if problem is not None:
        raise StartupFailed(problem)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a hostname or "" (all interfaces)
        return False


def urls(settings: Settings, app: web.Application) -> list[tuple[str, str]]:
    """(what, URL) pairs to print: health, metrics, the APIs, the three web pages and every channel's webhook."""
    from gateway.keys import RUNTIME

    host = settings.server.host
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    base = (settings.server.public_url or f"http://{shown}:{settings.server.port}").rstrip("/")
    out = [
        ("health", f"{base}/healthz"),
        ("metrics", f"{base}/metrics"),
        ("admin API", f"{base}/admin/api/"),
        ("agent API", f"{base}{AGENT_API_PREFIX}/"),
        # The pages a newcomer wants first (gateway/http/pages.py serves them on every app).
        ("customer chat page", f"{base}/chat"),
        ("agent console", f"{base}/agent"),
        ("admin dashboard", f"{base}/admin"),
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


def access_logger(settings: Settings) -> logging.Logger | None:
    """aiohttp's access logger when `server.access_log` is on; None turns the per-request line off."""
    return logging.getLogger("aiohttp.access") if settings.server.access_log else None


async def serve(settings: Settings, *, worker_id: int | None = None) -> None:
    """Run until SIGINT/SIGTERM, then shut down (in-flight requests finish, resources close).

    `worker_id`: one of `kefu serve --workers N` (gateway/workers.py): the port is shared (SO_REUSEPORT)
    and only worker 0 prints the URLs.
    """
    kind = type(asyncio.get_running_loop()).__module__.split(".")[0]
    logger.info("event loop: %s", "uvloop" if kind == "uvloop" else "asyncio")
    from gateway.app import create_app

    check_exposure(settings)
    check_coordination(settings)
    app = create_app(settings, handle_signals=True)
    runner = web.AppRunner(app, handle_signals=False, access_log=access_logger(settings))
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
    site: web.TCPSite | None = None
    try:
        site = web.TCPSite(
            runner,
            settings.server.host,
            settings.server.port,
            shutdown_timeout=10,
            reuse_port=worker_id is not None or None,
        )
        try:
            await site.start()
        except OSError as exc:  # the port is taken, the address does not exist...
            where = f"{settings.server.host}:{settings.server.port}"
            raise StartupFailed(f"cannot listen on {where}: {exc.strerror or exc}") from None
        worker = "" if worker_id is None else f" (worker {worker_id}, pid {os.getpid()})"
        print(f"kefu gateway listening on {settings.server.host}:{settings.server.port}{worker}", flush=True)
        for what, url in urls(settings, app) if not worker_id else ():
            print(f"  {what:<24} {url}", flush=True)
        settle_gc()
        await stop.wait()
        logger.info("shutting down")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await shut_down(runner, site)


async def shut_down(runner: web.AppRunner, site: web.BaseSite | None) -> None:
    """Stop listening, then the outbox (its sends under way get outbox.stop_grace_s), then the rest.

    In this order because aiohttp's cleanup begins by marking every open connection closing, and from then
    on it drops whatever arrives on them: during the outbox's grace a OneBot reverse WebSocket's answers
    to the sends under way (which then counted as possible doubles) and its events (which OneBot never
    sends again) were lost, and so were a chat customer's messages on the chat's socket. Here the open
    connections are still read meanwhile; only new ones are refused.
    """
    from gateway.app import stop_sending

    if site is not None and site in runner.sites:
        await site.stop()
    await stop_sending(runner.app)
    await runner.cleanup()


def settle_gc() -> None:
    """Before serving: what startup loaded leaves the cyclic GC's sight, and collections become rare."""
    # Everything loaded at startup (jieba's dictionary, the FAQ index, the libraries) lives as long as the
    # process: out of the cyclic GC's sight, a full collection no longer stalls requests for tens of ms.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
