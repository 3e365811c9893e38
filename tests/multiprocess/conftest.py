"""The multi-process fixture: 3 real `kefu serve` processes on a fresh PostgreSQL database and Redis.

Module-scoped (starting the processes is the slow part): the scenarios share the cluster and keep to
their own customers (openids). Skips with the reason where PostgreSQL or Redis is absent, fails under
KEFU_REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import (
    PG_HOST,
    PG_PORT,
    REDIS_DB,
    REDIS_HOST,
    REDIS_PORT,
    TEST_FAQ,
    _pg_admin,
    _port_open,
    drop_redis_prefix,
    services_required,
)
from tests.fakes.wechat_api import FakeWeChatAPI
from tests.multiprocess.cluster import Cluster, ThreadedFake

# An answer too long for one passive reply: it always goes out through 客服消息 (so it needs a token).
LONG_QUESTION = "完整的售后政策是什么"
LONG_ANSWER = "\n\n".join(
    f"第{i}条：" + "商品签收后七天内可以无理由退货，运费由买家承担。" * 12 for i in range(1, 4)
)
LONG_FAQ = f"""
faqs:
  - id: long-policy
    question: {LONG_QUESTION}
    similar: [售后政策全文]
    answer: {json.dumps(LONG_ANSWER, ensure_ascii=False)}
    category: 测试
"""


def _unavailable(reason: str) -> None:
    if services_required():
        pytest.fail(f"PostgreSQL and Redis required (KEFU_REQUIRE_SERVICES=1) but {reason}", pytrace=False)
    pytest.skip(f"multi-process scenarios need PostgreSQL and Redis: {reason}")


@dataclass
class Platform:
    """The fake WeChat APIs the processes talk to: `wechat` (account shop) and `tokens` (account tok)."""

    wechat: FakeWeChatAPI
    tokens: FakeWeChatAPI


@pytest.fixture(scope="module")
def platform() -> Iterator[Platform]:
    servers = [
        ThreadedFake(FakeWeChatAPI()),
        # Slow token answers widen the window in which two processes would both fetch one.
        ThreadedFake(FakeWeChatAPI(appid="wx0000000000tok001", token_latency_s=0.5)),
    ]
    fakes = [server.start() for server in servers]
    yield Platform(*fakes)  # type: ignore[arg-type]
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, platform: Platform) -> Iterator[Cluster]:
    for host, port, what in ((PG_HOST, PG_PORT, "PostgreSQL"), (REDIS_HOST, REDIS_PORT, "Redis")):
        if not _port_open(host, port):
            _unavailable(f"{what}: nothing listens on {host}:{port}")
    workdir = tmp_path_factory.mktemp("cluster")
    faq = workdir / "faq"
    shutil.copytree(TEST_FAQ, faq)
    (faq / "long.yaml").write_text(LONG_FAQ, encoding="utf-8")
    name = f"kefu_mp_{uuid.uuid4().hex[:10]}"
    try:
        user = asyncio.run(_pg_admin([f'CREATE DATABASE "{name}"']))
    except Exception as exc:
        _unavailable(str(exc))
    redis_url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}"
    prefix = f"kefu-mp-{uuid.uuid4().hex[:10]}"
    cluster = Cluster(
        workdir=workdir,
        database_url=f"postgresql+asyncpg://{user}@{PG_HOST}:{PG_PORT}/{name}",
        redis={"url": redis_url, "prefix": prefix},
        faq_dir=faq,
        wechat_api=platform.wechat.url,
        token_api=platform.tokens.url,
    )
    try:
        cluster.prepare()  # the tables (created by the first command) and the agent 甲
        cluster.start()
        yield cluster
    finally:
        cluster.shutdown()
        asyncio.run(_pg_admin([f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)']))
        asyncio.run(drop_redis_prefix(redis_url, prefix))


@pytest.fixture(scope="module")
def logs(cluster: Cluster) -> Path:
    return cluster.workdir
