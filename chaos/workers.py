"""Several-process scenarios: `kefu serve --workers 2` on PostgreSQL + Redis, one worker killed mid-burst.

`python -m chaos.workers [--only NAME] [--count N]` (or `python -m chaos.crash --only NAME`). Each run makes
a PostgreSQL database of its own on the machine's server (`kefu_chaos_<hex>`, dropped afterwards) and uses
one Redis DB number of its own (`KEFU_CHAOS_REDIS_DB`, default 12; flushed before and after), starts the
supervisor of `kefu serve --workers 2` (two processes on one port, SO_REUSEPORT) with the fake 客服消息
API of tests/fakes/wechat_api.py, and plays WeChat as chaos.crash does: signed texts, each from its own
customer, 32 at a time, every MsgId tried up to 3 times with a 5 s timeout. Every try opens a new
connection (as WeChat's servers do), so the kernel spreads the tries, retries included, over both workers.

- `workers-kill9`: a third into the burst, kill -9 of one worker (a child of the supervisor, which starts
  it again); the requests it held are reset and WeChat's retries reach the other worker (its port
  socket is gone until the new one listens) or the restarted one;
- `workers-kill9-retry-elsewhere`: a third into the burst one worker is frozen (SIGSTOP) for longer than
  WeChat's 5 s wait, so the tries it holds (claimed in Redis, some stored, some with held replies, some
  inside a PostgreSQL transaction) time out and WeChat retries them; retries that reach the other worker
  find the frozen owner's claim and wait for its outcome, and the frozen worker is killed while they
  wait. This is the case the shared in-flight state (gateway/coord/inflight.py) is for;
- `workers-kill9-tiny-deadline`: `workers-kill9` with a 0.05 s reply deadline, so nearly every answer is
  spooled, acknowledged and sent by the outbox of one of the two processes (leases, resumed rows).

Scored per MsgId from what the customer saw (the passive reply in the HTTP answer) and what the fake API
accepted (客服消息 sends): `doubled` = answers beyond one; `never_answered` = acknowledged but no answer;
`lost` = acknowledged but not stored; `stored_twice` = MsgIds stored as two inbound rows; `5xx` = answers
500-599 other than 503 (503 asks WeChat to retry, reported as `answered_503`); `tracebacks` = "Traceback"
lines in the log of the supervisor and its workers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import redis.asyncio as aioredis
import yaml

from chaos.crash import ROOT, Customer, Gateway, _deliver, _drain, _score, _serve_fake_api
from chaos.gateway import START_TIMEOUT_S, with_this_checkout
from chaos.harness import Options, Result, report, run, scenario
from tests.fakes.wechat_api import FakeWeChatAPI

PG_ADMIN = os.environ.get("KEFU_CHAOS_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_BASE = os.environ.get("KEFU_CHAOS_REDIS", "redis://127.0.0.1:6379")
# Not the tests' DB 9: a run flushes its DB, and tests may run beside it.
REDIS_DB = int(os.environ.get("KEFU_CHAOS_REDIS_DB", "12"))
REDIS_PREFIX = "kefu-chaos"
WORKERS = 2
CONCURRENCY = 32
FREEZE_S = 5.5  # longer than WeChat's 5 s wait: every try the frozen worker holds times out and is retried
# The supervisor's own line for the kill we cause; any other ERROR line is an example worth reading.
EXPECTED_ERRORS = ("exited with -9; restarting",)


@dataclass
class Workers(Gateway):
    """The supervisor of `kefu serve --workers N` on a PostgreSQL database and a Redis DB of the run's own."""

    redis_url: str = ""
    workers: int = WORKERS

    @property
    def log_path(self) -> Path:
        return self.workdir / "kefu.log"

    def config(self) -> dict[str, Any]:
        config = super().config()
        config["redis"] = {"url": self.redis_url, "prefix": REDIS_PREFIX}
        # 质检's default rules path is relative (config/qa.yaml) and the workers run in workdir: without this,
        # an ERROR line at every start-up that is the harness's, not the gateway's.
        config["qa"] = {"path": str(ROOT / "config" / "qa.yaml")}
        return config

    async def start(self) -> None:
        """Start the supervisor and wait until each of its workers has answered /healthz itself."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / "gateway.yaml"
        path.write_text(yaml.safe_dump(self.config(), allow_unicode=True), encoding="utf-8")
        env = with_this_checkout({k: v for k, v in os.environ.items() if not k.startswith("KEFU_")})
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gateway.cli", "serve", "--config", str(path),
                "--workers", str(self.workers), cwd=self.workdir, env=env, stdout=log, stderr=log,
            )  # fmt: skip
        await self.wait_workers(START_TIMEOUT_S)

    def worker_pids(self) -> list[int]:
        """The supervisor's children (its workers), from /proc."""
        assert self.process is not None
        pid = self.process.pid
        with contextlib.suppress(OSError):
            return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        children = []  # a kernel without CONFIG_PROC_CHILDREN: the parent pid of every process
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    children.append(int(stat.parent.name))
        return children

    async def wait_workers(self, timeout_s: float) -> float:
        """Until `workers` children run and each answered /healthz (its `pid`); the seconds it took.

        Each probe is a new connection, so the kernel's SO_REUSEPORT choice varies and reaches every worker.
        """
        started = time.monotonic()
        deadline = started + timeout_s
        seen: set[int] = set()
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as http:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.returncode is not None:
                    raise RuntimeError(f"kefu serve --workers exited: see {self.log_path}")
                pids = set(self.worker_pids())
                if len(pids) == self.workers and pids <= seen:
                    return time.monotonic() - started
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError, ValueError):
                    async with http.get(self.url + "/healthz", timeout=aiohttp.ClientTimeout(total=5)) as r:
                        seen.add(int((await r.json()).get("pid", 0)))
                await asyncio.sleep(0.05)
        raise RuntimeError(f"the workers did not all answer /healthz within {timeout_s:g} s")

    async def stop(self) -> None:
        """SIGTERM to the supervisor (it stops its workers, 20 s each at most); leftovers are killed by pid."""
        if self.process is None or self.process.returncode is not None:
            return
        pids = self.worker_pids()
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), 45)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        for pid in pids:  # only the workers this run's supervisor started
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def log_findings(self) -> tuple[list[str], list[str]]:
        """(traceback lines with the line before each, unexpected ERROR lines) of the whole log."""
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        tracebacks = [
            f"{lines[i - 1][:200] if i else ''} / {line}"
            for i, line in enumerate(lines)
            if "Traceback" in line
        ]
        errors = [
            line[:300]
            for line in lines
            if " ERROR " in line or '"level": "ERROR"' in line or '"levelname": "ERROR"' in line
            if not any(expected in line for expected in EXPECTED_ERRORS)
        ]
        return tracebacks, errors


