"""schemathesis (all checks) against a live `kefu serve` with an admin's and an agent's token: the agent API
does what its OpenAPI document says, and the document describes every response (issue 13, item 14).

Bounded for `make test`: a few examples per operation (the coverage phase adds the boundary cases);
`python -m chaos` is where long runs belong."""

from __future__ import annotations

from pathlib import Path

from chaos.conformance import run_schemathesis, seed
from chaos.gateway import Kefu, free_port


async def test_the_agent_api_conforms_to_its_openapi_document(tmp_path: Path) -> None:
    kefu = Kefu(workdir=tmp_path, port=free_port(), log_path=tmp_path / "kefu.log")
    await kefu.start()
    try:
        agent_token = (await kefu.cli("agent", "add", "小美", "--groups", "售前")).strip().splitlines()[-1]
        await seed(kefu)
        for token in (kefu.agent_token, agent_token):  # an admin, then an agent of one group
            code, report = await run_schemathesis(kefu, token)
            assert code == 0, report[-6000:]
            assert " passed" in report and "failures" not in report.splitlines()[-1]
    finally:
        await kefu.stop()
    assert kefu.log_tracebacks() == []
