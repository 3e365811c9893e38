"""Agent management over real HTTP (SQLite and PostgreSQL): add, list, change groups/capacity, disable."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.app import create_app
from tests.gateway.test_handoff_flow import handoff_section


@pytest.fixture
async def client(aiohttp_client: Any, settings_factory: Any) -> Any:
    return await aiohttp_client(create_app(settings_factory(handoff=handoff_section())))


async def test_an_admin_adds_an_agent_who_signs_in_with_the_token_shown_once(
    client: Any, admin_headers: dict[str, str]
) -> None:
    body = {"name": "小林", "groups": ["售后"], "max_chats": 3}
    async with client.post("/admin/api/agents", json=body, headers=admin_headers) as resp:
        assert resp.status == 201, await resp.text()
        created = await resp.json()
    token = created["token"]
    assert token.startswith("kefu_") and created["agent"]["groups"] == ["售后"]
    async with client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}) as resp:
        me = await resp.json()
    assert (me["name"], me["groups"], me["max_chats"], me["role"]) == ("小林", ["售后"], 3, "agent")

    async with client.get("/admin/api/agents", headers=admin_headers) as resp:
        listing = await resp.json()
    assert listing["groups"] == ["售前", "售后"]
    [row] = listing["agents"]
    assert "token" not in row and row["presence"] == "offline" and row["enabled"] is True
    async with client.post("/admin/api/agents", json=body, headers=admin_headers) as resp:
        assert resp.status == 409 and "小林" in (await resp.json())["error"]


async def test_groups_capacity_and_disable_take_effect_at_once(
    client: Any, admin_headers: dict[str, str]
) -> None:
    async with client.post(
        "/admin/api/agents", json={"name": "小周", "groups": ["售前"]}, headers=admin_headers
    ) as resp:
        created = await resp.json()
    agent_id, auth = created["agent"]["id"], {"Authorization": f"Bearer {created['token']}"}
    change = {"groups": ["售前", "售后"], "max_chats": 8, "role": "supervisor"}
    async with client.patch(f"/admin/api/agents/{agent_id}", json=change, headers=admin_headers) as resp:
        assert resp.status == 200
    async with client.get("/api/v1/me", headers=auth) as resp:
        me = await resp.json()
    assert (me["groups"], me["max_chats"], me["role"]) == (["售前", "售后"], 8, "supervisor")

    async with client.patch(
        f"/admin/api/agents/{agent_id}", json={"enabled": False}, headers=admin_headers
    ) as resp:
        assert (await resp.json())["agent"]["enabled"] is False
    async with client.get("/api/v1/me", headers=auth) as resp:
        assert resp.status == 401  # the token stopped working
    async with client.patch(
        f"/admin/api/agents/{agent_id}", json={"enabled": True}, headers=admin_headers
    ) as resp:
        assert resp.status == 200
    async with client.post(f"/admin/api/agents/{agent_id}/token", headers=admin_headers) as resp:
        fresh = (await resp.json())["token"]
    async with client.get("/api/v1/me", headers=auth) as resp:
        assert resp.status == 401  # the old token is replaced
    async with client.get("/api/v1/me", headers={"Authorization": f"Bearer {fresh}"}) as resp:
        assert resp.status == 200


async def test_bad_input_is_a_4xx_in_chinese(client: Any, admin_headers: dict[str, str]) -> None:
    cases = [
        ({"name": ""}, 400, "姓名"),
        ({"name": "a\nb"}, 400, "姓名"),
        ({"name": "小吴", "groups": ["夜班"]}, 422, "未在配置 handoff.groups 中"),
        ({"name": "小吴", "max_chats": 999}, 400, "max_chats"),
        ({"name": "小吴", "max_chats": True}, 400, "max_chats"),
        ({"name": "小吴", "role": "root"}, 400, "角色"),
        ({"name": "小吴", "groups": "售前"}, 400, "groups"),
    ]
    for body, status, words in cases:
        async with client.post("/admin/api/agents", json=body, headers=admin_headers) as resp:
            assert resp.status == status, body
            assert words in (await resp.json())["error"], body
    async with client.patch("/admin/api/agents/999", json={"max_chats": 2}, headers=admin_headers) as resp:
        assert resp.status == 404
    async with client.patch("/admin/api/agents/abc", json={}, headers=admin_headers) as resp:
        assert resp.status == 404
    async with client.post("/admin/api/agents", json={"name": "小吴"}) as resp:
        assert resp.status == 401
