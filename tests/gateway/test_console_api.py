"""The console's customer panel, tags, order lookup and history search over real HTTP (SQLite and PostgreSQL).

Each is checked for what an agent may see: the panel and tags of a conversation follow `can_view`, and
the search returns only messages of conversations the agent may open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.keys import HANDOFF
from handoff.agents import Role, new_token
from tests.conftest import FIXTURES
from tests.fakes.action_servers import TEST_ACTIONS
from tests.gateway.test_handoff_flow import handoff_section

PHONE = "13812345678"


@pytest.fixture
async def client(aiohttp_client: Any, settings_factory: Any, faq_dir: Path) -> Any:
    settings = settings_factory(
        handoff=handoff_section(assignment="manual"),
        kb={"paths": [str(faq_dir), str(FIXTURES / "faq_actions")]},
        actions={"modules": [TEST_ACTIONS], "timeout_s": 20, "order_info": "action_order_status"},
    )
    return await aiohttp_client(create_app(settings))


async def agent(client: Any, name: str, groups: tuple[str, ...], role: Role = Role.AGENT) -> dict[str, str]:
    plain, hashed = new_token()
    await client.app[HANDOFF].db.add_agent(name, role=role, groups=groups, max_chats=5, token_hash=hashed)
    return {"Authorization": f"Bearer {plain}"}


async def say(client: Any, user: str, text: str) -> dict[str, Any]:
    async with client.post("/web/messages", json={"user_id": user, "text": text}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def call(
    client: Any, method: str, path: str, auth: dict[str, str], expect: int = 200, **kw: Any
) -> Any:
    async with client.request(method, path, headers=auth, **kw) as resp:
        assert resp.status == expect, (path, resp.status, await resp.text())
        return await resp.json()


async def handed_off(client: Any, user: str, auth: dict[str, str], *texts: str) -> int:
    """The customer says `texts`, asks for a human (售后: a complaint), the agent claims; the conversation id."""
    for text in texts:
        await say(client, user, text)
    body = await say(client, user, "我要投诉，转人工")
    cid = body["conversation_id"]
    await call(client, "POST", f"/api/v1/conversations/{cid}/claim", auth)
    return cid


async def test_the_customer_panel_masks_a_phone_id_lists_past_conversations_and_keeps_tags(
    client: Any,
) -> None:
    alice = await agent(client, "小艾", ("售后",))
    presale = await agent(client, "小倩", ("售前",))
    first = await handed_off(client, PHONE, alice, "怎么退货")
    await call(client, "POST", f"/api/v1/conversations/{first}/close", alice, json={"tags": []})
    await say(client, PHONE, "1")  # the CSAT rating ends the first conversation
    second = await handed_off(client, PHONE, alice, "退款多久到账")
    assert second != first

    panel = await call(client, "GET", f"/agent/api/conversations/{second}/customer", alice)
    assert panel["identity"] == "138****5678" and PHONE not in str(panel)
    assert panel["channel"] == "web" and panel["first_contact"] and panel["order_info"] is True
    assert [(c["id"], c["viewable"]) for c in panel["conversations"]] == [(first, True)]
    assert panel["tags"] == []

    saved = await call(
        client,
        "PUT",
        f"/agent/api/conversations/{second}/customer/tags",
        alice,
        json={"tags": ["老客户", "VIP", "老客户"]},
    )
    assert saved == {"tags": ["老客户", "VIP"]}
    saved = await call(
        client, "PUT", f"/agent/api/conversations/{second}/customer/tags", alice, json={"tags": ["VIP"]}
    )
    assert (await call(client, "GET", f"/agent/api/conversations/{second}/customer", alice))["tags"] == [
        "VIP"
    ]

    # Another group's agent may not read or tag this customer through the conversation.
    await call(client, "GET", f"/agent/api/conversations/{second}/customer", presale, expect=403)
    await call(
        client,
        "PUT",
        f"/agent/api/conversations/{second}/customer/tags",
        presale,
        expect=403,
        json={"tags": []},
    )
    for bad in (
        {"tags": "VIP"},
        {"tags": ["x" * 33]},
        {"tags": [""]},
        {"tags": ["a\nb"]},
        {"tags": ["t"] * 21},
    ):
        await call(
            client, "PUT", f"/agent/api/conversations/{second}/customer/tags", alice, expect=400, json=bad
        )
    await call(client, "GET", "/agent/api/conversations/999999/customer", alice, expect=404)


async def test_order_info_runs_the_configured_action_on_the_conversation_tracker(client: Any) -> None:
    alice = await agent(client, "小艾", ("售后", "售前"))
    cid = await handed_off(client, "buyer-1", alice, "我的快递到哪了", "A12345678")
    result = await call(client, "POST", f"/agent/api/conversations/{cid}/order-info", alice)
    assert result["action"] == "action_order_status"
    assert result["texts"] == ["您的订单A12345678已到达【上海转运中心】"]
    # Nothing was sent to the customer: the last stored message is still the handoff's.
    detail = await call(client, "GET", f"/api/v1/conversations/{cid}", alice)
    assert not any("上海转运中心" in m["text"] for m in detail["messages"][-2:])


async def test_search_finds_only_conversations_the_agent_may_open_pages_and_escapes_like(client: Any) -> None:
    alice = await agent(client, "小艾", ("售后",))
    bob = await agent(client, "小博", ("售后",))
    boss = await agent(client, "主管", (), Role.SUPERVISOR)
    mine = await handed_off(client, "c-1", alice, "快递盒子压坏了 100%")
    theirs = await handed_off(client, "c-2", bob, "快递盒子也压坏了")
    await say(client, "c-3", "快递盒子什么时候到")  # the bot answered; nobody's conversation

    hits = await call(client, "GET", "/agent/api/search?q=盒子", alice)
    assert {h["conversation_id"] for h in hits["items"]} == {mine}
    assert all("盒子" in h["text"] for h in hits["items"])
    everyone = await call(client, "GET", "/agent/api/search?q=盒子", boss)
    assert {mine, theirs} <= {h["conversation_id"] for h in everyone["items"]}

    # LIKE's own characters are literal: "100%" matches, "_" alone matches nothing.
    assert [
        h["conversation_id"]
        for h in (await call(client, "GET", "/agent/api/search?q=100%25", alice))["items"]
    ] == [mine]
    assert (await call(client, "GET", "/agent/api/search?q=_", boss))["items"] == []

    first = await call(client, "GET", "/agent/api/search?q=盒子&limit=1", boss)
    assert len(first["items"]) == 1 and first["next_before"] == first["items"][0]["message_id"]
    second = await call(
        client, "GET", f"/agent/api/search?q=盒子&limit=1&before={first['next_before']}", boss
    )
    assert second["items"][0]["message_id"] < first["items"][0]["message_id"]

    for bad in ("", "q=", "q=" + "长" * 101, "q=x&limit=0", "q=x&before=abc"):
        await call(client, "GET", f"/agent/api/search?{bad}", alice, expect=400)
    await call(client, "GET", "/agent/api/search?q=x", {}, expect=401)
