"""质检 and 绩效 over real HTTP (SQLite and PostgreSQL): a closed conversation is scored, the supervisor finds
the "不知道" among the flagged ones and reviews it; the agent KPI table as JSON, CSV and XLSX; the draft check."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.app import create_app
from gateway.jobs.qa_scoring import score_pending
from gateway.keys import QA, RUNTIME
from handoff.agents import Role
from tests.gateway.test_agent_api import complaint, make_agent
from tests.gateway.test_handoff_flow import handoff_section

REPO = Path(__file__).resolve().parents[2]
TZ = ZoneInfo("Asia/Shanghai")


def today() -> str:
    return datetime.now(UTC).astimezone(TZ).date().isoformat()


@pytest.fixture
async def gateway(aiohttp_client: Any, settings_factory: Any) -> Any:
    settings = settings_factory(
        handoff=handoff_section(assignment="manual"),
        qa={"path": str(REPO / "config" / "qa.yaml"), "job_interval_s": 3600},  # scored by the test itself
    )
    return await aiohttp_client(create_app(settings))


async def served_and_closed(gateway: Any, agent: Any, user: str, replies: list[str]) -> int:
    cid = await complaint(gateway, user)
    await agent.call("POST", f"/conversations/{cid}/claim")
    for text in replies:
        await agent.call("POST", f"/conversations/{cid}/messages", json={"text": text}, expect=201)
    await agent.call("POST", f"/conversations/{cid}/close", json={"tags": []})
    return cid


async def test_the_supervisor_finds_the_bu_zhi_dao_among_the_flagged_and_reviews_it(gateway: Any) -> None:
    wang = await make_agent(gateway, "小王")
    li = await make_agent(gateway, "小李")
    boss = await make_agent(gateway, "主管", ("售前", "售后"), role=Role.SUPERVISOR)
    good = await served_and_closed(
        gateway,
        li,
        "q1",
        ["您好，很高兴为您服务，正在为您查询，请您稍等。", "已为您登记，感谢您的耐心，再见！"],
    )
    bad = await served_and_closed(gateway, wang, "q2", ["您好", "不知道", "感谢您的耐心，再见"])
    runtime = gateway.app[RUNTIME]
    assert await score_pending(runtime.store, gateway.app[QA]) == 2
    assert await score_pending(runtime.store, gateway.app[QA]) == 0  # scored once
    flagged = await boss.call("GET", f"/qa?from={today()}&to={today()}&flagged=1")
    assert [r["conversation_id"] for r in flagged["results"]] == [str(bad)]
    (result,) = flagged["results"]
    assert result["agent"] == "小王" and "bare-unknown" in result["rules"] and result["review"] == "open"
    everything = await boss.call("GET", f"/qa?from={today()}&to={today()}")
    assert {r["conversation_id"] for r in everything["results"]} == {str(good), str(bad)}
    # The page highlights the offending message: hits point into the messages by index and span.
    detail = await boss.call("GET", f"/qa/{bad}")
    hit = next(h for h in detail["hits"] if h["rule"] == "bare-unknown")
    message = detail["messages"][hit["message_index"]]
    assert message["sender"] == "agent" and message["text"][hit["start"] : hit["end"]] == "不知道"
    assert hit["suggestion"]
    # Confirm with a note, kept for the audit; a second decision is a conflict.
    done = await boss.call("POST", f"/qa/{bad}/review", json={"action": "confirm", "note": "已辅导话术"})
    assert done["review"] == "confirmed"
    await boss.call("POST", f"/qa/{bad}/review", json={"action": "dismiss", "note": "再看"}, expect=409)
    after = await boss.call("GET", f"/qa/{bad}")
    assert (after["review"], after["review_note"], after["reviewed_by"]) == (
        "confirmed",
        "已辅导话术",
        "agent:主管",
    )
    assert (await boss.call("GET", f"/qa?from={today()}&to={today()}&review=open"))["results"] == []
    audit = await runtime.store.audit_entries()
    assert any(e["what"] == "qa_review" for e in audit)
    # Agents do not read the 质检 results; bad input is a 400.
    await wang.call("GET", "/qa", expect=403)
    await boss.call("POST", f"/qa/{bad}/review", json={"action": "maybe", "note": "x"}, expect=400)
    await boss.call("POST", f"/qa/{good}/review", json={"action": "confirm", "note": "x"}, expect=404)
    await boss.call("GET", "/qa?flagged=perhaps", expect=400)


async def test_the_draft_check_underlines_and_blocks_only_block_rules(gateway: Any) -> None:
    wang = await make_agent(gateway, "小王")
    check = await wang.call("POST", "/qa/check", json={"text": "不知道"})
    assert not check["blocked"]
    (hit,) = check["hits"]
    assert (hit["rule"], hit["start"], hit["end"]) == ("bare-unknown", 0, 3) and hit["suggestion"]
    assert (await wang.call("POST", "/qa/check", json={"text": "{name}您好"}))["blocked"]
    first = await wang.call("POST", "/qa/check", json={"text": "在的", "first_reply": True})
    assert [h["rule"] for h in first["hits"]] == ["greeting"]
    await wang.call("POST", "/qa/check", json={"text": 5}, expect=400)
    rules = await wang.call("GET", "/qa/rules")
    assert rules["version"] and rules["problems"] == [] and any(r["id"] == "rude" for r in rules["rules"])
    assert (await gateway.post("/api/v1/qa/check", json={"text": "x"})).status == 401


async def test_broken_rules_keep_the_last_good_ones_and_report_file_and_line(
    aiohttp_client: Any, settings_factory: Any, tmp_path: Path
) -> None:
    path = tmp_path / "qa.yaml"
    path.write_text((REPO / "config" / "qa.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    settings = settings_factory(handoff=handoff_section(), qa={"path": str(path), "job_interval_s": 3600})
    client = await aiohttp_client(create_app(settings))
    qa = client.app[QA]
    version = qa.rules.version
    await asyncio.to_thread(
        path.write_text, "rules:\n  - id: a\n    type: forbiden\n    words: [x]\n", "utf-8"
    )
    await qa.reload(force=True)
    assert qa.rules.version == version  # still the last good rules
    assert qa.problems and str(qa.problems[0]).startswith(f"{path}:3:")
    await asyncio.to_thread(
        path.write_text, "rules:\n  - id: a\n    type: forbidden\n    words: [哎呀]\n", "utf-8"
    )
    assert await qa.reload(force=True)
    assert [r.id for r in qa.rules.rules] == ["a"]


async def test_agent_kpis_as_json_csv_and_xlsx(gateway: Any, admin_headers: dict[str, str]) -> None:
    from openpyxl import load_workbook

    wang = await make_agent(gateway, "小王")
    await make_agent(gateway, "小李")
    boss = await make_agent(gateway, "主管", ("售前", "售后"), role=Role.SUPERVISOR)
    await served_and_closed(gateway, wang, "k1", ["您好", "不知道", "再见"])
    await served_and_closed(gateway, wang, "k2", ["您好，请稍等", "已处理，再见"])
    await score_pending(gateway.app[RUNTIME].store, gateway.app[QA])
    body = await boss.call("GET", f"/reports/agents?from={today()}&to={today()}&format=json")
    rows = {r["agent"]: r for r in body["rows"]}
    assert set(rows) == {"小王", "小李", "主管"}
    wang_row = rows["小王"]
    assert wang_row["conversations"] == 2 and wang_row["messages"] == 5
    assert wang_row["first_response_s"]["count"] == 2 and wang_row["qa"]["count"] == 2
    assert wang_row["qa"]["flagged"] == 1
    assert rows["小李"]["conversations"] == 0
    assert {g["group"] for g in body["groups"]} >= {"售前", "售后"}
    resp = await gateway.get(
        "/api/v1/reports/agents",
        params={"from": today(), "to": today(), "format": "csv"},
        headers=admin_headers,
    )
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO((await resp.read()).decode("utf-8-sig"))))
    assert table[0][:2] == ["客服", "接待会话数"] and len(table) == 1 + 3
    resp = await gateway.get(
        "/api/v1/reports/agents",
        params={"from": today(), "to": today(), "format": "xlsx"},
        headers=boss.headers,
    )
    assert resp.status == 200 and ".xlsx" in resp.headers["Content-Disposition"]
    wb = load_workbook(io.BytesIO(await resp.read()))
    assert wb.sheetnames == ["客服绩效", "技能组绩效"]
    names = [row[0] for row in wb["客服绩效"].iter_rows(min_row=2, values_only=True)]
    assert sorted(names) == sorted(["小王", "小李", "主管"])
    await wang.call("GET", "/reports/agents", expect=403)
    await boss.call("GET", "/reports/agents?format=pdf", expect=400)
    await boss.call("GET", "/reports/agents?from=2026-01-01&to=2026-12-31", expect=400)


async def test_a_reply_hitting_a_block_rule_is_refused_and_nothing_is_sent(gateway: Any) -> None:
    wang = await make_agent(gateway, "小王")
    cid = await complaint(gateway, "b1")
    await wang.call("POST", f"/conversations/{cid}/claim")
    # ({name} itself is refused earlier, as an unfilled canned placeholder: tests/gateway/test_canned_api.py.)
    refused = await wang.call(
        "POST", f"/conversations/{cid}/messages", json={"text": "{{订单号}}您好"}, expect=422
    )
    assert "禁止发送" in refused["error"] and refused["hits"][0]["rule"] == "placeholder"
    # A warning-only rule (不知道) does not stop the send.
    await wang.call("POST", f"/conversations/{cid}/messages", json={"text": "您好，不知道"}, expect=201)
    detail = await wang.call("GET", f"/conversations/{cid}")
    assert [m["text"] for m in detail["messages"] if m["sender"] == "agent"] == ["您好，不知道"]


@pytest.mark.parametrize("rules", ["config", "missing"])
async def test_qa_switched_off_reads_no_rules_blocks_nothing_and_logs_no_error(
    aiohttp_client: Any, settings_factory: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture, rules: str
) -> None:
    # `qa.enabled: false` read the rules all the same: a missing file was an ERROR at every start, and the
    # block rules of a present one (config/qa.yaml's placeholder rule) still refused agents' replies.
    path = REPO / "config" / "qa.yaml" if rules == "config" else tmp_path / "missing.yaml"
    settings = settings_factory(
        handoff=handoff_section(assignment="manual"), qa={"enabled": False, "path": str(path)}
    )
    gateway = await aiohttp_client(create_app(settings))
    assert gateway.app[QA].rules is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    wang = await make_agent(gateway, "小王")
    cid = await complaint(gateway, "b2")
    await wang.call("POST", f"/conversations/{cid}/claim")
    await wang.call("POST", f"/conversations/{cid}/messages", json={"text": "{{订单号}}您好"}, expect=201)
