"""Issue 17 item 3 over real HTTP on SQLite and PostgreSQL: canned replies are seeded once from the
deployment's file, managed through the API (shared ones by supervisors and admins, agents their own),
rendered with the known placeholders filled and the unknown ones listed, and a reply that still has a
`{placeholder}` is refused with a 422 that names it in Chinese — ordinary braces pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.app import create_app
from gateway.keys import RUNTIME
from handoff.agents import Role, new_token
from tests.gateway.test_handoff_flow import Console, handoff_section

DEMO_CANNED = Path(__file__).resolve().parents[2] / "config" / "canned.yaml"


async def _start(aiohttp_client: Any, settings_factory: Any, **handoff: Any) -> tuple[Any, Any]:
    app = create_app(
        settings_factory(
            handoff=handoff_section(assignment="manual", canned_file=str(DEMO_CANNED), **handoff),
            business_hours={"weekly": {"mon-fri": ["09:00-18:00"]}},
        )
    )
    client = await aiohttp_client(app)
    return client, app[RUNTIME]


async def _agent(client: Any, runtime: Any, name: str, groups: list[str], role: Role = Role.AGENT) -> Console:
    plain, hashed = new_token()
    await runtime.handoff.db.add_agent(name, role=role, groups=groups, max_chats=5, token_hash=hashed)
    return Console(client, plain, name)


async def test_seeded_managed_and_rendered(aiohttp_client: Any, settings_factory: Any) -> None:
    client, runtime = await _start(aiohttp_client, settings_factory)
    wang = await _agent(client, runtime, "小王", ["售前"])
    boss = await _agent(client, runtime, "主管", ["售前", "售后"], Role.SUPERVISOR)

    # The demo's replies were imported at start-up; 小王 sees the shared ones, not 售后's.
    listed = (await wang.call("GET", "/canned"))["canned"]
    titles = [c["title"] for c in listed]
    assert "问候" in titles and "服务时间" in titles and "退款进度" not in titles
    greeting = next(c for c in listed if c["title"] == "问候")
    assert greeting["placeholders"] == ["customer_name", "agent_name"] and greeting["editable"] is False
    assert "退款进度" in [c["title"] for c in (await boss.call("GET", "/canned"))["canned"]]

    # An agent adds one for their group and changes it; a shared one is not theirs to change.
    mine = await wang.call(
        "POST",
        "/canned",
        expect=201,
        json={"title": "发货", "text": "订单 {order_id} 今天发货", "group": "售前"},
    )
    assert mine["editable"] is True
    changed = await wang.call(
        "PUT",
        f"/canned/{mine['id']}",
        json={"title": "发货", "text": "订单 {order_id} 已发货", "group": "售前"},
    )
    assert changed["text"] == "订单 {order_id} 已发货"
    body = {"title": "问候", "text": "您好", "group": None}
    await wang.call("PUT", f"/canned/{greeting['id']}", expect=403, json=body)
    await wang.call("DELETE", f"/canned/{greeting['id']}", expect=403)
    await wang.call("POST", "/canned", expect=403, json={"title": "共享", "text": "您好", "group": None})
    await wang.call(
        "POST", "/canned", expect=400, json={"title": "坏的", "text": "{客户}您好", "group": "售前"}
    )
    # Supervisors manage the shared ones.
    edited = await boss.call(
        "PUT", f"/canned/{greeting['id']}", json={**body, "text": "{customer_name}您好！"}
    )
    assert edited["text"] == "{customer_name}您好！"
    assert await wang.call("DELETE", f"/canned/{mine['id']}") == {"deleted": mine["id"]}
    await wang.call("DELETE", f"/canned/{mine['id']}", expect=404)

    # Rendering fills what is known (customer, agent, service hours from business_hours) and lists the rest.
    resp = await client.post(
        "/web/messages", json={"user_id": "u-canned", "user_name": "张三", "text": "转人工"}
    )
    conversation_id = (await resp.json())["conversation_id"]
    hours = next(c for c in listed if c["title"] == "服务时间")
    rendered = await wang.call(
        "POST", f"/canned/{hours['id']}/render", json={"conversation_id": conversation_id}
    )
    assert rendered["complete"] and "周一至周五 09:00-18:00" in rendered["text"]
    urge = next(c for c in (await boss.call("GET", "/canned"))["canned"] if c["title"] == "物流催件")
    partial = await boss.call(
        "POST", f"/canned/{urge['id']}/render", json={"conversation_id": conversation_id}
    )
    assert partial["missing"] == ["order_id"] and not partial["complete"] and "{order_id}" in partial["text"]
    done = await boss.call(
        "POST",
        f"/canned/{urge['id']}/render",
        json={"conversation_id": conversation_id, "values": {"order_id": "A1"}},
    )
    assert done["complete"] and "订单 A1" in done["text"]
    greeted = await wang.call(
        "POST", f"/canned/{greeting['id']}/render", json={"conversation_id": conversation_id}
    )
    assert greeted["text"] == "张三您好！"


async def test_a_reply_with_an_unfilled_placeholder_is_refused(
    aiohttp_client: Any, settings_factory: Any
) -> None:
    client, runtime = await _start(aiohttp_client, settings_factory)
    wang = await _agent(client, runtime, "小王", ["售前"])
    resp = await client.post("/web/messages", json={"user_id": "u-422", "text": "转人工"})
    cid = (await resp.json())["conversation_id"]
    await wang.call("POST", f"/conversations/{cid}/claim")

    refused = await wang.call(
        "POST", f"/conversations/{cid}/messages", expect=422, json={"text": "订单 {order_id} 已发货"}
    )
    assert refused["code"] == "unfilled_placeholder" and refused["placeholders"] == ["order_id"]
    assert "未填写的占位符" in refused["error"] and "{order_id}（订单号）" in refused["error"]
    stored = [m.text for m in await runtime.store.messages(cid)]
    assert "订单 {order_id} 已发货" not in stored  # nothing stored, nothing sent

    # Ordinary braces are text, not placeholders.
    for text in ("型号写在 { 订单号 } 那一栏", "{}", "规格 {1,2}", '参数 {"a": 1}', "{型号}请看详情页"):
        await wang.call("POST", f"/conversations/{cid}/messages", expect=201, json={"text": text})


async def test_the_file_is_imported_once(aiohttp_client: Any, settings_factory: Any) -> None:
    client, runtime = await _start(aiohttp_client, settings_factory)
    boss = await _agent(client, runtime, "主管", ["售前", "售后"], Role.ADMIN)
    rows = (await boss.call("GET", "/canned"))["canned"]
    assert len(rows) == 7
    for row in rows:
        await boss.call("DELETE", f"/canned/{row['id']}")
    await boss.call("POST", "/canned", expect=201, json={"title": "自己的", "text": "您好", "group": None})
    await client.close()
    # A restart does not bring back what the admin deleted.
    client2, runtime2 = await _start(aiohttp_client, settings_factory)
    assert [r.title for r in await runtime2.handoff.db.canned()] == ["自己的"]
