"""Crash scenarios: kill -9 of `kefu serve` mid-burst, and SQLite's write lock held 8 s and 40 s.
(chaos.postgres and chaos.workers add PostgreSQL restarts and freezes, and `kefu serve --workers 2`.)

`python -m chaos.crash [--only NAME] [--count N]` (or through `python -m chaos` once it imports this module).
Each scenario runs a real `kefu serve` subprocess with a WeChat account whose 客服消息 API is the fake of
tests/fakes/wechat_api.py (served here over real HTTP, recording every accepted send), and plays WeChat:
signed text messages, each from its own customer, 32 at a time, every MsgId tried up to 3 times (5 s client
timeout, as WeChat does). It counts, per MsgId:
- lost: acknowledged (HTTP 200) but not stored after the run;
- never_answered: acknowledged, but neither a passive reply came back nor a 客服消息 reached the customer;
- doubled: the customer got the answer more than once (a passive reply counts once, every send counts).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from chaos.gateway import free_port, serve, wait_healthy
from chaos.harness import Options, Result, report, scenario
from tests.fakes.wechat_api import APPID, SECRET, FakeWeChatAPI, fixture_xml

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "chaos-crash-token"
TRIES = 3  # WeChat tries a message three times
CLIENT_TIMEOUT_S = 5.0  # and waits 5 s for each answer
CONCURRENCY = 32
QUESTION = "支持哪些支付方式"


def _sign(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


@dataclass
class Gateway:
    """A `kefu serve` subprocess on its own port, SQLite file and log."""

    workdir: Path
    api_base: str
    deadline_s: float
    port: int = field(default_factory=free_port)
    process: asyncio.subprocess.Process | None = None
    db_url: str | None = None  # None: a SQLite file in workdir

    @property
    def spool_dir(self) -> Path:
        """kefu's default inbound spool: beside the SQLite file, else data/spool in its working directory."""
        return self.workdir / ("kefu.db-spool" if self.db_url is None else "data/spool")

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite+aiosqlite:///{self.db_path}"

    async def count(self, sql: str) -> int:
        """One count from the gateway's database (0 when it cannot answer right now)."""
        rows = await self.rows(sql)
        return int(rows[0][0]) if rows else 0

    async def rows(self, sql: str) -> list[tuple[Any, ...]]:
        if self.db_url is None:
            return await asyncio.to_thread(_sqlite_rows, self.db_path, sql)
        import asyncpg

        try:
            conn = await asyncpg.connect(self.db_url.replace("+asyncpg", ""), timeout=10)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return []
        try:
            return [tuple(r) for r in await conn.fetch(sql, timeout=30)]
        finally:
            await conn.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        return self.workdir / "kefu.db"

    def config(self) -> dict[str, Any]:
        return {
            "server": {"host": "127.0.0.1", "port": self.port},
            "database": {"url": self.database_url},
            "kb": {"paths": [str(ROOT / "config" / "faq")], "watch": False},
            "pipeline": {"wechat_reply_deadline_s": self.deadline_s},
            "outbox": {"poll_interval_s": 0.2, "base_delay_s": 0.2, "max_delay_s": 2.0, "lease_s": 5.0},
            "channels": {
                "wechat": [
                    {
                        "name": "shop",
                        "token": TOKEN,
                        "appid": APPID,
                        "secret": SECRET,
                        "api_base": self.api_base,
                    }
                ]
            },
        }

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "gateway.yaml"
        path.write_text(yaml.safe_dump(self.config(), allow_unicode=True), encoding="utf-8")
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
        self.process = await serve(path, self.workdir, env, self.workdir / "kefu.log")
        await wait_healthy(self.process, self.url, lambda: f"see {self.workdir / 'kefu.log'}")

    async def kill9(self) -> int:
        """SIGKILL now; returns how many outbox rows were `sending` at that moment (sends in flight)."""
        assert self.process is not None
        in_flight = await self.count("SELECT count(*) FROM outbox WHERE status = 'sending'")
        self.process.kill()
        await self.process.wait()
        return in_flight

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


def _sqlite_rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
            return list(conn.execute(sql).fetchall())
    except sqlite3.Error:
        return []


@dataclass
class Customer:
    """One message (one customer: its answer is recognisable by openid) and what WeChat saw."""

    openid: str
    msg_id: str
    acked: bool = False
    passive: bool = False
    statuses: list[str] = field(default_factory=list)
    # (start, end) of each try on the monotonic clock, beside `statuses`: a scenario that freezes a process
    # on purpose tells the tries it froze from a hang elsewhere.
    spans: list[tuple[float, float]] = field(default_factory=list)


