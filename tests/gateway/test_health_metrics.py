"""/healthz and /metrics: what an operator and Prometheus see, including during a database outage."""

from __future__ import annotations

import re
from typing import Any

from gateway.app import create_app
from gateway.keys import RUNTIME


async def test_healthz_reports_database_and_knowledge_base(app_client: Any) -> None:
    resp = await app_client.get("/healthz")
    assert resp.status == 200
    body = await resp.json()
    runtime = app_client.app[RUNTIME]
    assert body["status"] == "ok" and body["db"]["ok"] is True
    assert body["db"]["dialect"] in ("sqlite", "postgresql")
    kb = body["kb"]
    assert kb["loaded"] and kb["version"] == runtime.kb.version and kb["entries"] == 8
    assert kb["errors"] == [] and kb["loaded_at"].endswith("+00:00")


async def test_database_outage_is_503_and_recovers(app_client: Any, db_outage: Any) -> None:
    runtime = app_client.app[RUNTIME]
    await db_outage.down(runtime.store)
    health = await app_client.get("/healthz")
    assert health.status == 503
    body = await health.json()
    assert body["status"] == "down" and body["db"]["ok"] is False

    message = await app_client.post(
        "/web/messages", json={"user_id": "u", "text": "怎么退货", "message_id": "x1"}
    )
    assert message.status == 503  # WeChat/web clients retry; nothing was stored
    assert "Traceback" not in await message.text()
    metrics = await app_client.get("/metrics")
    assert metrics.status == 200  # scrapes keep working; database gauges are just not refreshed

    await db_outage.up()
    assert (await app_client.get("/healthz")).status == 200
    retried = await app_client.post(
        "/web/messages", json={"user_id": "u", "text": "怎么退货", "message_id": "x1"}
    )
    assert retried.status == 200 and (await retried.json())["duplicate"] is False


async def test_metrics_count_messages_decisions_latency_and_queues(app_client: Any) -> None:
    for text, mid in (("怎么退货", "a"), ("怎么退货", "a"), ("谢谢", "b"), ("转人工", "c")):
        await app_client.post("/web/messages", json={"user_id": "m", "text": text, "message_id": mid})
    resp = await app_client.get("/metrics")
    assert resp.status == 200 and resp.content_type == "text/plain"
    text = await resp.text()
    assert 'kefu_messages_in_total{channel="web"} 3.0' in text
    assert 'kefu_messages_duplicate_total{channel="web"} 1.0' in text
    assert 'kefu_messages_out_total{channel="web"} 3.0' in text
    assert 'kefu_decisions_total{channel="web",decision="answer"} 1.0' in text
    assert 'kefu_decisions_total{channel="web",decision="handoff"} 1.0' in text
    assert 'kefu_handle_seconds_count{channel="web"} 3.0' in text
    assert "kefu_queue_length 1.0" in text
    assert re.search(r'^kefu_outbox_rows\{status="pending"\} \d+\.0$', text, re.MULTILINE)
    assert 'kefu_kb_reloads_total{outcome="ok"} 1.0' in text
    assert "kefu_kb_entries 8.0" in text


async def test_each_app_has_its_own_registry(
    aiohttp_client: Any, settings_factory: Any, app_client: Any
) -> None:
    other = await aiohttp_client(create_app(settings_factory()))
    await app_client.post("/web/messages", json={"user_id": "one", "text": "你好"})
    text = await (await other.get("/metrics")).text()
    assert 'kefu_messages_in_total{channel="web"}' not in text
