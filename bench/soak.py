"""`make soak`: a bounded soak of `kefu serve` (SQLite) under the load of issue 14, sampled every 30 s.

Web customers (20,000 of them) post to `/web/messages` at `SOAK_RATE` (150) messages a second, open loop;
10 % of the texts are 转人工 or a complaint, the rest FAQ questions. Nobody is online, so every handoff
stays queued (a 留言); one agent claims and closes 4 queued conversations every 30 s. Every 30 s the sampler
writes a CSV row: RSS, threads, open fds, database size, offered and served (2xx) per second, p50/p99 of
the answers in the window, errors (non-2xx, timeouts, requests shed because MAX_IN_FLIGHT were open) and
the queue length; at the end a PNG plot of the same and a summary line. Bounded: `SOAK_MINUTES` (default
20). Output in `artifacts/soak/` (or `SOAK_DIR`).

    make soak                    # 20 minutes
    SOAK_MINUTES=2 make soak     # a short run that proves the harness
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import os
import random
import socket
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.knobs import knob

ROOT = Path(__file__).resolve().parent.parent
MINUTES = knob("SOAK_MINUTES", 20.0, 0.1, 1440.0)
RATE = knob("SOAK_RATE", 150.0, 1.0, 10_000.0)
CUSTOMERS = 20_000
HANDOFF_SHARE = 0.10
SAMPLE_S = 30.0
CLOSE_EVERY_S = 30.0
CLOSE_COUNT = 4
MAX_IN_FLIGHT = 512
CLIENT_TIMEOUT_S = 30.0
QUESTIONS = (
    "支持哪些支付方式",
    "支付失败怎么办",
    "可以货到付款吗",
    "怎么退货",
    "多久发货",
    "快递到哪了",
    "能开发票吗",
    "怎么修改收货地址",
)
HANDOFFS = ("转人工", "你们的东西坏了我要投诉")
COLUMNS = (
    "minute",
    "offered_per_s",
    "served_per_s",
    "p50_ms",
    "p99_ms",
    "errors",
    "queue",
    "rss_mb",
    "threads",
    "fds",
    "db_mb",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Window:
    """What the load generator saw since the last sample."""

    offered: int = 0
    served: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)


@dataclass
class Totals:
    offered: int = 0
    served: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)
    closed: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)


class Soak:
    def __init__(self, workdir: Path, minutes: float, rate: float) -> None:
        self.workdir = workdir
        self.minutes = minutes
        self.rate = rate
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.token = ""
        self.window = Window()
        self.totals = Totals()
        self.in_flight = 0
        self.rows: list[dict[str, float]] = []

    # --- the gateway ---------------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        return {
            "server": {"host": "127.0.0.1", "port": self.port},
            "database": {"url": f"sqlite+aiosqlite:///{self.workdir / 'kefu.db'}"},
            "kb": {"paths": [str(ROOT / "config" / "faq")], "watch": False},
            "logging": {"level": "WARNING"},
            "handoff": {
                "groups": [{"name": "售前"}, {"name": "售后", "intents": ["complaint"]}],
                "default_group": "售前",
            },
            "channels": {"web": {"enabled": True, "rate_limit_per_minute": 6000, "rate_limit_burst": 1000}},
        }

    def _kefu(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "gateway.cli", *args, "--config", str(self.workdir / "gateway.yaml")]

    def launch(self) -> None:
        """Config, the agent, and `kefu serve` as a subprocess (before the event loop runs)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "gateway.yaml").write_text(yaml.safe_dump(self.config(), allow_unicode=True))
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
        out = subprocess.run(
            self._kefu("agent", "add", "值班", "--groups", "售前,售后"),
            cwd=self.workdir, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        self.token = out.stdout.strip().splitlines()[-1]
        log = (self.workdir / "kefu.log").open("ab")
        self.process = subprocess.Popen(
            self._kefu("serve"), cwd=self.workdir, env=env, stdout=log, stderr=log
        )
        log.close()

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + 300
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(self.url + "/healthz") as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.3)
        raise RuntimeError("kefu serve did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def _proc(self) -> tuple[float, int, int]:
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        rss = int(fields["VmRSS"].split()[0]) / 1024
        threads = int(fields["Threads"])
        fds = len(os.listdir(f"/proc/{self.process.pid}/fd"))
        return rss, threads, fds

    def _db_mb(self) -> float:
        files = [self.workdir / name for name in ("kefu.db", "kefu.db-wal")]
        return sum(f.stat().st_size for f in files if f.exists()) / 2**20

    # --- the load ------------------------------------------------------------------------------------

    async def _post(self, http: aiohttp.ClientSession, rng: random.Random) -> None:
        customer = f"soak{rng.randrange(CUSTOMERS):05d}"
        text = rng.choice(HANDOFFS) if rng.random() < HANDOFF_SHARE else rng.choice(QUESTIONS)
        body = {"user_id": customer, "text": text, "message_id": uuid.uuid4().hex}
        started = time.perf_counter()
        self.in_flight += 1
        try:
            async with http.post(self.url + "/web/messages", json=body) as resp:
                await resp.read()
                ok = 200 <= resp.status < 300
                kind = str(resp.status)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            ok, kind = False, type(exc).__name__
        finally:
            self.in_flight -= 1
        if ok:
            elapsed = (time.perf_counter() - started) * 1000
            self.window.served += 1
            self.window.latencies.append(elapsed)
            self.totals.served += 1
            self.totals.latencies.append(elapsed)
        else:
            self._error(kind)

    def _error(self, kind: str) -> None:
        self.window.errors += 1
        self.totals.errors += 1
        self.totals.error_kinds[kind] = self.totals.error_kinds.get(kind, 0) + 1

    async def load(self, http: aiohttp.ClientSession, until: float) -> None:
        """Open loop at `rate`: requests start on schedule whatever the answers do (shed past MAX_IN_FLIGHT)."""
        rng = random.Random(14)
        started = time.monotonic()
        sent = 0
        tasks: set[asyncio.Task[None]] = set()
        while (now := time.monotonic()) < until:
            due = int((now - started) * self.rate) - sent
            for _ in range(max(0, due)):
                sent += 1
                self.window.offered += 1
                self.totals.offered += 1
                if self.in_flight >= MAX_IN_FLIGHT:
                    self._error("shed")
                    continue
                task = asyncio.create_task(self._post(http, rng))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            await asyncio.sleep(0.01)
        if tasks:
            await asyncio.wait(tasks, timeout=CLIENT_TIMEOUT_S + 5)

    async def agent(self, http: aiohttp.ClientSession, until: float) -> None:
        """One agent: every 30 s claims and closes the first 4 queued conversations."""
        auth = {"Authorization": f"Bearer {self.token}"}
        while time.monotonic() + CLOSE_EVERY_S < until:
            await asyncio.sleep(CLOSE_EVERY_S)
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError, KeyError, ValueError):
                async with http.get(f"{self.url}/api/v1/queue", params={"limit": "4"}, headers=auth) as r:
                    queue = (await r.json())["queue"] if r.status == 200 else []
                for item in queue[:CLOSE_COUNT]:
                    cid = item["conversation_id"]
                    async with http.post(f"{self.url}/api/v1/conversations/{cid}/claim", headers=auth) as r:
                        if r.status != 200:
                            continue
                    async with http.post(
                        f"{self.url}/api/v1/conversations/{cid}/close", json={}, headers=auth
                    ) as r:
                        self.totals.closed += r.status == 200

    async def _queue_length(self, http: aiohttp.ClientSession) -> int:
        auth = {"Authorization": f"Bearer {self.token}"}
        with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError, KeyError, ValueError):
            async with http.get(f"{self.url}/api/v1/queue", params={"limit": "1"}, headers=auth) as r:
                return int((await r.json())["total"])
        return -1

    async def sampler(self, http: aiohttp.ClientSession, until: float, out: Path) -> None:
        started = time.monotonic()
        with out.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            print(" | ".join(COLUMNS), flush=True)
            while time.monotonic() < until:
                await asyncio.sleep(min(SAMPLE_S, max(0.0, until - time.monotonic())))
                window, self.window = self.window, Window()
                rss, threads, fds = await asyncio.to_thread(self._proc)
                row = {
                    "minute": round((time.monotonic() - started) / 60, 2),
                    "offered_per_s": round(window.offered / SAMPLE_S, 1),
                    "served_per_s": round(window.served / SAMPLE_S, 1),
                    "p50_ms": round(_pct(window.latencies, 50), 1),
                    "p99_ms": round(_pct(window.latencies, 99), 1),
                    "errors": window.errors,
                    "queue": await self._queue_length(http),
                    "rss_mb": round(rss, 1),
                    "threads": threads,
                    "fds": fds,
                    "db_mb": round(await asyncio.to_thread(self._db_mb), 1),
                }
                self.rows.append(row)
                writer.writerow(row)
                f.flush()
                print(" | ".join(str(row[c]) for c in COLUMNS), flush=True)

    async def run(self) -> int:
        try:
            await self.wait_ready()
            until = time.monotonic() + self.minutes * 60
            timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT_S)
            connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
            async with aiohttp.ClientSession(timeout=timeout, connector=connector) as http:
                await asyncio.gather(
                    self.load(http, until),
                    self.agent(http, until),
                    self.sampler(http, until, self.workdir / "soak.csv"),
                )
        finally:
            self.stop()
        plot(self.rows, self.workdir / "soak.png", self.rate)
        print(self.summary(), flush=True)
        print(f"CSV: {self.workdir / 'soak.csv'}  plot: {self.workdir / 'soak.png'}", flush=True)
        return 0

    def summary(self) -> str:
        t = self.totals
        served = 100 * t.served / t.offered if t.offered else 0.0
        warm = [r["rss_mb"] for r in self.rows[2:]] or [r["rss_mb"] for r in self.rows]
        return (
            f"soak {self.minutes:g} min at {self.rate:g} msg/s offered: {t.offered} offered, {t.served} served "
            f"({served:.1f} %), p50 {_pct(t.latencies, 50):.1f} ms, p99 {_pct(t.latencies, 99):.1f} ms, "
            f"{t.errors} errors {t.error_kinds or ''}, {t.closed} closed by the agent, RSS after warm-up "
            f"{warm[0] if warm else 0:.0f} → {warm[-1] if warm else 0:.0f} MB, queue "
            f"{self.rows[-1]['queue'] if self.rows else '?'}"
        )


