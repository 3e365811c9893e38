"""PostgreSQL scenarios: a PostgreSQL of its own, restarted and frozen (SIGSTOP/SIGCONT) mid-load.

`OwnPostgres` runs the machine's PostgreSQL binaries (`pg_config --bindir`, else /usr/lib/postgresql/*/bin)
on a data directory initdb'ed into a temporary directory, on its own port and socket directory, so a
scenario can stop and freeze it without touching the shared server the tests use. As root (initdb and
postgres refuse to run as root) it runs them as the `postgres` system user.

The scenarios play WeChat against `kefu serve` on that database as chaos.crash does (signed texts, 32 at a
time, every MsgId tried up to 3 times with a 5 s timeout) and count the same columns:
- `pg-restart`: a third into the burst, PostgreSQL shuts down (fast), stays down `DOWN_S` and starts again;
- `pg-freeze`: a third into the burst, every PostgreSQL process is stopped (SIGSTOP) for `FROZEN_S`, then
  continued; meanwhile /healthz is probed every second (an answer slower than 5 s is a hang).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from chaos.crash import Customer, Gateway, _burst, _drain, _score, _serve_fake_api
from chaos.gateway import free_port
from chaos.harness import Options, Result, scenario

DOWN_S = 5.0
FROZEN_S = 10.0
MESSAGES = 1000


def _bindir() -> Path:
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout
        if (Path(out.strip()) / "initdb").exists():
            return Path(out.strip())
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists():
            return Path(candidate)
    found = shutil.which("initdb")
    if found is None:
        raise RuntimeError("no PostgreSQL binaries (initdb) on this machine")
    return Path(found).resolve().parent


class OwnPostgres:
    """One PostgreSQL server in `root`: initdb once, then start / stop / freeze / thaw."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "pgdata"
        self.port = free_port()
        self.bindir = _bindir()
        self.process: asyncio.subprocess.Process | None = None
        self._user: dict[str, Any] = {}
        if os.geteuid() == 0:
            entry = pwd.getpwnam("postgres")
            self._user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
            os.chown(root, entry.pw_uid, entry.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://kefu@127.0.0.1:{self.port}/postgres"

    async def _run(self, *args: str) -> None:
        proc = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, **self._user
        )
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {out.decode(errors='replace')[-2000:]}")

    async def init(self) -> None:
        await self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "kefu", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip

    async def start(self) -> None:
        log = (self.root / "postgres.log").open("ab")
        self.process = await asyncio.create_subprocess_exec(
            str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
            "-k", str(self.root), "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=100",
            stdout=log, stderr=log, start_new_session=True, **self._user,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, asyncpg.PostgresError, TimeoutError):
                conn = await asyncpg.connect(self.url.replace("+asyncpg", ""), timeout=2)
                await conn.close()
                return
            await asyncio.sleep(0.2)
        raise RuntimeError(f"PostgreSQL did not start: see {self.root / 'postgres.log'}")

    async def stop(self) -> None:
        """Fast shutdown (SIGINT: open sessions are ended), as `pg_ctl stop -m fast`."""
        if self.process is None or self.process.returncode is not None:
            return
        self.thaw()
        self.process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(self.process.wait(), 60)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    def freeze(self) -> None:
        """SIGSTOP the postmaster and every backend (its own process group)."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        if self.process is not None and self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGCONT)


async def _probe_health(gateway: Gateway, until: asyncio.Event, result: Result) -> None:
    """GET /healthz every second until `until` is set; an answer slower than 5 s counts as a hang."""
    hangs = probes = 0
    async with aiohttp.ClientSession() as http:
        while not until.is_set():
            probes += 1
            started = time.monotonic()
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with http.get(gateway.url + "/healthz", timeout=aiohttp.ClientTimeout(total=30)) as r:
                    await r.read()
            if time.monotonic() - started > 5.0:
                hangs += 1
                result.examples.append(f"/healthz took {time.monotonic() - started:.1f} s")
            await asyncio.sleep(1.0)
    result.counts["healthz_probes"] = probes
    result.counts["hangs>5s"] = result.counts.get("hangs>5s", 0) + hangs


async def _pg_scenario(options: Options, name: str, fault: str) -> Result:
    result = Result()
    api, runner = await _serve_fake_api()
    count = min(options.count, MESSAGES)
    base = 7_400_000_000 if fault == "restart" else 7_500_000_000
    customers = [Customer(f"oPg{fault}{i:05d}", str(base + i)) for i in range(count)]
    with tempfile.TemporaryDirectory(prefix="kefu-chaos-pg-") as tmp:
        root = Path(options.workdir or tmp) / name
        root.mkdir(parents=True, exist_ok=True)
        # PostgreSQL's own directory: under /tmp, where its user can reach it (a test's tmp_path is
        # root's alone); removed at the end.
        postgres = OwnPostgres(Path(tempfile.mkdtemp(prefix="kefu-chaos-pgdata-")))
        await postgres.init()
        await postgres.start()
        gateway = Gateway(root / "kefu", api.url, 4.0, db_url=postgres.url)
        done = asyncio.Event()

        async def restart() -> None:
            await postgres.stop()
            await asyncio.sleep(DOWN_S)
            await postgres.start()

        async def freeze() -> None:
            probe = asyncio.create_task(_probe_health(gateway, done, result))
            postgres.freeze()
            await asyncio.sleep(FROZEN_S)
            postgres.thaw()
            done.set()
            await probe

        try:
            await gateway.start()
            rss_before = _rss_mb(gateway)
            await _burst(
                gateway,
                customers,
                kill_after=count // 3,
                result=result,
                fault=restart if fault == "restart" else freeze,
            )
            await _drain(gateway)
            hangs = result.counts.get("hangs>5s", 0)
            await _score(gateway, api, customers, result)
            result.counts["hangs>5s"] += hangs
            result.counts.update(rss_before_mb=rss_before, rss_after_mb=_rss_mb(gateway))
        finally:
            done.set()
            await gateway.stop()
            await postgres.stop()
            await runner.cleanup()
            shutil.rmtree(postgres.root, ignore_errors=True)
    return result


def _rss_mb(gateway: Gateway) -> float:
    assert gateway.process is not None
    status = Path(f"/proc/{gateway.process.pid}/status").read_text()
    kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return round(kb / 1024, 1)


@scenario("pg-restart", "PostgreSQL (its own, initdb) shut down for 5 s and started again mid-burst")
async def pg_restart(options: Options) -> Result:
    return await _pg_scenario(options, "pg-restart", "restart")


@scenario("pg-freeze", "every PostgreSQL process SIGSTOPped for 10 s mid-burst, then SIGCONT")
async def pg_freeze(options: Options) -> Result:
    return await _pg_scenario(options, "pg-freeze", "freeze")
