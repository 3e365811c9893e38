"""1 vs 2 kefu processes on PostgreSQL: WeChat webhook throughput, the webhook bench's mixes (bench/webhook.py).

Two deployments run side by side on 127.0.0.1, each with its own fresh PostgreSQL database: `kefu serve`
(one process) and `kefu serve --workers 2` (two processes on one port, SO_REUSEPORT), both configured with
Redis when this version has the `redis` section. They are measured in alternating closed-loop rounds
(the idle one only runs its timers) and the medians compared. The load generator is this process alone
(one event loop, payloads signed before the clock starts), pinned to one CPU with sched_setaffinity
(what `taskset -c` does) after the servers were started, so the servers, PostgreSQL and Redis may use
every CPU and the client at most one. Each line also gives the kefu processes' own CPU time per message
(/proc, PostgreSQL and Redis not included): on a busy machine the throughput says how much CPU was left,
the CPU per message whether two processes cost more per message than one. Beside kefu's, each mix prints
the CPU per message of the database's PostgreSQL backends and of the load generator, and how busy the
whole machine was: with two cores, one kefu process saturates its core while PostgreSQL, Redis and the
client share the other, and a second process can only use what those leave (the "budget" line: the
throughput two cores allow for the measured CPU per message, against what one process reached).

    python -m bench processes         # part of `make bench`; KEFU_BENCH_PROCESSES=0 skips it
    KEFU_BENCH_PROCESS_ROUNDS=5 KEFU_BENCH_PROCESS_REQUESTS=3000 python -m bench processes   # longer
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.handoff import steps_drained
from bench.knobs import knob
from bench.webhook import (
    CONCURRENCY,
    ROOT,
    WARMUP_REQUESTS,
    Payloads,
    Result,
    _fmt,
    _free_port,
    _server,
    _wait_ready,
    _write_config,
    closed_loop,
)

PG = os.environ.get("KEFU_BENCH_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("KEFU_BENCH_REDIS", "redis://127.0.0.1:6379/15")  # its own Redis database number
ROUNDS = knob("KEFU_BENCH_PROCESS_ROUNDS", 3, 1, 100)
REQUESTS = knob("KEFU_BENCH_PROCESS_REQUESTS", 1000, 1, 1_000_000)  # per round and deployment
MAX_S = 20.0  # per round: bounds the whole run on a loaded machine
TARGET = 1.6
MIXES = (  # (label, account, safe mode, handoff mix): the webhook bench's FAQ mixes and its handoff mix
    ("FAQ, plaintext", "plain", False, False),
    ("FAQ, safe", "safe", True, False),
    ("handoff mix, safe", "safe", True, True),
)


async def _admin(statements: Sequence[str]) -> None:
    import asyncpg

    conn = await asyncpg.connect(
        PG.replace("postgresql+asyncpg://", "postgresql://") + "/postgres", timeout=5
    )
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def _database() -> Iterator[str]:
    name = f"kefu_bench_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    asyncio.run(_admin([f'CREATE DATABASE "{name}"']))
    try:
        yield f"{PG}/{name}"
    finally:
        asyncio.run(_admin([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)']))


def _has_redis_section() -> bool:
    from gateway.settings import Settings

    return "redis" in Settings.model_fields


def _config(directory: Path, api_base: str, database: str) -> Path:
    """The webhook bench's config (two WeChat accounts, the demo FAQ) on PostgreSQL (+ Redis)."""
    config = _write_config(directory, api_base)
    text = config.read_text(encoding="utf-8")
    start = text.index("database:")
    end = text.index("kb:")
    text = f'{text[:start]}database:\n  url: "{database}"\n{text[end:]}'
    if _has_redis_section():
        text += f'redis:\n  url: "{REDIS_URL}"\n'
    config.write_text(text, encoding="utf-8")
    return config


