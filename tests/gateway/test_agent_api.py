"""The agent API over real HTTP with web-chat customers (SQLite and PostgreSQL): auth, permissions,
concurrent claims, transfer, hand-back, notes, canned replies, and the OpenAPI spec matching the routes."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.http.openapi import spec
from gateway.keys import HANDOFF, RUNTIME
from handoff import notices
from handoff.agents import Role, new_token
from tests.gateway.test_handoff_flow import Console, handoff_section

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"


@pytest.fixture
async def gateway(aiohttp_client: Any, settings_factory: Any) -> Any:
    return await aiohttp_client(create_app(settings_factory(handoff=handoff_section(assignment="manual"))))


async def make_agent(
    client: Any, name: str, groups: tuple[str, ...] = ("售后",), role: Role = Role.AGENT, max_chats: int = 5
) -> Console:
    plain, hashed = new_token()
    await client.app[RUNTIME].handoff.db.add_agent(
        name, role=role, groups=groups, max_chats=max_chats, token_hash=hashed
    )
    return Console(client, plain, name)


async def customer_says(client: Any, user: str, text: str) -> dict[str, Any]:
    resp = await client.post(
        "/web/messages", json={"user_id": user, "text": text, "user_name": f"顾客{user}"}
    )
    assert resp.status == 200
    body = await resp.json()
    await client.app[HANDOFF].steps.settled()  # the handoff step runs after the answer
    return body


async def customer_sees(client: Any, user: str) -> list[str]:
    body = await (await client.get(f"/web/conversations/{user}/messages")).json()
    return [m["text"] for m in body["messages"] if m["direction"] == "out"]


async def complaint(client: Any, user: str) -> int:
    body = await customer_says(client, user, "我要投诉你们")
    return int(body["conversation_id"])


# --- authentication and permissions ---------------------------------------------------------------


async def test_without_or_with_a_bad_token_the_api_answers_401(gateway: Any) -> None:
    assert (await gateway.get("/api/v1/queue")).status == 401
    bad = await gateway.get("/api/v1/queue", headers={"Authorization": "Bearer kefu_nope"})
    assert bad.status == 401 and "WWW-Authenticate" in bad.headers
    assert "error" in await bad.json()


async def test_an_agent_cannot_see_or_claim_another_groups_conversation(gateway: Any) -> None:
    cid = await complaint(gateway, "p1")  # → 售后
    presale = await make_agent(gateway, "售前甲", ("售前",))
    assert (await presale.call("GET", "/queue"))["queue"] == []
    denied = await presale.call("GET", f"/conversations/{cid}", expect=403)
    assert "售后" in denied["error"]
    await presale.call("POST", f"/conversations/{cid}/claim", expect=403)
    await presale.call("POST", f"/conversations/{cid}/messages", json={"text": "hi"}, expect=403)
    await presale.call("GET", "/conversations/999999", expect=404)


async def test_only_the_assignee_replies_and_supervisors_reassign(gateway: Any) -> None:
    cid = await complaint(gateway, "p2")
    a = await make_agent(gateway, "甲")
    b = await make_agent(gateway, "乙")
    boss = await make_agent(gateway, "主管", ("售前",), role=Role.SUPERVISOR)
    await a.call("POST", f"/conversations/{cid}/claim")
    await b.call("GET", f"/conversations/{cid}", expect=403)  # not theirs any more
    await b.call("POST", f"/conversations/{cid}/messages", json={"text": "我来"}, expect=403)
    await a.call("POST", f"/conversations/{cid}/reassign", json={"agent": "乙"}, expect=403)
    # The supervisor sees everything, and moves it to 乙.
    assert (await boss.call("GET", f"/conversations/{cid}"))["assignment"]["agent_name"] == "甲"
    await boss.call("POST", f"/conversations/{cid}/reassign", json={"agent": "乙"})
    await b.call("POST", f"/conversations/{cid}/messages", json={"text": "您好，我是乙"}, expect=201)
    await a.call("POST", f"/conversations/{cid}/messages", json={"text": "还是我"}, expect=403)
    assert notices.transferred(to_agent_name="乙") in await customer_sees(gateway, "p2")


# --- claims --------------------------------------------------------------------------------------------


async def test_simultaneous_claims_over_http_exactly_one_wins(gateway: Any) -> None:
    cid = await complaint(gateway, "race")
    agents = [await make_agent(gateway, f"抢{i}") for i in range(6)]
    responses = await asyncio.gather(
        *(gateway.post(f"/api/v1/conversations/{cid}/claim", headers=x.headers) for x in agents)
    )
    statuses = sorted(r.status for r in responses)
    assert statuses == [200, 409, 409, 409, 409, 409]
    winner = next(x for x, r in zip(agents, responses, strict=True) if r.status == 200)
    detail = await winner.call("GET", f"/conversations/{cid}")
    assert detail["assignment"]["agent_name"] == winner.name
    # The customer was told exactly once who serves them.
    joined = [t for t in await customer_sees(gateway, "race") if t.startswith("您好，客服")]
    assert joined == [notices.agent_joined(winner.name)]


async def test_an_agent_at_capacity_cannot_claim_more(gateway: Any) -> None:
    one = await make_agent(gateway, "单", max_chats=1)
    first, second = await complaint(gateway, "cap1"), await complaint(gateway, "cap2")
    await one.call("POST", f"/conversations/{first}/claim")
    body = await one.call("POST", f"/conversations/{second}/claim", expect=409)
    assert "limit" in body["error"]


# --- transfer, hand-back, close ---------------------------------------------------------------------


async def test_transfer_to_another_group_puts_it_in_their_queue(gateway: Any) -> None:
    cid = await complaint(gateway, "tr1")
    after = await make_agent(gateway, "售后甲")
    pre = await make_agent(gateway, "售前乙", ("售前",))
    await after.call("POST", f"/conversations/{cid}/claim")
    await after.call("POST", f"/conversations/{cid}/transfer", json={"group": "售前"})
    queue = (await pre.call("GET", "/queue"))["queue"]
    assert [q["conversation_id"] for q in queue] == [cid] and queue[0]["priority"] == "high"
    await pre.call("POST", f"/conversations/{cid}/claim")
    assert notices.transferred(to_group="售前") in await customer_sees(gateway, "tr1")
    await after.call("POST", f"/conversations/{cid}/transfer", json={"group": "售后"}, expect=403)
    await pre.call("POST", f"/conversations/{cid}/transfer", json={"group": "不存在"}, expect=400)
    await pre.call("POST", f"/conversations/{cid}/transfer", json={}, expect=400)


async def test_transfer_to_a_named_agent(gateway: Any) -> None:
    cid = await complaint(gateway, "tr2")
    a = await make_agent(gateway, "丙")
    b = await make_agent(gateway, "丁")
    await a.call("POST", f"/conversations/{cid}/claim")
    await a.call("POST", f"/conversations/{cid}/transfer", json={"agent": "丁"})
    mine = await b.call("GET", "/conversations", params={"mine": "1"})
    assert [c["id"] for c in mine["conversations"]] == [cid]


async def test_hand_back_to_the_bot_and_the_bot_answers_again(gateway: Any) -> None:
    cid = await complaint(gateway, "hb")
    a = await make_agent(gateway, "戊")
    await a.call("POST", f"/conversations/{cid}/claim")
    quiet = await customer_says(gateway, "hb", "怎么开发票")
    assert quiet["replies"] == []  # with a human the bot says nothing
    await a.call("POST", f"/conversations/{cid}/handback", json={})
    assert notices.back_to_bot() in await customer_sees(gateway, "hb")
    answered = await customer_says(gateway, "hb", "怎么开发票")
    assert answered["conversation_id"] == cid
    assert answered["replies"] and answered["replies"][0]["text"].startswith("您好，确认收货后")
    await a.call("POST", f"/conversations/{cid}/close", json={}, expect=403)  # no longer theirs


async def test_close_twice_is_a_conflict_and_tags_are_validated(gateway: Any) -> None:
    cid = await complaint(gateway, "cl")
    a = await make_agent(gateway, "己")
    await a.call("POST", f"/conversations/{cid}/claim")
    await a.call("POST", f"/conversations/{cid}/close", json={"tags": "退款"}, expect=400)
    await a.call("POST", f"/conversations/{cid}/close", json={"tags": ["退款", "退款", " "]})
    detail = await a.call("GET", f"/conversations/{cid}")
    assert detail["state"] == "closed" and detail["assignment"]["tags"] == ["退款"]
    assert detail["csat"]["rating"] is None
    await a.call("POST", f"/conversations/{cid}/close", json={}, expect=403)


# --- nothing lost, notes, canned ---------------------------------------------------------------------


async def test_customer_messages_to_an_offline_agent_are_kept(gateway: Any) -> None:
    cid = await complaint(gateway, "off")
    a = await make_agent(gateway, "庚")
    await a.call("POST", f"/conversations/{cid}/claim")
    await a.call("POST", "/me/presence", json={"presence": "offline"})
    await customer_says(gateway, "off", "还在吗？")
    await customer_says(gateway, "off", "我等着呢")
    detail = await a.call("GET", f"/conversations/{cid}")
    assert [m["text"] for m in detail["messages"] if m["sender"] == "customer"][-2:] == [
        "还在吗？",
        "我等着呢",
    ]


async def test_notes_are_internal(gateway: Any) -> None:
    cid = await complaint(gateway, "note")
    a = await make_agent(gateway, "辛")
    await a.call("POST", f"/conversations/{cid}/claim")
    await a.call("POST", f"/conversations/{cid}/notes", json={"text": "老客户，优先处理"}, expect=201)
    detail = await a.call("GET", f"/conversations/{cid}")
    assert [n["text"] for n in detail["notes"]] == ["老客户，优先处理"]
    assert "老客户，优先处理" not in await customer_sees(gateway, "note")
    outbox = await gateway.app[RUNTIME].store.list_outbox()
    assert all("老客户" not in row.text for row in outbox)


async def test_canned_replies_render_with_the_customer_name(gateway: Any) -> None:
    cid = await complaint(gateway, "can")
    a = await make_agent(gateway, "壬")
    other = await make_agent(gateway, "癸", ("售前",))
    await a.call("POST", f"/conversations/{cid}/claim")
    bad = await a.call("POST", "/canned", json={"title": "x", "text": "您好 {客户}"}, expect=400)
    assert "placeholder" in bad["error"]
    await a.call(
        "POST", "/canned", json={"title": "问候", "text": "您好，{customer_name}"}, expect=403
    )  # global
    created = await a.call(
        "POST",
        "/canned",
        json={
            "title": "问候",
            "text": "{customer_name}您好，我是{agent_name}，订单{order_id}",
            "group": "售后",
        },
        expect=201,
    )
    assert [c["title"] for c in (await a.call("GET", "/canned"))["canned"]] == ["问候"]
    assert (await other.call("GET", "/canned"))["canned"] == []
    rendered = await a.call("POST", f"/canned/{created['id']}/render", json={"conversation_id": cid})
    assert rendered == {
        "text": "顾客can您好，我是壬，订单{order_id}",
        "missing": ["order_id"],
        "complete": False,
    }
    full = await a.call(
        "POST", f"/canned/{created['id']}/render", json={"conversation_id": cid, "values": {"order_id": "A1"}}
    )
    assert full["complete"] and full["text"].endswith("订单A1")


# --- the spec ------------------------------------------------------------------------------------------


async def test_every_api_route_is_in_the_openapi_spec_and_vice_versa(gateway: Any) -> None:
    served = await (await gateway.get("/api/v1/openapi.json")).json()
    assert served == spec() and served["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in served["paths"].items() for method in ops}
    routes = set()
    for route in gateway.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if path.startswith("/api/v1/") and route.method != "HEAD":
            routes.add((path.removeprefix("/api/v1"), route.method))
    assert routes == documented


def test_docs_api_md_names_every_endpoint_of_the_spec() -> None:
    text = API_DOC.read_text(encoding="utf-8")
    paths = spec()["paths"]
    missing = [
        f"{m.upper()} /api/v1{p}"
        for p, ops in paths.items()
        for m in ops
        if f"{m.upper()} /api/v1{p}" not in text
    ]
    assert missing == []


async def test_me_and_presence(gateway: Any) -> None:
    a = await make_agent(gateway, "子")
    me = await a.call("GET", "/me")
    assert me["presence"] == "offline" and me["load"] == 0
    assert (await a.call("POST", "/me/presence", json={"presence": "away"}))["presence"] == "away"
    assert (await a.call("POST", "/me/presence", json={"presence": "busy"}, expect=400))["error"].startswith(
        "presence"
    )


async def test_a_handoff_is_routed_by_the_faq_category_the_bot_last_answered(gateway: Any) -> None:
    answered = await customer_says(gateway, "cat", "什么时候发货")  # a 物流 question → 售后 by category
    assert answered["replies"]
    handed = await customer_says(gateway, "cat", "转人工")
    after = await make_agent(gateway, "物流专员")
    queue = (await after.call("GET", "/queue"))["queue"]
    assert [q["conversation_id"] for q in queue] == [handed["conversation_id"]]
    assert queue[0]["group"] == "售后" and queue[0]["priority"] == "normal"


async def test_round_robin_takes_turns_and_an_away_agent_gets_nothing_new(
    aiohttp_client: Any, settings_factory: Any
) -> None:
    client = await aiohttp_client(
        create_app(settings_factory(handoff=handoff_section(assignment="round_robin")))
    )
    agents = [await make_agent(client, name) for name in ("轮一", "轮二", "轮三")]
    for agent, presence in zip(agents, ("online", "online", "away"), strict=True):
        await agent.call("POST", "/me/presence", json={"presence": presence})
    for i in range(4):
        await complaint(client, f"rr{i}")
    assert [(await x.call("GET", "/me"))["load"] for x in agents] == [2, 2, 0]


async def test_suggestions_are_part_of_the_api_and_the_old_path_still_works(gateway: Any) -> None:
    cid = (await customer_says(gateway, "sg1", "怎么开发票"))["conversation_id"]
    await customer_says(gateway, "sg1", "转人工")
    boss = await make_agent(gateway, "主管乙", ("售前", "售后"), role=Role.SUPERVISOR)
    new = await boss.call("GET", f"/conversations/{cid}/suggestions")
    old = await (
        await gateway.get(f"/agent/api/conversations/{cid}/suggestions", headers=boss.headers)
    ).json()
    assert (
        new == old
        and new["suggestions"]
        and {"entry_id", "question", "answer", "score"} <= set(new["suggestions"][0])
    )
    assert (
        await gateway.get("/api/v1/conversations", params={"mine": "AAA"}, headers=boss.headers)
    ).status == 400


async def test_suggestions_rank_off_the_event_loop(gateway: Any, monkeypatch: Any) -> None:
    # Ranking embeds the customer's text (semantic stage): on the loop it would stall every request.
    cid = (await customer_says(gateway, "sg2", "怎么开发票"))["conversation_id"]
    await customer_says(gateway, "sg2", "转人工")
    boss = await make_agent(gateway, "主管丙", ("售前", "售后"), role=Role.SUPERVISOR)
    kind = type(gateway.app[RUNTIME].kb.snapshot()[1])
    seen: list[int] = []
    original = kind.rank

    def spy(self: Any, text: str, k: int = 3) -> Any:
        seen.append(threading.get_ident())
        return original(self, text, k)

    monkeypatch.setattr(kind, "rank", spy)
    assert (await boss.call("GET", f"/conversations/{cid}/suggestions"))["suggestions"]
    assert seen and threading.get_ident() not in seen


# --- Idempotency-Key on agent sends (reliability item 11) ---------------------------------------------


async def test_a_retried_send_with_the_same_idempotency_key_is_one_message_and_one_send(gateway: Any) -> None:
    # Regression: a console retrying after a network error sent the customer the reply twice.
    cid = await complaint(gateway, "idem")
    a = await make_agent(gateway, "幂等")
    await a.call("POST", f"/conversations/{cid}/claim")
    path = f"/api/v1/conversations/{cid}/messages"
    headers = {**a.headers, "Idempotency-Key": "console-7f3a"}
    sends = await asyncio.gather(
        *(gateway.post(path, json={"text": "您好，已为您退款"}, headers=headers) for _ in range(3))
    )
    assert [r.status for r in sends] == [201, 201, 201]
    ids = {(await r.json())["message_id"] for r in sends}
    assert len(ids) == 1
    again = await gateway.post(path, json={"text": "您好，已为您退款"}, headers=headers)
    assert (await again.json())["message_id"] in ids
    rows = await gateway.app[RUNTIME].store.list_outbox()
    assert [r.text for r in rows].count("您好，已为您退款") == 1
    # Another key is another message; a bad key is a 400.
    other = await gateway.post(
        path, json={"text": "您好，已为您退款"}, headers={**a.headers, "Idempotency-Key": "k2"}
    )
    assert (await other.json())["message_id"] not in ids
    bad = await gateway.post(path, json={"text": "x"}, headers={**a.headers, "Idempotency-Key": "有空格 no"})
    assert bad.status == 400