def _pct(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[min(98, int(pct) - 1)]


def plot(rows: list[dict[str, float]], path: Path, rate: float) -> None:
    """Four panels over the minutes: throughput, latency, the process, the queue and database."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return
    x = [r["minute"] for r in rows]
    fig, axes = plt.subplots(2, 2, figsize=(12, 7), sharex=True)
    (a, b), (c, d) = axes
    a.plot(x, [r["offered_per_s"] for r in rows], label="offered")
    a.plot(x, [r["served_per_s"] for r in rows], label="served (2xx)")
    a.plot(x, [r["errors"] / SAMPLE_S for r in rows], label="errors")
    a.set_title(f"messages / s (offered {rate:g})")
    a.legend()
    b.plot(x, [r["p50_ms"] for r in rows], label="p50")
    b.plot(x, [r["p99_ms"] for r in rows], label="p99")
    b.set_yscale("log")
    b.set_title("latency (ms)")
    b.legend()
    c.plot(x, [r["rss_mb"] for r in rows], label="RSS MB")
    c.plot(x, [r["threads"] for r in rows], label="threads")
    c.plot(x, [r["fds"] for r in rows], label="fds")
    c.set_title("kefu serve")
    c.set_xlabel("minutes")
    c.legend()
    d.plot(x, [r["queue"] for r in rows], label="queued conversations")
    d2 = d.twinx()
    d2.plot(x, [r["db_mb"] for r in rows], color="tab:red", label="DB MB")
    d.set_title("queue length and database size (red, MB)")
    d.set_xlabel("minutes")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> int:
    base = Path(os.environ.get("SOAK_DIR") or ROOT / "artifacts" / "soak")
    workdir = base / time.strftime("%Y%m%d-%H%M%S")
    soak = Soak(workdir, MINUTES, RATE)
    soak.launch()
    try:
        return asyncio.run(soak.run())
    finally:
        soak.stop()


if __name__ == "__main__":
    sys.exit(main())
