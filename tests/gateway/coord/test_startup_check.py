"""Several processes on PostgreSQL refuse to start without Redis, and say why."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.coord import PROCESSES_ENV, RedisSettings, check_processes, declared_processes
from gateway.serve import StartupFailed, check_coordination
from gateway.settings import settings_from_mapping
from tests.conftest import TEST_FAQ
from tests.gateway.test_serve import refused_start

PG = "postgresql+asyncpg://kefu@127.0.0.1:5432/kefu"


def test_only_several_processes_on_postgresql_without_redis_are_refused() -> None:
    no_redis = RedisSettings()
    assert check_processes(PG, no_redis, 1) is None
    assert check_processes("sqlite+aiosqlite:///data/kefu.db", no_redis, 3) is None
    assert check_processes(PG, RedisSettings(url="redis://127.0.0.1:6379/0"), 4) is None
    problem = check_processes(PG, no_redis, 2)
    assert problem is not None and "redis.url" in problem and "answered twice" in problem


def test_the_process_count_comes_from_kefu_processes() -> None:
    assert declared_processes({}) == 1
    assert declared_processes({PROCESSES_ENV: "3"}) == 3
    for bad in ("0", "-1", "two"):
        with pytest.raises(ValueError, match=PROCESSES_ENV):
            declared_processes({PROCESSES_ENV: bad})
    settings = settings_from_mapping({"database": {"url": PG}})
    with pytest.raises(StartupFailed, match="need Redis"):
        check_coordination(settings, processes=2)  # type: ignore[arg-type]
    check_coordination(settings, processes=1)  # type: ignore[arg-type]


async def test_kefu_serve_with_two_processes_on_postgresql_and_no_redis_exits_saying_why(
    tmp_path: Path, unused_tcp_port: int
) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        f'database: {{url: "{PG}"}}\nkb: {{paths: ["{TEST_FAQ}"], watch: false}}\n', encoding="utf-8"
    )
    code, text = await refused_start(config, "--port", str(unused_tcp_port), env={PROCESSES_ENV: "2"})
    assert code == 1, text
    assert "need Redis" in text and "redis.url" in text and "Traceback" not in text
