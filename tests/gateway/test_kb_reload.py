"""FAQ hot reload on a running gateway: admin endpoint, file watching, SIGHUP, and broken edits."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from blockbuster import BlockingError

from gateway.app import create_app
from gateway.keys import RUNTIME
from gateway.runtime import Runtime

NEW_ANSWER = "您好，发票已全面改为电子发票，下单时勾选「需要发票」即可，无需再单独申请。"


async def edit(path: Path, old: str, new: str) -> None:
    def rewrite() -> None:
        text = path.read_text(encoding="utf-8")
        assert old in text
        path.write_text(text.replace(old, new), encoding="utf-8")

    await asyncio.to_thread(rewrite)


async def ask(client: Any, text: str, user: str = "reader") -> str:
    body = await (await client.post("/web/messages", json={"user_id": user, "text": text})).json()
    return body["replies"][0]["text"]


async def wait_version_change(runtime: Runtime, old: str | None) -> None:
    for _ in range(200):
        if runtime.kb.version != old:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the knowledge base was not reloaded")


async def test_admin_reload_serves_the_edited_answer(
    app_client: Any, faq_dir: Path, admin_headers: dict[str, str]
) -> None:
    runtime = app_client.app[RUNTIME]
    old_version = runtime.kb.version
    assert (await ask(app_client, "怎么开发票")).startswith("您好，确认收货后")
    await edit(
        faq_dir / "shop.yaml",
        "您好，确认收货后在「我的订单」→「申请开票」中填写抬头和税号，电子发票会在3个工作日内发到您的邮箱。",
        NEW_ANSWER,
    )

    assert (await app_client.post("/admin/api/kb/reload")).status == 401
    resp = await app_client.post("/admin/api/kb/reload", headers=admin_headers)
    assert resp.status == 200
    body = await resp.json()
    assert (
        body["ok"] and body["changed"] and body["previous"] == old_version and body["version"] != old_version
    )
    assert await ask(app_client, "怎么开发票", user="reader-2") == NEW_ANSWER
    # The reload is in the audit log.
    entries = await runtime.store.audit_entries()
    assert entries[0]["what"] == "kb.reload" and entries[0]["details"]["version"] == body["version"]


async def test_a_broken_edit_keeps_the_last_good_faq_and_reports_file_and_line(
    app_client: Any, faq_dir: Path, admin_headers: dict[str, str]
) -> None:
    runtime = app_client.app[RUNTIME]
    good = runtime.kb.version
    await edit(faq_dir / "shop.yaml", "  - id: invoice\n", "  - id: Invoice Form\n")

    resp = await app_client.post("/admin/api/kb/reload", headers=admin_headers)
    assert resp.status == 422
    body = await resp.json()
    assert not body["ok"] and body["version"] == good
    assert any(e.startswith(f"{faq_dir / 'shop.yaml'}:") and "not a valid slug" in e for e in body["errors"])

    # Still answering from the last good snapshot.
    assert (await ask(app_client, "怎么开发票")).startswith("您好，确认收货后")
    health = await app_client.get("/healthz")
    assert health.status == 200
    status = await health.json()
    assert status["status"] == "degraded" and status["kb"]["version"] == good
    assert status["kb"]["errors"] == body["errors"]
    kb = await (await app_client.get("/admin/api/kb", headers=admin_headers)).json()
    assert kb["errors"] == body["errors"] and not kb["healthy"]


async def test_file_changes_are_picked_up_by_the_watcher(
    aiohttp_client: Any, settings_factory: Any, faq_dir: Path
) -> None:
    client = await aiohttp_client(create_app(settings_factory(kb={"watch": True})))
    runtime = client.app[RUNTIME]
    old = runtime.kb.version
    await edit(
        faq_dir / "shop.yaml",
        "您好，确认收货后在「我的订单」→「申请开票」中填写抬头和税号，电子发票会在3个工作日内发到您的邮箱。",
        NEW_ANSWER,
    )
    await wait_version_change(runtime, old)
    assert await ask(client, "怎么开发票") == NEW_ANSWER


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
async def test_sighup_reloads(aiohttp_client: Any, settings_factory: Any, faq_dir: Path) -> None:
    client = await aiohttp_client(create_app(settings_factory(), handle_signals=True))
    runtime = client.app[RUNTIME]
    old = runtime.kb.version
    await edit(faq_dir / "shop.yaml", "您好，现货商品付款后48小时内发货", "您好，现货商品付款后24小时内发货")
    os.kill(os.getpid(), signal.SIGHUP)
    await wait_version_change(runtime, old)
    assert (await ask(client, "什么时候发货")).startswith("您好，现货商品付款后24小时内发货")


async def test_scanning_the_faq_files_on_the_loop_would_be_caught(app_client: Any) -> None:
    """The watcher stats files in a thread; doing it on the loop is exactly what the detector fails."""
    runtime = app_client.app[RUNTIME]
    with pytest.raises(BlockingError):
        runtime.kb._scan()
    assert not await runtime.kb.changed()  # the real path (executor) is fine