async def _deliver(http: aiohttp.ClientSession, gateway: Gateway, customer: Customer) -> None:
    """WeChat's side of one message: up to TRIES POSTs until one gets a 200."""
    body = fixture_xml("text.xml", FromUserName=customer.openid, MsgId=customer.msg_id, Content=QUESTION)
    for _ in range(TRIES):
        timestamp, nonce = str(int(time.time())), str(random.randint(1, 10**9))
        query = {"signature": _sign(TOKEN, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
        started = time.monotonic()
        try:
            async with http.post(
                f"{gateway.url}/wechat/shop",
                params=query,
                data=body.encode(),
                timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S),
            ) as resp:
                text = await resp.text()
                customer.statuses.append(str(resp.status))
                customer.spans.append((started, time.monotonic()))
                if resp.status == 200:
                    customer.acked = True
                    customer.passive = customer.passive or "<Content>" in text
                    return
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            customer.statuses.append(type(exc).__name__)
            customer.spans.append((started, time.monotonic()))
        # WeChat retries after its timeout; a refused connection (gateway down) waits like it.
        await asyncio.sleep(max(0.0, min(CLIENT_TIMEOUT_S, 1.0) - (time.monotonic() - started)))


async def _burst(
    gateway: Gateway,
    customers: list[Customer],
    *,
    kill_after: int | None,
    result: Result,
    fault: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Send every message, CONCURRENCY at a time; once `kill_after` were acked, run `fault` (default:
    kill -9 and restart the gateway) while the burst goes on."""
    queue: asyncio.Queue[Customer] = asyncio.Queue()
    for c in customers:
        queue.put_nowait(c)

    async def worker(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            await _deliver(http, gateway, queue.get_nowait())

    async def killer() -> None:
        if kill_after is None:
            return
        while sum(c.acked for c in customers) < kill_after:  # noqa: ASYNC110 (counts kept by the workers)
            await asyncio.sleep(0.01)
        if fault is not None:
            await fault()
            return
        result.counts["in_flight_at_kill"] = await gateway.kill9()
        await gateway.start()

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(killer(), *(worker(http) for _ in range(CONCURRENCY)))


async def _drain(gateway: Gateway, within_s: float = 180.0) -> None:
    """Wait until the spool is empty and no outbox row is held, pending or sending (held rows of a killed
    process end after 30 s)."""
    deadline = time.monotonic() + within_s
    sql = "SELECT count(*) FROM outbox WHERE status IN ('held', 'pending', 'sending')"

    def spooled() -> int:
        return len(list(gateway.spool_dir.glob("*.json"))) if gateway.spool_dir.is_dir() else 0

    while time.monotonic() < deadline:
        if not await asyncio.to_thread(spooled) and not await gateway.count(sql):
            return
        await asyncio.sleep(0.5)


async def _score(gateway: Gateway, api: FakeWeChatAPI, customers: list[Customer], result: Result) -> None:
    rows = await gateway.rows("SELECT channel_msg_id FROM messages WHERE direction = 'in'")
    stored = {row[0] for row in rows}
    sends: dict[str, int] = {}
    for m in api.messages:
        sends[m.get("touser", "")] = sends.get(m.get("touser", ""), 0) + 1
    lost = doubled = never = 0
    for c in customers:
        got = int(c.passive) + sends.get(c.openid, 0)
        if c.acked and c.msg_id not in stored:
            lost += 1
            result.examples.append(f"lost: MsgId {c.msg_id} acked ({c.statuses}) but not stored")
        if c.acked and got == 0:
            never += 1
            result.examples.append(f"never answered: MsgId {c.msg_id} ({c.statuses})")
        doubled += max(0, got - 1)
    tries = [status for c in customers for status in c.statuses]
    result.counts.update(
        # A try WeChat gave up on after its 5 s: the gateway hung (the spool acknowledges by the deadline).
        **{"hangs>5s": sum(status == "TimeoutError" for status in tries)},
        # 503s tell WeChat to retry (the store failed, e.g. the database was down): reported, not a fault.
        answered_5xx=sum(status.startswith("5") for status in tries),
        inputs=len(customers),
        acked=sum(c.acked for c in customers),
        stored=len(stored),
        lost=lost,
        doubled=doubled,
        never_answered=never,
    )


async def _serve_fake_api() -> tuple[FakeWeChatAPI, web.AppRunner]:
    api = FakeWeChatAPI()
    runner = web.AppRunner(api.app(), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    api.url = f"http://127.0.0.1:{port}"
    return api, runner


async def _kill_mid_burst(options: Options, deadline_s: float) -> Result:
    result = Result()
    api, runner = await _serve_fake_api()
    count = min(options.count, 2000)
    customers = [Customer(f"oChaos{i:05d}", str(7_100_000_000 + i)) for i in range(count)]
    with tempfile.TemporaryDirectory(prefix="kefu-chaos-") as tmp:
        gateway = Gateway(Path(options.workdir or tmp) / f"kill-{deadline_s:g}", api.url, deadline_s)
        try:
            await gateway.start()
            await _burst(gateway, customers, kill_after=count // 3, result=result)
            await _drain(gateway)
            await _score(gateway, api, customers, result)
        finally:
            await gateway.stop()
            await runner.cleanup()
    return result


@scenario("kill9-burst", "kill -9 of kefu serve mid-burst: 2,000 signed WeChat texts, 32 at a time")
async def kill9_burst(options: Options) -> Result:
    return await _kill_mid_burst(options, deadline_s=4.0)


@scenario("kill9-burst-tiny-deadline", "the same with a 0.05 s reply deadline (the deferred path)")
async def kill9_burst_tiny(options: Options) -> Result:
    return await _kill_mid_burst(options, deadline_s=0.05)


def _hold_write_lock(db: Path, seconds: float, started: threading.Event) -> None:
    conn = sqlite3.connect(db, timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        started.set()
        time.sleep(seconds)
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def _sqlite_lock(options: Options, hold_s: float, kill_at_s: float | None) -> Result:
    """Hold SQLite's write lock, post a few signed texts; optionally kill -9 mid-wait and restart."""
    result = Result()
    api, runner = await _serve_fake_api()
    customers = [Customer(f"oLock{i:03d}", str(7_200_000_000 + i)) for i in range(8)]
    with tempfile.TemporaryDirectory(prefix="kefu-chaos-") as tmp:
        gateway = Gateway(Path(options.workdir or tmp) / f"lock-{hold_s:g}", api.url, 4.0)
        try:
            await gateway.start()
            started = threading.Event()
            holder = asyncio.create_task(
                asyncio.to_thread(_hold_write_lock, gateway.db_path, hold_s, started)
            )
            await asyncio.to_thread(started.wait)

            async def crash() -> None:
                if kill_at_s is not None:
                    await asyncio.sleep(kill_at_s)
                    result.counts["in_flight_at_kill"] = await gateway.kill9()
                    await gateway.start()

            async with aiohttp.ClientSession() as http:
                await asyncio.gather(crash(), *(_deliver(http, gateway, c) for c in customers))
            await holder
            # Messages WeChat gave up on (never acknowledged) are not "lost"; the gateway must not have
            # acknowledged any message it did not store.
            await _drain(gateway)
            await _score(gateway, api, customers, result)
        finally:
            await gateway.stop()
            await runner.cleanup()
    return result


@scenario("sqlite-lock-8s-kill9", "SQLite write lock held 8 s, kill -9 at 4.3 s, restart")
async def sqlite_lock_8s(options: Options) -> Result:
    return await _sqlite_lock(options, hold_s=8.0, kill_at_s=4.3)


@scenario("sqlite-lock-40s", "SQLite write lock held 40 s (WeChat's three tries all time out)")
async def sqlite_lock_40s(options: Options) -> Result:
    return await _sqlite_lock(options, hold_s=40.0, kill_at_s=None)


CRASH_SCENARIOS = (
    "kill9-burst",
    "kill9-burst-tiny-deadline",
    "sqlite-lock-8s-kill9",
    "sqlite-lock-40s",
    "pg-restart",
    "pg-freeze",
    "workers-kill9",
    "workers-kill9-retry-elsewhere",
    "workers-kill9-tiny-deadline",
)


def main(argv: list[str] | None = None) -> int:
    """Run the crash scenarios and print the table (0 when every row is ok)."""
    import chaos.postgres  # noqa: F401  (registers the PostgreSQL scenarios)
    import chaos.workers  # noqa: F401  (and `kefu serve --workers 2` on PostgreSQL + Redis)
    from chaos.harness import run

    parser = argparse.ArgumentParser(prog="python -m chaos.crash", description=__doc__)
    parser.add_argument("--only", action="append", choices=CRASH_SCENARIOS)
    parser.add_argument("--count", type=int, default=2000, help="messages per burst (default 2000)")
    parser.add_argument("--workdir", help="keep each gateway's config, database and log here")
    args = parser.parse_args(argv)
    options = Options(count=args.count, workdir=args.workdir)
    results = asyncio.run(run(args.only or list(CRASH_SCENARIOS), options))
    return report(results)


if __name__ == "__main__":
    sys.exit(main())
