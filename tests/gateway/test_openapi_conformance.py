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


async def test_a_request_line_past_the_parsers_limit_is_a_documented_plain_400(tmp_path: Path) -> None:
    # Found by `python -m chaos` (schemathesis): aiohttp's parser refuses a request line over 8,190 bytes
    # itself, in text/plain, before any handler could answer in JSON; the document says so.
    import aiohttp

    from gateway.http.openapi import spec

    kefu = Kefu(workdir=tmp_path, port=free_port(), log_path=tmp_path / "kefu.log")
    await kefu.start()
    try:
        long_query = "q=" + "%E5%A5%BD" * 1000  # 9,000 bytes of 好, percent-encoded
        headers = {"Authorization": f"Bearer {kefu.agent_token}"}
        url = f"{kefu.url}/api/v1/faq/entries?{long_query}"
        async with aiohttp.ClientSession() as http, http.get(url, headers=headers) as resp:
            assert resp.status == 400
            content_type = resp.content_type
    finally:
        await kefu.stop()
    assert kefu.log_tracebacks() == []
    documented = spec()["components"]["responses"]["E400"]["content"]
    assert content_type in documented and "application/json" in documented
