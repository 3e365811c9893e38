"""The FAQ editor's API over real HTTP: read an entry, check a change in Chinese, preview, save, 409, reload.

The FAQ files are storage here (not the database), so these run once; the audit row goes to the
test database of `db_url` (SQLite and PostgreSQL).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import pytest

from gateway.app import create_app
from gateway.http.admin_faq_api import _write_if_unchanged
from gateway.keys import HANDOFF
from handoff.agents import Role, new_token
from kb.editing import file_version
from tests.gateway.test_handoff_flow import handoff_section

NEW_ANSWER = "您好，退货请在「我的订单」里点「申请售后」，我们收到商品后 1 个工作日内处理。"


@pytest.fixture
async def client(aiohttp_client: Any, settings_factory: Any) -> Any:
    return await aiohttp_client(create_app(settings_factory(handoff=handoff_section())))


async def _entry(client: Any, headers: dict[str, str], entry_id: str = "return-how") -> dict[str, Any]:
    async with client.get(f"/admin/api/faq/entry?file=shop.yaml&id={entry_id}", headers=headers) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def _ask(client: Any, text: str) -> str:
    async with client.post("/web/messages", json={"user_id": "editor-test", "text": text}) as resp:
        assert resp.status == 200
        return (await resp.json())["replies"][0]["text"]


async def test_an_admin_edits_an_answer_the_file_keeps_its_comments_and_the_bot_answers_with_it(
    client: Any, admin_headers: dict[str, str], faq_dir: Path
) -> None:
    before = (faq_dir / "shop.yaml").read_text(encoding="utf-8")
    async with client.get("/admin/api/faq", headers=admin_headers) as resp:
        listing = await resp.json()
    [shop] = listing["files"]
    assert shop["name"] == "shop.yaml" and "return-how" in [e["id"] for e in shop["entries"]]
    entry = await _entry(client, admin_headers)
    assert entry["entry"]["question"] == "怎么退货" and entry["version"] == shop["version"]

    body = {
        "file": "shop.yaml",
        "id": "return-how",
        "entry": {"answer": NEW_ANSWER},
        "version": entry["version"],
    }
    async with client.put("/admin/api/faq/entry", json=body, headers=admin_headers) as resp:
        assert resp.status == 200, await resp.text()
        saved = await resp.json()
    assert saved["reload"]["ok"] and saved["reload"]["changed"]

    after = (faq_dir / "shop.yaml").read_text(encoding="utf-8")
    diff = [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    ]
    assert diff == [
        "-    answer: 您好，在「我的订单」中找到该订单，点击「申请售后」→「退货退款」，按提示填写原因并寄回商品即可。",
        f"+    answer: {NEW_ANSWER}",
    ]
    assert after.startswith("# Test FAQ for the gateway suites")  # the comments are still there
    assert await _ask(client, "怎么退货") == NEW_ANSWER  # hot-reloaded: the bot uses it at once


async def test_a_stale_version_is_a_409_and_nothing_is_written(
    client: Any, admin_headers: dict[str, str], faq_dir: Path
) -> None:
    entry = await _entry(client, admin_headers)
    first = {
        "file": "shop.yaml",
        "id": "return-how",
        "entry": {"answer": NEW_ANSWER},
        "version": entry["version"],
    }
    async with client.put("/admin/api/faq/entry", json=first, headers=admin_headers) as resp:
        assert resp.status == 200
    written = (faq_dir / "shop.yaml").read_text(encoding="utf-8")
    second = {**first, "entry": {"answer": "另一个管理员同时写的答案。"}}
    async with client.put("/admin/api/faq/entry", json=second, headers=admin_headers) as resp:
        assert resp.status == 409
        assert "已被其他人修改" in (await resp.json())["error"]
    assert (faq_dir / "shop.yaml").read_text(encoding="utf-8") == written


async def test_check_reports_problems_in_chinese_relative_to_the_faq_folder_and_save_refuses_them(
    client: Any, admin_headers: dict[str, str], faq_dir: Path
) -> None:
    entry = await _entry(client, admin_headers, "refund-time")
    # 怎么退货 belongs to return-how: one question, one answer (the `kefu kb check` rule).
    body = {"file": "shop.yaml", "id": "refund-time", "entry": {"similar": ["怎么退货"], "answer": ""}}
    async with client.post("/admin/api/faq/check", json=body, headers=admin_headers) as resp:
        assert resp.status == 200
        check = await resp.json()
    assert not check["ok"]
    texts = [p["text"] for p in check["problems"]]
    assert any("答案 answer 为空" in t for t in texts), texts
    assert any("问题 “怎么退货” 已属于条目 return-how" in t for t in texts), texts
    assert all(t.startswith("shop.yaml 第 ") for t in texts)
    assert str(faq_dir) not in str(check) and "/tmp" not in str(check)  # no server paths
    before = (faq_dir / "shop.yaml").read_text(encoding="utf-8")
    async with client.put(
        "/admin/api/faq/entry", json={**body, "version": entry["version"]}, headers=admin_headers
    ) as resp:
        assert resp.status == 422
        assert (await resp.json())["problems"]
    assert (faq_dir / "shop.yaml").read_text(encoding="utf-8") == before


async def test_preview_shows_how_test_questions_would_be_answered_without_swapping_the_kb(
    client: Any, admin_headers: dict[str, str]
) -> None:
    body = {
        "file": "shop.yaml",
        "id": "refund-time",
        "entry": {"similar": ["退款什么时候到", "钱什么时候退回来", "退款一直没到账", "退的钱去哪了"]},
        "questions": ["退的钱去哪了"],
    }
    async with client.post("/admin/api/faq/check", json=body, headers=admin_headers) as resp:
        check = await resp.json()
    assert check["ok"] and check["problems"] == []
    [row] = check["preview"]
    assert row["after"]["decision"] == "answer" and row["after"]["entry_id"] == "refund-time"
    assert row["now"]["entry_id"] != "refund-time" or row["now"]["decision"] != "answer"
    # Not swapped in: the bot still answers as before.
    reply = await _ask(client, "退的钱去哪了")
    assert "原路退回" not in reply


async def test_no_file_outside_the_configured_faq_can_be_read_or_written(
    client: Any, admin_headers: dict[str, str], faq_dir: Path
) -> None:
    secret = faq_dir.parent / "secret.yaml"
    secret.write_text("faqs: []\n", encoding="utf-8")
    for name in ("../secret.yaml", "/etc/passwd", "shop.yaml/../../secret.yaml", "shop.yml"):
        async with client.get(f"/admin/api/faq/entry?file={name}&id=x", headers=admin_headers) as resp:
            assert resp.status == 404, name
        body = {"file": name, "id": "x", "entry": {"answer": "x"}, "version": "0"}
        async with client.put("/admin/api/faq/entry", json=body, headers=admin_headers) as resp:
            assert resp.status == 404, name
    assert secret.read_text(encoding="utf-8") == "faqs: []\n"
    bad = {"file": "shop.yaml", "id": "return-how", "entry": {"id": "renamed"}, "version": "0"}
    async with client.put("/admin/api/faq/entry", json=bad, headers=admin_headers) as resp:
        assert resp.status == 400


async def test_an_admin_agent_may_edit_and_other_agents_may_not(client: Any) -> None:
    tokens = {}
    for role in (Role.ADMIN, Role.AGENT):
        plain, hashed = new_token()
        await client.app[HANDOFF].db.add_agent(
            f"{role.value}者", role=role, groups=("售后",), max_chats=5, token_hash=hashed
        )
        tokens[role] = {"Authorization": f"Bearer {plain}"}
    assert (await _entry(client, tokens[Role.ADMIN]))["entry"]["id"] == "return-how"
    async with client.get("/admin/api/faq", headers=tokens[Role.AGENT]) as resp:
        assert resp.status == 403


async def test_a_file_changed_on_disk_after_it_was_read_is_a_409(
    client: Any, admin_headers: dict[str, str], faq_dir: Path
) -> None:
    entry = await _entry(client, admin_headers)
    shop = faq_dir / "shop.yaml"
    edited_elsewhere = shop.read_text(encoding="utf-8") + "# 同事在编辑器里加的一行\n"
    shop.write_text(edited_elsewhere, encoding="utf-8")  # e.g. a git pull or another admin's save
    body = {
        "file": "shop.yaml",
        "id": "return-how",
        "entry": {"answer": NEW_ANSWER},
        "version": entry["version"],
    }
    async with client.put("/admin/api/faq/entry", json=body, headers=admin_headers) as resp:
        assert resp.status == 409
    assert shop.read_text(encoding="utf-8") == edited_elsewhere


def test_the_write_compares_the_version_again_under_the_lock(faq_dir: Path) -> None:
    shop = faq_dir / "shop.yaml"
    text = shop.read_text(encoding="utf-8")
    assert _write_if_unchanged(str(shop), "0" * 16, "faqs: []\n") is not None  # another process won
    assert shop.read_text(encoding="utf-8") == text
    assert _write_if_unchanged(str(shop), file_version(text), text + "# ok\n") is None
    assert shop.read_text(encoding="utf-8") == text + "# ok\n"
    assert sorted(p.name for p in faq_dir.iterdir()) == [
        ".shop.yaml.lock",
        "shop.yaml",
    ]  # no temporary file left


async def test_an_admin_adds_an_entry_it_is_checked_appended_and_answered_at_once(
    client: Any, admin_headers: dict[str, str], faq_dir: Path
) -> None:
    shop = faq_dir / "shop.yaml"
    before = shop.read_text(encoding="utf-8")
    version = (await _entry(client, admin_headers))["version"]
    answer = "您好，我们的仓库在浙江杭州，现货一般当天从杭州发出。"
    fields = {
        "question": "你们的仓库在哪个城市",
        "similar": ["从哪里发货"],
        "answer": answer,
        "category": "物流",
    }
    body = {
        "file": "shop.yaml",
        "id": "warehouse-city",
        "entry": fields,
        "new": True,
        "questions": ["仓库在哪"],
    }
    async with client.post("/admin/api/faq/check", json=body, headers=admin_headers) as resp:
        check = await resp.json()
    assert check["ok"], check
    assert check["preview"][0]["after"]["entry_id"] == "warehouse-city"
    assert shop.read_text(encoding="utf-8") == before  # a check writes nothing

    save = {key: body[key] for key in ("file", "id", "entry")} | {"version": version}
    async with client.post("/admin/api/faq/entry", json=save, headers=admin_headers) as resp:
        assert resp.status == 201, await resp.text()
        created = await resp.json()
    assert created["id"] == "warehouse-city" and created["reload"]["ok"]
    after = shop.read_text(encoding="utf-8")
    diff = [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
        if line.startswith(("+", "-")) and not line.startswith(("+++", "---"))
    ]
    # Added at the end of faqs:, nothing else touched (the comments, other entries and replies: as they were).
    assert diff == [
        "+  - id: warehouse-city",
        "+    question: 你们的仓库在哪个城市",
        "+    similar:",
        "+      - 从哪里发货",
        f"+    answer: {answer}",
        "+    category: 物流",
    ], diff
    assert await _ask(client, "你们的仓库在哪个城市") == answer
    entry = await _entry(client, admin_headers, "warehouse-city")
    assert entry["entry"]["similar"] == ["从哪里发货"]

    # The same id again (this file or any other) is refused with the reason, and nothing is written.
    async with client.post(
        "/admin/api/faq/entry", json={**save, "version": created["version"]}, headers=admin_headers
    ) as resp:
        assert resp.status == 422
        assert "warehouse-city" in (await resp.json())["error"]
    assert shop.read_text(encoding="utf-8") == after


async def test_a_new_entry_needs_a_question_and_an_answer_and_one_another_entry_has_is_refused(
    client: Any, admin_headers: dict[str, str], faq_dir: Path
) -> None:
    shop = faq_dir / "shop.yaml"
    before = shop.read_text(encoding="utf-8")
    version = (await _entry(client, admin_headers))["version"]
    base = {"file": "shop.yaml", "id": "new-one", "version": version}
    async with client.post(
        "/admin/api/faq/entry", json={**base, "entry": {"question": "发票怎么开"}}, headers=admin_headers
    ) as resp:
        assert resp.status == 422
        assert (await resp.json())["error"] == "新条目需要填写答案"
    taken = {"question": "怎么退货", "answer": "您好，另一个答案。"}  # return-how's question
    async with client.post(
        "/admin/api/faq/entry", json={**base, "entry": taken}, headers=admin_headers
    ) as resp:
        assert resp.status == 422
        problems = [p["text"] for p in (await resp.json())["problems"]]
    assert any("已属于条目 return-how" in t for t in problems), problems
    async with client.post(
        "/admin/api/faq/check", json={**base, "entry": taken, "new": "yes"}, headers=admin_headers
    ) as resp:
        assert resp.status == 400
    assert shop.read_text(encoding="utf-8") == before
