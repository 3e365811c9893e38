"""`kefu serve --workers N` as an operator runs it: refused where several processes are unsafe; on
PostgreSQL + Redis, N processes answer on one port, a killed one is replaced, SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from gateway.settings import Settings
from tests.conftest import TEST_FAQ

KEFU = Path(sys.executable).with_name("kefu")
# This test's own Redis database number (other tests use theirs), per the machine's shared Redis.
REDIS_URL = "redis://127.0.0.1:6379/14"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}


async def _kefu_serve(config: Path, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        str(KEFU),
        "serve",
        "--config",
        str(config),
        *args,
        cwd=config.parent,
        env=_env(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def _config(tmp_path: Path, port: int, database: str, extra: str = "") -> Path:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f"""
server: {{host: 127.0.0.1, port: {port}}}
database: {{url: "{database}"}}
kb: {{paths: ["{TEST_FAQ}"], watch: false}}
matcher: {{semantic: {{model: none}}}}
{extra}
""",
        encoding="utf-8",
    )
    return config


async def test_several_workers_on_sqlite_are_refused_with_the_reason(
    tmp_path: Path, unused_tcp_port: int
) -> None:
    config = _config(tmp_path, unused_tcp_port, "sqlite+aiosqlite:///state/kefu.db")
    proc = await _kefu_serve(config, "--workers", "2")
    _out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    assert "SQLite is one process" in err.decode()
    assert "Traceback" not in err.decode()


@pytest.mark.postgres
async def test_several_workers_on_postgres_without_redis_are_refused_with_the_reason(
    tmp_path: Path, unused_tcp_port: int, postgres_database: str
) -> None:
    config = _config(tmp_path, unused_tcp_port, postgres_database)
    proc = await _kefu_serve(config, "--workers", "2")
    _out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    text = err.decode()
    assert "needs Redis" in text and "redis.url" in text
    assert "Traceback" not in text


async def _pid_of_next_answer(session: aiohttp.ClientSession, base: str) -> int | None:
    try:
        async with session.get(f"{base}/healthz") as resp:
            return int((await resp.json())["pid"]) if resp.status == 200 else None
    except (aiohttp.ClientError, ValueError):
        return None  # a worker starting or just killed


async def _answering_pids(
    base: str, want: int, *, excluded: frozenset[int] | set[int] = frozenset()
) -> set[int]:
    """Ask /healthz on fresh connections until `want` distinct live pids (none of `excluded`) answered."""
    seen: set[int] = set()
    connector = aiohttp.TCPConnector(force_close=True)  # each request a new connection: spread by the kernel
    async with aiohttp.ClientSession(connector=connector) as session:
        async with asyncio.timeout(90):
            while len(seen - excluded) < want:
                pid = await _pid_of_next_answer(session, base)
                if pid is None:
                    await asyncio.sleep(0.1)
                    continue
                seen.add(pid)
    return seen - excluded


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.postgres
@pytest.mark.skipif(
    "redis" not in Settings.model_fields, reason="needs the `redis` settings section (Redis coordination)"
)
async def test_two_workers_answer_on_one_port_a_killed_one_is_restarted_and_sigterm_stops_all(
    tmp_path: Path, unused_tcp_port: int, postgres_database: str
) -> None:
    config = _config(tmp_path, unused_tcp_port, postgres_database, f'redis: {{url: "{REDIS_URL}"}}')
    proc = await _kefu_serve(config, "--workers", "2")
    base = f"http://127.0.0.1:{unused_tcp_port}"
    try:
        first = await _answering_pids(base, 2)
        assert {_parent_of(pid) for pid in first} == {proc.pid}  # both are the supervisor's workers

        killed = min(first)
        os.kill(killed, signal.SIGKILL)
        (replacement,) = await _answering_pids(base, 1, excluded=first)
        assert _parent_of(replacement) == proc.pid
        assert await _answering_pids(base, 2, excluded={killed}) == {max(first), replacement}
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 60)
    assert code == 0
    err = (await proc.stderr.read()).decode()  # type: ignore[union-attr]
    assert "Traceback" not in err
    assert f"pid {killed}) exited with -9; restarting" in err
    for pid in (max(first), replacement):  # stopped with the supervisor, reaped
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