async def _create_database() -> str:
    """A fresh database on the machine's PostgreSQL; its SQLAlchemy URL."""
    name = f"kefu_chaos_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(PG_ADMIN, timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


async def _drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(PG_ADMIN, timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def _flush_redis(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


async def _open_claims(url: str) -> int:
    """In-flight records in Redis without an outcome: messages some request is still deciding about."""
    client = aioredis.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{REDIS_PREFIX}:inflight:*", count=500)]
        return sum([not await client.hexists(key, "outcome") for key in keys])
    finally:
        await client.aclose()


async def _burst(gateway: Workers, customers: list[Customer], fault_after: int, fault: Any) -> None:
    """Every message, CONCURRENCY at a time, each try on a new connection; `fault()` once `fault_after`
    messages were acknowledged, while the burst goes on."""
    queue: asyncio.Queue[Customer] = asyncio.Queue()
    for customer in customers:
        queue.put_nowait(customer)

    async def client(http: aiohttp.ClientSession) -> None:
        while not queue.empty():
            await _deliver(http, gateway, queue.get_nowait())

    async def injector() -> None:
        while sum(c.acked for c in customers) < fault_after:  # noqa: ASYNC110 (counts kept by the clients)
            await asyncio.sleep(0.01)
        await fault()

    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        await asyncio.gather(injector(), *(client(http) for _ in range(CONCURRENCY)))


async def _workers_scenario(
    options: Options, name: str, freeze_s: float | None, deadline_s: float = 4.0
) -> Result:
    """One run: the database, Redis DB, supervisor, burst, fault, drain and score."""
    result = Result()
    frozen: list[float] = []  # [SIGSTOP, SIGKILL] on the monotonic clock
    api, runner = await _serve_fake_api()
    count = min(options.count, 2000)
    base = 7_600_000_000 + 100_000_000 * WORKERS_SCENARIOS.index(name)
    customers = [Customer(f"oWk{name[-5:]}{i:05d}", str(base + i)) for i in range(count)]
    redis_url = f"{REDIS_BASE}/{REDIS_DB}"
    await _flush_redis(redis_url)
    db_url = await _create_database()
    with tempfile.TemporaryDirectory(prefix="kefu-chaos-workers-") as tmp:
        gateway = Workers(
            Path(options.workdir or tmp) / name, api.url, deadline_s, db_url=db_url, redis_url=redis_url
        )

        async def fault() -> None:
            victim = random.choice(gateway.worker_pids())
            if freeze_s is not None:
                os.kill(victim, signal.SIGSTOP)
                frozen.append(time.monotonic())
                await asyncio.sleep(freeze_s)
            # What the victim left undecided, as far as the database and Redis tell (diagnostics only).
            result.counts["in_flight_at_kill"] = await gateway.count(
                "SELECT count(*) FROM outbox WHERE status = 'sending'"
            )
            result.counts["open_claims_at_kill"] = await _open_claims(redis_url)
            os.kill(victim, signal.SIGKILL)
            frozen.append(time.monotonic())
            # The supervisor notices within 0.2 s and starts another; the burst goes on meanwhile.
            result.counts["restart_s"] = round(await gateway.wait_workers(START_TIMEOUT_S), 1)
            if victim in gateway.worker_pids():
                result.examples.append(f"worker {victim} still listed after kill -9")

        try:
            await gateway.start()
            await _burst(gateway, customers, count // 3, fault)
            await _drain(gateway)
            await _score(gateway, api, customers, result)
            await _score_more(gateway, customers, result)
            await _explain_unanswered(gateway, api, customers, result)
            if frozen and len(frozen) == 2:
                # WeChat giving up on the frozen worker is the fault itself, not a hang of the gateway's.
                expected = sum(
                    status == "TimeoutError" and start < frozen[1] and end > frozen[0]
                    for c in customers
                    for status, (start, end) in zip(c.statuses, c.spans, strict=True)
                )
                result.counts["hangs_frozen_worker"] = expected
                result.counts["hangs>5s"] -= expected
        finally:
            await gateway.stop()
            await runner.cleanup()
            await _drop_database(db_url)
            await _flush_redis(redis_url)
    return result


async def _score_more(gateway: Workers, customers: list[Customer], result: Result) -> None:
    """What chaos.crash's `_score` leaves out: stored twice, 5xx, tracebacks, answered, retried tries."""
    twice = await gateway.rows(
        "SELECT channel_msg_id, count(*) FROM messages WHERE direction = 'in' GROUP BY 1 HAVING count(*) > 1"
    )
    tries = [status for c in customers for status in c.statuses]
    tracebacks, errors = gateway.log_findings()
    result.counts.update(
        sent=len(customers),
        answered=result.counts["acked"] - result.counts["never_answered"],
        stored_twice=len(twice),
        # Acknowledged after an earlier try failed (timed out or reset): the retries the scenario is about.
        acked_on_retry=sum(c.acked and len(c.statuses) > 1 for c in customers),
        **{"5xx": sum(s.startswith("5") and s != "503" for s in tries)},
        answered_503=sum(s == "503" for s in tries),
        tracebacks=len(tracebacks),
        error_lines=len(errors),
    )
    result.examples += [f"stored twice: {row}" for row in twice[:5]]
    result.examples += [f"traceback: {line}" for line in tracebacks[:5]]
    result.examples += [f"error: {line}" for line in errors[:5]]


async def _explain_unanswered(
    gateway: Workers, api: FakeWeChatAPI, customers: list[Customer], result: Result
) -> None:
    """For each customer acknowledged but never answered: where its replies' outbox rows stand."""
    answered = {m.get("touser") for m in api.messages}
    for c in customers:
        if not c.acked or c.passive or c.openid in answered:
            continue
        rows = await gateway.rows(
            "SELECT o.id, o.status, o.attempts, o.last_error, o.created_at, o.sent_at FROM outbox o "
            f"WHERE o.conversation_key = 'wechat:shop:{c.openid}' ORDER BY o.id"
        )
        result.examples.append(f"unanswered {c.msg_id} {c.statuses}: outbox {rows}")


@scenario("workers-kill9", "kefu serve --workers 2 (PostgreSQL + Redis): kill -9 of one worker mid-burst")
async def workers_kill9(options: Options) -> Result:
    return await _workers_scenario(options, "workers-kill9", None)


@scenario(
    "workers-kill9-retry-elsewhere",
    "--workers 2: one worker frozen past WeChat's 5 s (its tries retried elsewhere), then kill -9",
)
async def workers_kill9_retry_elsewhere(options: Options) -> Result:
    return await _workers_scenario(options, "workers-kill9-retry-elsewhere", FREEZE_S)


@scenario(
    "workers-kill9-tiny-deadline",
    "--workers 2 with a 0.05 s reply deadline (every answer by 客服消息): kill -9 of one worker mid-burst",
)
async def workers_kill9_tiny(options: Options) -> Result:
    return await _workers_scenario(options, "workers-kill9-tiny-deadline", None, deadline_s=0.05)


WORKERS_SCENARIOS = ("workers-kill9", "workers-kill9-retry-elsewhere", "workers-kill9-tiny-deadline")
# The printed columns: what the brief of this scenario counts, beside the harness's own.
REPORTED = (
    "sent",
    "acked",
    "answered",
    "doubled",
    "lost",
    "never_answered",
    "stored_twice",
    "5xx",
    "tracebacks",
)


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios and print the table (0 when every row is ok)."""
    parser = argparse.ArgumentParser(prog="python -m chaos.workers", description=__doc__)
    parser.add_argument("--only", action="append", choices=WORKERS_SCENARIOS)
    parser.add_argument("--count", type=int, default=2000, help="messages per burst (default 2000)")
    parser.add_argument("--workdir", help="keep each run's config, spool and log here")
    args = parser.parse_args(argv)
    options = Options(count=args.count, workdir=args.workdir)
    results = asyncio.run(run(args.only or list(WORKERS_SCENARIOS), options))
    return report(results, examples=10, reported=REPORTED)


if __name__ == "__main__":
    sys.exit(main())
