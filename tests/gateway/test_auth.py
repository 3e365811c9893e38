"""One bearer resolver (gateway/http/auth.py) over real HTTP: the agent, admin and reports APIs agree.

401 (with a Bearer challenge) when the token is missing or nobody has it; 403 when its owner may not do
this; admin agents may use every admin endpoint, as the admin token may; one reload endpoint.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.app import create_app
from gateway.keys import HANDOFF
from handoff.agents import Role, new_token
from tests.conftest import ADMIN_TOKEN
from tests.gateway.test_handoff_flow import handoff_section

AGENT_ONLY = [("GET", "/api/v1/me"), ("GET", "/api/v1/queue"), ("GET", "/api/v1/follow-ups")]
ADMIN_ONLY = [
    ("GET", "/admin/api/outbox"),
    ("GET", "/admin/api/kb"),
    ("POST", "/admin/api/kb/reload"),
    ("GET", "/admin/api/stats"),
    ("GET", "/admin/api/agents"),  # agent management and the FAQ editor: the same resolver
    ("GET", "/admin/api/faq"),
]
SUPERVISORS = [("GET", "/api/v1/reports/records?format=json")]
EVERY = AGENT_ONLY + ADMIN_ONLY + SUPERVISORS

# Who may call what: everything else answers 403.
ALLOWED = {
    "admin token": ADMIN_ONLY + SUPERVISORS,
    Role.ADMIN.value: AGENT_ONLY + ADMIN_ONLY + SUPERVISORS,
    Role.SUPERVISOR.value: AGENT_ONLY + SUPERVISORS,
    Role.AGENT.value: AGENT_ONLY,
}


@pytest.fixture
async def gateway(aiohttp_client: Any, settings_factory: Any) -> Any:
    return await aiohttp_client(create_app(settings_factory(handoff=handoff_section(assignment="manual"))))


async def _token(client: Any, role: Role) -> str:
    plain, hashed = new_token()
    await client.app[HANDOFF].db.add_agent(
        f"{role.value}者", role=role, groups=("售后",), max_chats=5, token_hash=hashed
    )
    return plain


async def _status(client: Any, method: str, path: str, token: str | None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with client.request(method, path, headers=headers) as resp:
        await resp.read()
        return resp.status, resp.headers


async def test_missing_and_unknown_tokens_are_401_with_a_challenge_everywhere(gateway: Any) -> None:
    for method, path in EVERY:
        for token in (None, "not-a-token"):
            status, headers = await _status(gateway, method, path, token)
            assert (path, token, status) == (path, token, 401)
            assert headers["WWW-Authenticate"] == 'Bearer realm="kefu"'


async def test_known_tokens_get_what_their_role_allows_and_403_otherwise(gateway: Any) -> None:
    tokens = {"admin token": ADMIN_TOKEN}
    for role in (Role.ADMIN, Role.SUPERVISOR, Role.AGENT):
        tokens[role.value] = await _token(gateway, role)
    seen = {}
    for who, token in tokens.items():
        for method, path in EVERY:
            status, _ = await _status(gateway, method, path, token)
            seen[(who, path)] = status
    expected = {
        (who, path): 200 if (method, path) in ALLOWED[who] else 403
        for who in tokens
        for method, path in EVERY
    }
    assert seen == expected


async def test_a_disabled_agent_is_unknown(gateway: Any) -> None:
    token = await _token(gateway, Role.ADMIN)
    assert (await _status(gateway, "GET", "/admin/api/kb", token))[0] == 200
    await gateway.app[HANDOFF].db.set_agent_enabled(f"{Role.ADMIN.value}者", False)
    assert (await _status(gateway, "GET", "/admin/api/kb", token))[0] == 401


async def test_the_kb_has_one_reload_endpoint(gateway: Any) -> None:
    admin_agent = await _token(gateway, Role.ADMIN)
    status, _ = await _status(gateway, "POST", "/admin/api/kb/reload", admin_agent)
    assert status == 200
    assert (await _status(gateway, "POST", "/admin/api/stats/kb-reload", ADMIN_TOKEN))[0] == 404
