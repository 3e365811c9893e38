"""A real `kefu serve` subprocess for a scenario: its own config, SQLite database, port and log file."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
ADMIN_TOKEN = "chaos-admin-token"
WECHAT_TOKEN = "chaos-wechat-token"
WECHAT_AES_KEY = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR"
WECHAT_APPID = "wx00000000chaos001"
ONEBOT_SECRET = "chaos-onebot-secret"
QQBOT_SECRET = "chaos-qqbot-secret-0123456789abcdef"
DEAD_API = "http://127.0.0.1:9"  # nothing listens: sends fail fast and stay visible in the outbox
START_TIMEOUT_S = 300.0  # a loaded machine imports jieba and the FAQ index slowly


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def serve(
    config_path: Path, workdir: Path, env: Mapping[str, str], log_path: Path
) -> asyncio.subprocess.Process:
    """`kefu serve --config config_path` in `workdir`, its output appended to `log_path`."""
    with log_path.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "serve", "--config", str(config_path),
            cwd=workdir, env=with_this_checkout(env), stdout=log, stderr=log,
        )  # fmt: skip


def with_this_checkout(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with this checkout first on PYTHONPATH: run in another directory, `python -m gateway.cli` would
    import whatever checkout the virtualenv's editable install points at (another worktree's code)."""
    path = [str(ROOT), *filter(None, [env.get("PYTHONPATH")])]
    return {**env, "PYTHONPATH": os.pathsep.join(path)}


async def wait_healthy(
    process: asyncio.subprocess.Process,
    url: str,
    exited: Callable[[], str],
    timeout_s: float = START_TIMEOUT_S,
) -> None:
    """Until `url`/healthz answers (503 too: degraded is up); `exited()` says why, should the process end."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise RuntimeError(f"kefu serve exited: {exited()}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with http.get(url + "/healthz") as resp:
                    if resp.status in (200, 503):
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"kefu serve did not answer /healthz within {timeout_s:g} s")


def config(workdir: Path, port: int) -> dict[str, Any]:
    """Every inbound channel on one gateway, loopback only, platform APIs pointing nowhere."""
    return {
        "server": {"host": "127.0.0.1", "port": port},
        "database": {"url": f"sqlite+aiosqlite:///{workdir / 'kefu.db'}"},
        # What the agent API teaches (schemathesis accepts additions) stays in the scenario's own folder.
        "kb": {
            "paths": [str(ROOT / "config" / "faq")],
            "learned_path": str(workdir / "learned.yaml"),
            "watch": False,
        },
        # The repo's shared embedding cache: a cold build of the demo FAQ would eat the start-up budget.
        "matcher": {"semantic": {"cache_dir": str(ROOT / "data" / "embeddings")}},
        "admin": {"token": ADMIN_TOKEN},
        "logging": {"level": "INFO"},
        "handoff": {
            "groups": [{"name": "售前"}, {"name": "售后", "intents": ["complaint"]}],
            "default_group": "售前",
        },
        "channels": {
            "web": {"enabled": True, "rate_limit_per_minute": 6000, "rate_limit_burst": 1000},
            "wechat": [
                {"name": "shop", "token": WECHAT_TOKEN, "appid": WECHAT_APPID, "api_base": DEAD_API},
                {
                    "name": "secure",
                    "token": WECHAT_TOKEN,
                    "appid": WECHAT_APPID,
                    "aes_key": WECHAT_AES_KEY,
                    "api_base": DEAD_API,
                },
            ],
            "onebot": [{"name": "qqshop", "secret": ONEBOT_SECRET, "api_url": DEAD_API}],
            "qqbot": [
                {
                    "name": "bot",
                    "appid": "102000001",
                    "secret": QQBOT_SECRET,
                    "api_base": DEAD_API,
                    "token_url": DEAD_API + "/token",
                }
            ],
        },
    }


@dataclass
class Kefu:
    """The running gateway: base URL, an admin agent's token, its pid and log."""

    workdir: Path
    port: int
    log_path: Path
    process: asyncio.subprocess.Process | None = None
    agent_token: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "gateway.yaml"

    async def cli(self, *args: str) -> str:
        """`kefu …` against this gateway's config; returns stdout."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.cli",
            *args,
            "--config",
            str(self.config_path),
            cwd=self.workdir,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"kefu {' '.join(args)}: {err.decode()}")
        return out.decode()

    async def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            yaml.safe_dump(config(self.workdir, self.port), allow_unicode=True), encoding="utf-8"
        )
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
        if not self.agent_token:
            out = await self.cli("agent", "add", "混沌", "--groups", "售前,售后", "--role", "admin")
            self.agent_token = out.strip().splitlines()[-1]
        self.process = await serve(self.config_path, self.workdir, self.env, self.log_path)
        await wait_healthy(self.process, self.url, lambda: self.log_path.read_text()[-2000:])

    def rss_mb(self) -> float:
        """Resident memory of the gateway process in MB (from /proc)."""
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        return round(kb / 1024, 1)

    async def stop(self) -> None:
        """SIGTERM and wait (SIGKILL after 20 s)."""
        if self.process is None or self.process.returncode is not None:
            return
        self.process.terminate()
        try:
            await asyncio.wait_for(self.process.wait(), 20)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()

    def log_tracebacks(self) -> list[str]:
        """The log lines that start a traceback, with the line before them (what was being logged)."""
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return [
            f"{lines[i - 1][:200] if i else ''} / {line}"
            for i, line in enumerate(lines)
            if "Traceback" in line
        ]
