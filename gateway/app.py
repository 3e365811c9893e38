"""The aiohttp application factory: routes, middleware and every resource in cleanup_ctx."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from gateway.actions.lifecycle import actions_ctx, install_actions
from gateway.channels.base import ChannelAdapter
from gateway.channels.onebot.adapter import OneBotAdapter
from gateway.channels.qqbot.adapter import QQBotAdapter
from gateway.channels.spool import Spool, spool_directory
from gateway.channels.web.adapter import WebAdapter
from gateway.channels.wechat.adapter import WeChatAdapter
from gateway.channels.wecom.adapter import WeComAdapter
from gateway.coord import CoordUnavailable, build_coordination
from gateway.handoff_service import HandoffService
from gateway.http.admin_api import admin_routes
from gateway.http.agent_api import agent_routes
from gateway.http.bodies import client_gone, http_error
from gateway.http.expect import add_routes
from gateway.http.media_api import media_routes
from gateway.http.pages import install_web
from gateway.http.qa_api import qa_routes
from gateway.http.reports_api import report_routes
from gateway.http.shifts_api import shift_routes
from gateway.jobs.handoff_jobs import close_agent_sockets, handoff_jobs
from gateway.jobs.outbox import Outbox
from gateway.jobs.qa_scoring import install_qa
from gateway.kb_reload import KbService
from gateway.keys import HANDOFF, RUNTIME
from gateway.logs import quiet_bad_requests
from gateway.media import Media
from gateway.media.sweep import upload_sweep
from gateway.message import Message, utcnow
from gateway.metrics import CONTENT_TYPE_LATEST, Metrics
from gateway.norms import answer_placeholders
from gateway.pipeline import Pipeline, PipelineResult
from gateway.runtime import AdapterKey, Runtime
from gateway.settings import Settings
from gateway.storage import Store, is_database_error, sqlite_file
from handoff.state import ConversationState
from intents.matcher import classifier_builder

logger = logging.getLogger(__name__)

USER_AGENT = "kefu-gateway/0.1"
OUTBOUND_TIMEOUT = aiohttp.ClientTimeout(total=15, connect=5)
# /healthz answers 503 within this while the database hangs (load balancers probe with ~5 s timeouts).
HEALTH_DB_TIMEOUT_S = 2.0
CLIENT_CLOSED = 499  # nginx's status for a client that closed the connection before its answer (never sent)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(settings: Settings, *, handle_signals: bool = False) -> web.Application:
    """Build the gateway: runtime, adapters from settings, routes, and startup/cleanup of resources."""
    quiet_bad_requests()
    app = web.Application(client_max_size=settings.server.max_body_bytes, middlewares=[error_middleware])
    runtime = build_runtime(settings, handle_signals=handle_signals)
    app[RUNTIME] = runtime

    if settings.channels.web.enabled:
        runtime.add_adapter(WebAdapter(settings.channels.web, runtime))
    for account in settings.channels.wechat:
        runtime.add_adapter(WeChatAdapter(account, runtime))
    for onebot in settings.channels.onebot:
        runtime.add_adapter(OneBotAdapter(onebot, runtime))
    for qqbot in settings.channels.qqbot:
        runtime.add_adapter(QQBotAdapter(qqbot, runtime))
    for wecom in settings.channels.wecom:
        runtime.add_adapter(WeComAdapter(wecom, runtime))
        if (
            wecom.handoff_mode == "wecom"
        ):  # WeCom's own staff serve its handoffs: the bot must not talk over them
            runtime.pipeline.quiet_while_queued.add(("wecom", wecom.name))
    for adapter in runtime.adapters.values():
        add_routes(app, adapter.routes())

    handoff = HandoffService(runtime, settings.handoff)
    runtime.handoff = handoff
    app[HANDOFF] = handoff
    runtime.pipeline.interceptors.append(handoff)  # a CSAT rating is not a new question
    runtime.pipeline.observers.append(handoff.after_message)  # queue handoffs, forward to the agent
    runtime.outbox.listeners.append(handoff.delivery_changed)  # delivery state live in the consoles

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_view)
    add_routes(app, admin_routes())
    add_routes(app, agent_routes())
    add_routes(app, report_routes())
    add_routes(app, shift_routes())
    add_routes(app, qa_routes())
    add_routes(app, media_routes())  # /media/{ref}, agents' attachments
    install_web(app)  # /chat, /agent, /admin, /supervisor, /widget.js, /web/ws (wraps the web adapter)

    app.cleanup_ctx.extend(
        [
            _database,
            _coordination,
            _http_session,
            _knowledge_base,
            actions_ctx,
            _adapters,
            _outbox_worker,
            _spool_replay,
            handoff_jobs,
            upload_sweep,
            _tasks,
        ]
    )
    install_qa(app, str(settings.qa.path))  # 质检 rules and the scoring job, after the database is up
    # The outbox first: a reverse WebSocket's send under way gets its grace before the socket closes.
    app.on_shutdown.extend((stop_sending, _close_connections, close_agent_sockets))
    return app


def build_runtime(settings: Settings, *, handle_signals: bool = False) -> Runtime:
    """The shared services for one app (nothing connects until startup)."""
    metrics = Metrics()
    store = Store.from_url(settings.database.url, echo=settings.database.echo)
    matcher = settings.matcher
    build = classifier_builder(
        matcher.semantic.model,
        cache_dir=matcher.semantic.cache_dir,
        thresholds=matcher.thresholds,
        target_precision=matcher.target_precision,
    )
    kb = KbService(
        settings.kb.paths, matcher.thresholds, build=build, metrics=metrics, learned=settings.kb.learned
    )
    adapters: dict[AdapterKey, ChannelAdapter] = {}  # filled by create_app; the outbox reads the same dict
    outbox = Outbox(store, settings.outbox, adapters, metrics=metrics)
    pipeline = Pipeline(
        store, kb, settings.pipeline, settings.conversation.lifecycle, outbox=outbox, metrics=metrics
    )
    install_actions(pipeline, settings.actions, store, metrics)
    pipeline.placeholders = answer_placeholders(settings)
    directory = spool_directory(
        settings.pipeline.spool_dir, settings.database.url, sqlite_file(settings.database.url)
    )
    return Runtime(
        settings=settings,
        store=store,
        kb=kb,
        pipeline=pipeline,
        outbox=outbox,
        metrics=metrics,
        adapters=adapters,
        coord=build_coordination(settings.redis),
        handle_signals=handle_signals,
        spool=None if directory is None else Spool(directory),
        media=Media(settings.uploads),
    )


# --- resources (cleanup_ctx, in order) -------------------------------------------------------------


async def _database(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    await runtime.store.create_all()
    if runtime.media is not None:
        await runtime.media.start()
    yield
    await runtime.store.dispose()


async def _coordination(app: web.Application) -> AsyncIterator[None]:
    coord = app[RUNTIME].coord
    await coord.start()
    yield
    await coord.stop()


async def _http_session(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    session = aiohttp.ClientSession(timeout=OUTBOUND_TIMEOUT, headers={"User-Agent": USER_AGENT})
    runtime.attach_http(session)
    yield
    runtime.attach_http(None)
    await session.close()


async def _knowledge_base(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    settings = runtime.settings.kb
    report = await runtime.kb.reload(reason="startup")
    if runtime.kb.snapshot() is None:
        logger.error("no knowledge base loaded: every question is handed to a human until the FAQ is fixed")
    elif not report.ok:
        logger.error("knowledge base has errors")
    watcher = (
        asyncio.create_task(runtime.kb.watch(settings.watch_interval_s), name="kefu-kb-watch")
        if settings.watch
        else None
    )
    loop = asyncio.get_running_loop()
    sighup = False
    if runtime.handle_signals and hasattr(signal, "SIGHUP"):

        def on_sighup() -> None:
            runtime.spawn(runtime.kb.reload(reason="SIGHUP"), name="kefu-kb-sighup")

        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGHUP, on_sighup)
            sighup = True
    yield
    if sighup:
        loop.remove_signal_handler(signal.SIGHUP)
    if watcher is not None:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher


async def _adapters(app: web.Application) -> AsyncIterator[None]:
    # Optional hooks: adapters with background work (token refreshers) start after the session exists.
    runtime = app[RUNTIME]
    started = []
    for adapter in runtime.adapters.values():
        startup = getattr(adapter, "startup", None)
        if startup is not None:
            await startup()
        started.append(adapter)
    yield
    for adapter in reversed(started):
        shutdown = getattr(adapter, "shutdown", None)
        if shutdown is not None:
            try:
                await shutdown()
            except Exception:
                logger.exception("shutting down adapter %s/%s failed", adapter.channel, adapter.account)


async def _close_connections(app: web.Application) -> None:
    # on_shutdown runs before aiohttp waits for open handlers: an adapter's long-lived WebSockets (OneBot
    # reverse WS) would otherwise hold shutdown up until the timeout.
    for adapter in app[RUNTIME].adapters.values():
        close = getattr(adapter, "close_connections", None)
        if close is not None:
            try:
                await close()
            except Exception:
                logger.exception("closing connections of %s/%s failed", adapter.channel, adapter.account)


async def stop_sending(app: web.Application) -> None:
    """Stop the outbox as the shutdown begins, not after aiohttp's wait for open handlers (up to 10 s):
    a send begun in that wait and still under way after it would be cut off, a possible double after the
    restart. Rows stored meanwhile wait for the next process: the restarted one, or another replica of a
    rolling deploy (when every process stops, until the next start).

    `kefu serve` calls it before aiohttp's cleanup (gateway.serve.shut_down: the open connections are
    still read during the grace); as the first shutdown hook it also stops the outbox of an app run by any
    other runner (the tests'), before the adapters close their WebSockets; a second call does nothing."""
    try:
        await app[RUNTIME].outbox.stop()
    except Exception:
        # An exception in on_shutdown would skip the rest of the shutdown (the wait, the clean-up).
        logger.exception("stopping the outbox failed")


async def _outbox_worker(app: web.Application) -> AsyncIterator[None]:
    runtime = app[RUNTIME]
    runtime.outbox.start()
    yield
    await runtime.outbox.stop()  # done already when the shutdown ran (stop_sending); a no-op then


async def _spool_replay(app: web.Application) -> AsyncIterator[None]:
    # Messages acknowledged from the spool (a crash, or a store that failed) go into the database first.
    runtime = app[RUNTIME]
    if runtime.spool is None:
        yield
        return

    async def store(message: Message) -> PipelineResult:
        # Deduped: a stored one is found. A platform retry arriving meanwhile joins this (its result).
        result = await runtime.pipeline.handle(message, outbox="pending")
        runtime.outbox.wake()
        return result

    task = asyncio.create_task(runtime.spool.run(store), name="kefu-spool")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _tasks(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[RUNTIME].drain_tasks()


# --- middleware and system routes ---------------------------------------------------------------------


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """No tracebacks to clients: HTTP errors get a short JSON body, unexpected errors are logged once."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json" or not _simple(exc):
            raise
        default = f"{exc.status}: {exc.reason}"
        message = exc.text if exc.text and exc.text != default else exc.reason
        raise http_error(type(exc), message, headers=_kept_headers(exc)) from None
    except asyncio.CancelledError:
        raise
    except CoordUnavailable as exc:
        # Redis is down: say so and when to come back; nothing was half done (see gateway/coord/).
        raise http_error(
            web.HTTPServiceUnavailable,
            "temporarily unavailable, please retry",
            headers={"Retry-After": str(exc.retry_after_s)},
        ) from None
    except Exception as exc:
        if isinstance(exc, ConnectionResetError) and client_gone(request):
            # The client hung up while its answer was being written (a console reset right after its
            # WebSocket upgrade): nobody to answer, nothing to report. aiohttp drops the answer quietly.
            logger.debug("client gone during %s %s", request.method, request.path)
            return web.Response(status=CLIENT_CLOSED, reason="Client Closed Request")
        if is_database_error(exc):
            logger.error(
                "database error on %s %s: %s", request.method, request.path, type(exc).__name__, exc_info=exc
            )
            raise http_error(web.HTTPServiceUnavailable, "temporarily unavailable, please retry") from None
        logger.exception("unhandled error on %s %s", request.method, request.path)
        raise http_error(web.HTTPInternalServerError, "internal error") from None


def _simple(exc: web.HTTPException) -> bool:
    # Exceptions whose constructors need extra arguments (405, 413) keep aiohttp's own plain-text body.
    try:
        type(exc)(text="x")
    except TypeError:
        return False
    return True


def _kept_headers(exc: web.HTTPException) -> dict[str, str]:
    return {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "www-authenticate", "retry-after")}


# Late /healthz database checks finishing their clean-up in the background (kept referenced until done).
_LEFT_BEHIND: set[asyncio.Task[tuple[bool, int]]] = set()


async def _database_check(runtime: Runtime) -> tuple[bool, int]:
    """The database answers, and how many outbox rows are failing (see healthz)."""
    if not await runtime.store.ping():
        return False, 0
    return True, await runtime.store.failing_outbox(utcnow(), runtime.settings.outbox.give_up_after)


def _forget(task: asyncio.Task[tuple[bool, int]]) -> None:
    _LEFT_BEHIND.discard(task)
    if not task.cancelled() and task.exception() is not None:  # retrieved: no "never retrieved" noise
        logger.debug("healthz: a late database check failed: %s", type(task.exception()).__name__)


async def healthz(request: web.Request) -> web.Response:
    """Liveness and readiness: the database answers (quickly) and a knowledge base is loaded.

    `degraded` also while outbox rows are failing (retried on the slow schedule): answers are late.
    """
    runtime = request.app[RUNTIME]
    failing = 0
    # A hung database (a frozen PostgreSQL, a lock) must not hang the probe: 503 within the bound. The
    # check runs as a task of its own and is left behind when late: a cancelled query still closes its
    # connection, which waits on the frozen server, and a timeout around it would wait for that too.
    check = asyncio.create_task(_database_check(runtime))
    try:
        done, _ = await asyncio.wait({check}, timeout=HEALTH_DB_TIMEOUT_S)
    finally:
        if not check.done():  # late, or this probe itself cancelled: the check finishes on its own
            check.cancel()
            _LEFT_BEHIND.add(check)
            check.add_done_callback(_forget)
    if not done:
        logger.warning("healthz: the database did not answer within %.1fs", HEALTH_DB_TIMEOUT_S)
        db_ok = False
    else:
        try:
            db_ok, failing = check.result()
        except Exception as exc:
            if not is_database_error(exc):
                raise
            db_ok = False
    runtime.metrics.outbox_failing.set(failing)
    kb = runtime.kb.status()
    redis_ok = await runtime.coord.ok()
    if not db_ok or not kb["loaded"]:
        status = "down"
    elif kb["errors"] or failing or redis_ok is False:
        # Serving the last good FAQ / answers waiting on a failing platform API / Redis down: the paths
        # that need it answer 503 with Retry-After, the rest (agent console, reads) still work.
        status = "degraded"
    else:
        status = "ok"
    body = {
        "status": status,
        "pid": os.getpid(),  # which process answered (kefu serve --workers N)
        "db": {"ok": db_ok, "dialect": runtime.store.dialect},
        "kb": kb,
        "outbox": {"failing": failing},
    }
    if redis_ok is not None:
        body["redis"] = {"ok": redis_ok}
    return web.json_response(body, status=200 if status != "down" else 503, dumps=_dumps)


async def metrics_view(request: web.Request) -> web.Response:
    """Prometheus exposition; database gauges are refreshed at scrape time."""
    runtime = request.app[RUNTIME]
    try:
        counts = await runtime.store.outbox_counts()
        for status, count in counts.items():
            runtime.metrics.outbox.labels(status).set(count)
        runtime.metrics.outbox_failing.set(
            await runtime.store.failing_outbox(utcnow(), runtime.settings.outbox.give_up_after)
        )
        runtime.metrics.queue_length.set(await runtime.store.count_conversations(ConversationState.QUEUED))
    except Exception as exc:
        if not is_database_error(exc):
            raise
        logger.warning("metrics: database gauges not refreshed: %s", type(exc).__name__)
    response = web.Response(body=runtime.metrics.render())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)
