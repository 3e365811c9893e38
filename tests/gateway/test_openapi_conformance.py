"""schemathesis (all checks) against a live `kefu serve` with an admin's and an agent's token: the agent API
does what its OpenAPI document says, and the document describes every response (issue 13, item 14).

Bounded for `make test`: a few examples per operation (the coverage phase adds the boundary cases);
`python -m chaos` is where long runs belong."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp

from chaos.gateway import Kefu, free_port

CONFIG = Path(__file__).resolve().parents[1] / "fixtures" / "schemathesis" / "schemathesis.toml"
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


async def schemathesis(kefu: Kefu, token: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(  # in the gateway's work dir: st keeps a cache where it runs
        str(ST),
        "--config-file",
        str(CONFIG),
        "run",
        f"{kefu.url}/api/v1/openapi.json",
        *("--checks", "all", "--max-examples", "5", "--seed", "13", "--max-failures", "50"),
        # The stateful phase guesses links between operations by field names (a canned reply's id as a
        # conversation id); the bounded run leaves it out.
        *(
            "--phases",
            "examples,coverage,fuzzing",
            "--exclude-path",
            "/agent/ws",
            # The supervisor operations (排班, 绩效, 质检) are not yet described to this standard (issue 13).
            "--exclude-path-regex",
            "^/(shifts|qa|reports/agents)",
            "--no-color",
            "--header",
            f"Authorization: Bearer {token}",
        ),
        cwd=kefu.workdir,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 600)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_the_agent_api_conforms_to_its_openapi_document(tmp_path: Path) -> None:
    kefu = Kefu(workdir=tmp_path, port=free_port(), log_path=tmp_path / "kefu.log")
    await kefu.start()
    try:
        agent_token = (await kefu.cli("agent", "add", "小美", "--groups", "售前")).strip().splitlines()[-1]
        await seed(kefu)
        for token in (kefu.agent_token, agent_token):  # an admin, then an agent of one group
            code, report = await schemathesis(kefu, token)
            assert code == 0, report[-6000:]
            assert " passed" in report and "failures" not in report.splitlines()[-1]
    finally:
        await kefu.stop()
    assert kefu.log_tracebacks() == []
