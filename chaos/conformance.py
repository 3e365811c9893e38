"""schemathesis against a live `kefu serve`: the agent and supervisor APIs do what /api/v1/openapi.json says.

`run_schemathesis` is shared by the bounded run in `make test` (tests/gateway/test_openapi_conformance.py,
5 examples per operation) and the `schemathesis` scenario of `make chaos` (`--examples` per operation,
default 200, with an admin's and an agent's token; a run with any failing check is a row that is not ok).
"""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
from pathlib import Path

import aiohttp

from chaos.gateway import Kefu, free_port
from chaos.harness import Options, Result, scenario

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "tests" / "fixtures" / "schemathesis" / "schemathesis.toml"
ST = Path(sys.executable).with_name("st")


async def seed(kefu: Kefu) -> None:
    """Customers in the queue, one claimed by the admin, a canned reply: lists are not empty."""
    auth = {"Authorization": f"Bearer {kefu.agent_token}"}
    async with aiohttp.ClientSession(kefu.url) as http:
        for user, text in (
            ("st-1", "转人工"),
            ("st-2", "我要投诉你们"),
            ("st-3", "怎么开发票"),
            ("st-4", "转人工"),
        ):
            async with http.post("/web/messages", json={"user_id": user, "text": text}) as resp:
                assert resp.status == 200
        async with http.get("/api/v1/queue", headers=auth) as resp:
            queue = (await resp.json())["queue"]
        assert queue
        async with http.post(
            f"/api/v1/conversations/{queue[0]['conversation_id']}/claim", headers=auth
        ) as resp:
            assert resp.status == 200
        canned = {"title": "问候", "text": "您好，{customer_name}", "group": "售前"}
        async with http.post("/api/v1/canned", json=canned, headers=auth) as resp:
            assert resp.status == 201


async def run_schemathesis(
    kefu: Kefu, token: str, *, max_examples: int = 5, seed_value: int = 13, timeout_s: float = 600
) -> tuple[int, str]:
    """One schemathesis run with all checks; returns its exit code and report."""
    proc = await asyncio.create_subprocess_exec(  # in the gateway's work dir: st keeps a cache where it runs
        str(ST),
        "--config-file",
        str(CONFIG),
        "run",
        f"{kefu.url}/api/v1/openapi.json",
        *("--checks", "all", "--max-examples", str(max_examples), "--seed", str(seed_value)),
        "--max-failures",
        "50",
        # The stateful phase guesses links between operations by field names (a canned reply's id as a
        # conversation id); it is left out.
        *("--phases", "examples,coverage,fuzzing", "--exclude-path", "/agent/ws", "--no-color"),
        *("--header", f"Authorization: Bearer {token}"),
        cwd=kefu.workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@scenario("schemathesis", "schemathesis, all checks, --examples per operation (agent + admin tokens)")
async def long_schemathesis(options: Options) -> Result:
    result = Result()
    examples = options.examples
    with tempfile.TemporaryDirectory(prefix="kefu-chaos-st-") as tmp:
        workdir = Path(options.workdir or tmp) / "schemathesis"
        kefu = Kefu(workdir=workdir, port=free_port(), log_path=workdir / "kefu.log")
        await kefu.start()
        try:
            agent = (await kefu.cli("agent", "add", "小美", "--groups", "售前")).strip().splitlines()[-1]
            await seed(kefu)
            rss_before = kefu.rss_mb()
            cases = failures = 0
            for token in (kefu.agent_token, agent):
                code, report = await run_schemathesis(kefu, token, max_examples=examples, timeout_s=3600)
                cases += sum(int(n) for n in re.findall(r"(\d+) generated", report))
                if code != 0:
                    failures += 1
                    start = report.find("FAILURES")
                    result.examples.append(report[start : start + 4000] if start >= 0 else report[-3000:])
            result.counts.update(
                inputs=cases,
                **{"5xx": len(re.findall(r"Server error", "".join(result.examples)))},
                failed_checks=failures,  # runs with any failing check
                rss_before_mb=rss_before,
                rss_after_mb=kefu.rss_mb(),
            )
        finally:
            await kefu.stop()
        result.counts["tracebacks"] = len(kefu.log_tracebacks())
        result.examples += kefu.log_tracebacks()[:5]
    return result