@dataclass
class Deployment:
    base: str
    pids: set[int]  # the processes that serve (the supervisor of --workers only watches)
    database: str = ""  # its SQLAlchemy URL: its PostgreSQL backends are found by database name

    def cpu_s(self) -> float:
        """User + system CPU seconds the serving processes used so far (/proc/<pid>/stat)."""
        ticks = 0
        for pid in self.pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def _deployment(config: Path, workers: int, database: str = "") -> Iterator[Deployment]:
    """`kefu serve` with `workers` processes; yields once every process answers."""
    port = _free_port()
    serve = [sys.executable, "-m", "gateway.cli", "serve", "--config", str(config), "--port", str(port)]
    if workers == 1:
        commands = [serve]
    elif _has_redis_section():
        commands = [[*serve, "--workers", str(workers)]]
    else:  # before the Redis section: the workers `--workers` would start, without its supervisor
        commands = [[*serve, "--worker-id", str(i)] for i in range(workers)]
    with tempfile.TemporaryFile() as log:
        procs = [subprocess.Popen(c, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log) for c in commands]
        try:
            _wait_ready(port, procs[0], log, within=120)
            yield Deployment(f"http://127.0.0.1:{port}", _wait_pids(port, workers), database)
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _ticks(pid: int) -> int:
    """User + system clock ticks of a process so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return int(fields[11]) + int(fields[12])


async def _backend_pids(database: str) -> list[int]:
    import asyncpg

    conn = await asyncpg.connect(database.replace("postgresql+asyncpg://", "postgresql://"), timeout=5)
    try:
        rows = await conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return [int(r["pid"]) for r in rows]


def _machine() -> tuple[int, int]:
    """(all, idle + iowait) jiffies of every CPU so far (/proc/stat)."""
    values = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(values), values[3] + values[4]


@dataclass
class Cpu:
    """CPU seconds one measured round cost: kefu's processes, the database's backends, the load generator."""

    kefu: float = 0.0
    postgres: float = 0.0
    client: float = 0.0
    busy: float = 0.0  # share of the machine's CPU time in use (every process, not only these)

    def add(self, other: Cpu) -> None:
        self.kefu += other.kefu
        self.postgres += other.postgres
        self.client += other.client
        self.busy += other.busy


def measured_round(deployment: Deployment, requests: Sequence[Any]) -> tuple[Result, Cpu]:
    """One closed-loop round and what it cost. PostgreSQL: the backends of the deployment's database at the
    start and at the end (one that closed during the round is missed; its background processes — WAL
    writer, checkpointer, autovacuum — are not counted)."""
    tck = os.sysconf("SC_CLK_TCK")
    backends = {pid: _ticks(pid) for pid in asyncio.run(_backend_pids(deployment.database))}
    kefu, client, machine = deployment.cpu_s(), os.times(), _machine()
    result = asyncio.run(closed_loop(deployment.base, requests, CONCURRENCY, MAX_S))
    # Until the handoff steps the round raised are done (they run after the answers), in every process.
    result.seconds += steps_drained(deployment.base, zeros=6)
    kefu_after, client_after, machine_after = deployment.cpu_s(), os.times(), _machine()
    later = asyncio.run(_backend_pids(deployment.database))
    after = {pid: _ticks(pid) for pid in set(later) | set(backends)}
    postgres = sum(ticks - backends.get(pid, 0) for pid, ticks in after.items() if ticks)
    total = machine_after[0] - machine[0]
    return result, Cpu(
        kefu=kefu_after - kefu,
        postgres=max(postgres, 0) / tck,
        client=client_after.user + client_after.system - client.user - client.system,
        busy=1 - (machine_after[1] - machine[1]) / total if total else 0.0,
    )


def _wait_pids(port: int, workers: int, within: float = 120.0) -> set[int]:
    """Until `workers` distinct processes answered /healthz (new connections: the kernel spreads them)."""
    import json
    import urllib.request

    seen: set[int] = set()
    deadline = time.monotonic() + within
    while len(seen) < workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(seen)} of {workers} processes answered within {within:.0f} s")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                seen.add(int(json.loads(resp.read())["pid"]))
        except (OSError, ValueError, KeyError):
            time.sleep(0.2)
    return seen


def _budget(label: str, per_message: dict[int, dict[str, float]], cpus: int) -> str:
    """The ratio's ceiling on an otherwise idle machine, from the CPU each message cost (kefu + PostgreSQL +
    client; Redis and the kernel's share of loopback traffic not counted): one process is bound by its one
    core or by the machine, two processes by the machine. On two cores the 1.6 target needs kefu's own CPU
    to be ≥ 80 % of the total: PostgreSQL and the client take their share from the second process."""
    one, two = (sum(per_message[n].values()) for n in (1, 2))
    if not (one and two and per_message[1]["kefu"]):
        return f"budget, {label}: no CPU measured"
    ceiling_one = min(1000 / per_message[1]["kefu"], cpus * 1000 / one)
    ceiling_two = cpus * 1000 / two
    return (
        f"budget, {label}: at these CPU costs {cpus} idle CPUs allow 1 process {ceiling_one:.0f} msg/s "
        f"(kefu {per_message[1]['kefu']:.2f} of {one:.2f} ms per message), 2 processes {ceiling_two:.0f} "
        f"({two:.2f} ms): ratio at most {ceiling_two / ceiling_one:.2f}"
    )


def _pin_to_one_cpu() -> str:
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[-1]})
    return f"load generator pinned to CPU {cpus[-1]} of {len(cpus)} (sched_setaffinity, one event loop)"


def _median(results: Sequence[Result]) -> Result:
    return sorted(results, key=lambda r: r.throughput)[len(results) // 2]


def run() -> list[str]:
    """Measure and return the report lines (no asserts: figures are for reading)."""
    if os.environ.get("KEFU_BENCH_PROCESSES") == "0":
        return ["skipped (KEFU_BENCH_PROCESSES=0)"]
    try:
        asyncio.run(_admin(["SELECT 1"]))
    except Exception as exc:
        return [f"skipped: PostgreSQL not available at {PG} ({type(exc).__name__})"]
    redis = "with Redis" if _has_redis_section() else "without Redis (this version has no redis section)"
    lines = [
        f"1 vs 2 processes on PostgreSQL, {redis}: closed loop, {CONCURRENCY} connections, {REQUESTS} messages "
        f"per round, median of {ROUNDS} alternating rounds per mix"
    ]
    with (
        tempfile.TemporaryDirectory(prefix="kefu-bench-proc-") as tmp,
        _server("api", None) as api_base,
        _database() as db_one,
        _database() as db_two,
        _deployment(_config(Path(tmp) / "one", api_base, db_one), 1, db_one) as one,
        _deployment(_config(Path(tmp) / "two", api_base, db_two), 2, db_two) as two,
    ):
        previous = os.sched_getaffinity(0)
        lines.append(_pin_to_one_cpu())
        lines.append(
            "load average (1, 5, 15 min) at the start: " + ", ".join(f"{x:.1f}" for x in os.getloadavg())
        )
        try:
            for label, account, safe, handoff in MIXES:
                rounds: dict[int, list[Result]] = {1: [], 2: []}
                cpu = {1: Cpu(), 2: Cpu()}  # summed over the measured rounds
                for deployment in (one, two):
                    warm = Payloads(account, safe, handoff=handoff).make(WARMUP_REQUESTS)
                    asyncio.run(closed_loop(deployment.base, warm, CONCURRENCY, MAX_S))
                for _ in range(ROUNDS):
                    for n, deployment in ((1, one), (2, two)):
                        requests = Payloads(account, safe, handoff=handoff).make(REQUESTS)
                        result, spent = measured_round(deployment, requests)
                        cpu[n].add(spent)
                        rounds[n].append(result)
                medians = {n: _median(results) for n, results in rounds.items()}
                per_message: dict[int, dict[str, float]] = {}
                for n in (1, 2):
                    spread = ", ".join(f"{r.throughput:.0f}" for r in rounds[n])
                    answered = sum(len(r.latencies) for r in rounds[n]) or 1
                    ms = {k: getattr(cpu[n], k) / answered * 1000 for k in ("kefu", "postgres", "client")}
                    per_message[n] = ms
                    name = f"{label}, {n} process{'es' if n > 1 else ''}"
                    lines.append(
                        f"{_fmt(name, medians[n])}   (rounds: {spread} msg/s; CPU ms/msg: kefu {ms['kefu']:.2f}, "
                        f"PostgreSQL {ms['postgres']:.2f}, client {ms['client']:.2f}; machine "
                        f"{cpu[n].busy / ROUNDS:.0%} busy)"
                    )
                ratio = medians[2].throughput / medians[1].throughput if medians[1].throughput else 0.0
                verdict = "meets" if ratio >= TARGET else "BELOW"
                lines.append(f"ratio 2/1 processes, {label}: {ratio:.2f} ({verdict} the {TARGET:.1f} target)")
                lines.append(_budget(label, per_message, len(previous)))
        finally:
            os.sched_setaffinity(0, previous)
    # Other work on the machine takes CPU from both deployments: the figures mean little under a high load.
    lines.append("load average (1, 5, 15 min) at the end: " + ", ".join(f"{x:.1f}" for x in os.getloadavg()))
    return lines


if __name__ == "__main__":
    for line in run():
        print(line, flush=True)
