"""`GET /api/v1/reports/records`: a supervisor downloads the 受理记录 over HTTP."""

from __future__ import annotations

import csv
import io
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from gateway.http import admin_api
from gateway.storage import stats_queries
from gateway.storage.schema.handoff import AgentRecord
from gateway.storage.store import Store
from handoff import questions, reports
from handoff.agents import hash_token
from tests.gateway.test_reports_queries import seed

URL = "/api/v1/reports/records"
DAY = {"from": "2026-11-24", "to": "2026-11-24"}


@pytest.fixture
async def client(app_client: Any, db_url: str) -> Any:
    store = Store.from_url(db_url)
    await store.create_all()
    await seed(store)
    now = datetime.now(UTC)
    async with store.engine.begin() as conn:
        for name, role in (("主管", "supervisor"), ("小张", "agent")):
            await conn.execute(
                AgentRecord.__table__.insert().values(
                    name=name,
                    role=role,
                    groups=["售前"],
                    max_chats=5,
                    enabled=True,
                    token_hash=hash_token(f"token-{role}"),
                    created_at=now,
                )
            )
    await store.dispose()
    return app_client


async def test_csv_for_a_supervisor(client: Any) -> None:
    resp = await client.get(URL, params=DAY, headers={"Authorization": "Bearer token-supervisor"})
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/csv")
    assert 'filename="kefu-records-20261124-20261124.csv"' in resp.headers["Content-Disposition"]
    text = (await resp.read()).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text)))
    assert len(rows) == 1 + 3
    assert "138****5678" in text and "13812345678" not in text


async def test_xlsx_with_the_admin_token(client: Any, admin_headers: dict[str, str]) -> None:
    from openpyxl import load_workbook

    resp = await client.get(URL, params={**DAY, "format": "xlsx"}, headers=admin_headers)
    assert resp.status == 200
    wb = load_workbook(io.BytesIO(await resp.read()))
    assert wb["受理记录"].max_row == 4 and "汇总" in wb.sheetnames


async def test_json_rows_and_summary(client: Any, admin_headers: dict[str, str]) -> None:
    resp = await client.get(URL, params={**DAY, "format": "json"}, headers=admin_headers)
    body = await resp.json()
    assert body["columns"][0] == "会话编号" and len(body["rows"]) == 3
    assert body["rows"][0][1] == "2026-11-24 09:05:00"
    assert ["总量", "会话数", 3] in body["summary"]
    assert ["未解答问题", "可以开专票吗", 1] in body["summary"]
    assert body["satisfaction"]["average"] == 4.0


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer token-agent"}, 403), ({"Authorization": "Bearer nope"}, 401)],
)
async def test_only_supervisors_and_admins(client: Any, headers: dict[str, str], status: int) -> None:
    resp = await client.get(URL, params=DAY, headers=headers)
    assert resp.status == status


@pytest.mark.parametrize(
    "params",
    [
        {"from": "2026-11-25", "to": "2026-11-24"},
        {"from": "2026-01-01", "to": "2026-11-24"},
        {"from": "yesterday"},
        {**DAY, "format": "pdf"},
    ],
)
async def test_bad_requests_say_what_is_wrong(
    client: Any, admin_headers: dict[str, str], params: dict[str, str]
) -> None:
    resp = await client.get(URL, params=params, headers=admin_headers)
    assert resp.status == 400


# --- clustering off the event loop, bounded, and flagged (issue 13, item 12) ------------------------------


def _record_threads(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[int]:
    """Wrap `module.cluster_questions_capped` to note the thread each call runs on."""
    threads: list[int] = []
    real = module.cluster_questions_capped

    def spy(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.get_ident())
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "cluster_questions_capped", spy)
    return threads


async def test_the_json_export_clusters_in_a_thread_and_flags_the_cap(
    client: Any, admin_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = _record_threads(monkeypatch, reports)
    body = await (await client.get(URL, params={**DAY, "format": "json"}, headers=admin_headers)).json()
    assert body["truncated"] is False
    assert threads and threading.get_ident() not in threads
    monkeypatch.setattr(questions, "MAX_WORDINGS", 0)
    cut = await (await client.get(URL, params={**DAY, "format": "json"}, headers=admin_headers)).json()
    assert cut["truncated"] is True
    assert not [row for row in cut["summary"] if row[0] == "未解答问题"]


async def test_the_dashboard_clusters_in_a_thread_and_flags_capped_rows(
    app_client: Any, admin_headers: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    threads = _record_threads(monkeypatch, admin_api)
    for text in ("你们几点下班", "能送到火星吗"):
        await app_client.post("/web/messages", json={"user_id": "stats-cap", "text": text})
    body = await (await app_client.get("/admin/api/stats", headers=admin_headers)).json()
    assert body["truncated"] is False and body["totals"]["messages"] == 2
    assert threads and threading.get_ident() not in threads
    monkeypatch.setattr(stats_queries, "MAX_ROWS", 1)
    capped = await (await app_client.get("/admin/api/stats", headers=admin_headers)).json()
    assert capped["truncated"] is True and capped["totals"]["messages"] == 1
    monkeypatch.setattr(stats_queries, "MAX_ROWS", 50_000)
    monkeypatch.setattr(questions, "MAX_WORDINGS", 0)
    cut = await (await app_client.get("/admin/api/stats", headers=admin_headers)).json()
    assert cut["truncated"] is True and cut["unanswered"] == []
