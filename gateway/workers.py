"""`kefu serve --workers N`: N gateway processes on one port, kept alive by a small supervisor.

Each worker is a full `kefu serve` (its own interpreter and event loop, the same --config and `KEFU_*`
variables) whose listening socket sets SO_REUSEPORT, so the kernel spreads new connections over the
workers. The supervisor only watches: it migrates the database once before starting them (they then
find it at head), restarts a worker that dies (after a pause if it keeps dying at start-up), and on
SIGTERM/SIGINT passes SIGTERM on, waits for every worker to finish its requests, then exits.

Several processes share nothing but the database and Redis, so: SQLite (one writer, one process) is
refused, and PostgreSQL needs `redis.url` (in-flight WeChat deliveries, tokens, limits, presence).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.settings import Settings
from gateway.storage import is_database_error, safe_url

logger = logging.getLogger(__name__)

PROCESSES_ENV = "KEFU_PROCESSES"  # how many processes the deployment runs (the workers' own start-up check)
STOP_TIMEOUT_S = 20.0  # a worker's graceful stop (10 s of aiohttp shutdown, then the background work)
QUICK_DEATH_S = 10.0  # a worker that dies sooner after its start is failing at start-up
MAX_QUICK_DEATHS = 5  # in a row: the supervisor gives up (a bad config, a taken port) and says so

__all__ = ["WorkersRefused", "check_workers", "run_workers"]


class WorkersRefused(Exception):
    """This deployment must not run several processes (said to the operator as is)."""


def check_workers(settings: Settings, workers: int) -> None:
    """Refuse several processes where they would not be safe; nothing to say for one."""
    if workers <= 1:
        return
    url = settings.database.url
    if url.startswith("sqlite"):
        raise WorkersRefused(
            f"--workers {workers}: SQLite is one process (one writer at a time, in-process write queue); "
            "run one process, or use PostgreSQL (database.url) with Redis (redis.url) for several"
        )
    # `redis` is read defensively: the section arrives with the Redis coordination layer (issue 16).
    redis_url = getattr(getattr(settings, "redis", None), "url", None)
    if not redis_url:
        raise WorkersRefused(
            f"--workers {workers} on PostgreSQL needs Redis to coordinate the processes (in-flight WeChat "
            "deliveries, access tokens, rate limits, agent connections): without it a retried message "
            "could be answered twice. Set redis.url (e.g. redis://127.0.0.1:6379/0) or run one process"
        )
    if settings.server.port == 0:
        raise WorkersRefused("--workers needs a fixed port (server.port / --port), not 0")


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    quick_deaths: int = 0
    restarts: int = field(default=0)


def _migrate_once(settings: Settings) -> None:
    """Upgrade the schema before the workers start (each would wait on the advisory lock otherwise)."""
    from gateway.storage import Store

    async def run() -> None:
        store = Store.from_url(settings.database.url)
        try:
            await store.create_all()
        finally:
            await store.dispose()

    try:
        asyncio.run(run())
    except Exception as exc:
        if not is_database_error(exc):
            raise
        raise WorkersRefused(f"cannot use the database {safe_url(settings.database.url)}: {exc}") from None


def run_workers(settings: Settings, workers: int, worker_args: Sequence[str]) -> int:
    """Supervise `workers` processes of `kefu serve <worker_args>` until SIGTERM/SIGINT; the exit code."""
    check_workers(settings, workers)
    _migrate_once(settings)
    env = {**os.environ, PROCESSES_ENV: str(workers)}
    command = [sys.executable, "-m", "gateway.cli", "serve", *worker_args]
    pool = [_Worker(i) for i in range(workers)]
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        for worker in pool:
            _start(worker, command, env)
        print(
            f"kefu serve: {workers} workers on {settings.server.host}:{settings.server.port} "
            f"(pids {', '.join(str(w.process.pid) for w in pool if w.process)}; supervisor {os.getpid()})",
            flush=True,
        )
        failed = False
        while not stopping:
            time.sleep(0.2)  # the supervisor has nothing else to do; signals interrupt the sleep
            for worker in pool:
                if stopping or worker.process is None or worker.process.poll() is None:
                    continue
                code = worker.process.returncode
                quick = time.monotonic() - worker.started_at < QUICK_DEATH_S
                worker.quick_deaths = worker.quick_deaths + 1 if quick else 0
                logger.error(
                    "worker %d (pid %d) exited with %s; restarting", worker.index, worker.process.pid, code
                )
                if worker.quick_deaths >= MAX_QUICK_DEATHS:
                    logger.error("worker %d keeps failing at start-up: stopping every worker", worker.index)
                    failed = stopping = True
                    break
                if quick:
                    time.sleep(min(5.0, 0.5 * 2**worker.quick_deaths))  # a crash loop, not a busy one
                worker.restarts += 1
                _start(worker, command, env)
        _stop_all(pool)
        return 1 if failed else 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _start(worker: _Worker, command: Sequence[str], env: dict[str, str]) -> None:
    worker.process = subprocess.Popen([*command, "--worker-id", str(worker.index)], env=env)
    worker.started_at = time.monotonic()
    logger.info("worker %d started: pid %d", worker.index, worker.process.pid)


def _stop_all(pool: Sequence[_Worker]) -> None:
    running = [w.process for w in pool if w.process is not None and w.process.poll() is None]
    for process in running:
        process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.error("worker pid %d did not stop within %.0fs: killed", process.pid, STOP_TIMEOUT_S)
            process.kill()
            process.wait()
