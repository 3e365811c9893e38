"""绩效: agent and group KPIs reuse the report, SLA, CSAT, attendance and 质检 definitions."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from handoff.kpis import (
    KPI_COLUMNS,
    QaResult,
    Transfer,
    agent_kpis,
    duration_stats,
    group_kpis,
    kpi_table,
    write_kpis_csv,
)
from handoff.reports import ConversationRecord, build_rows
from handoff.shifts import ShiftSpan, attendance
from handoff.sla import SlaPolicy

TZ = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 12, 7, 10, 0, tzinfo=TZ)
NOW = T0 + timedelta(days=1)


def rec(
    cid: str,
    agent: str | None,
    *,
    first_s: int | None = 30,
    handle_s: int = 300,
    rating: int | None = None,
    group: str = "售后",
    ticket: bool = False,
) -> ConversationRecord:
    handed = T0
    assigned = T0 + timedelta(seconds=10) if agent else None
    return ConversationRecord(
        conversation_id=cid,
        started_at=T0 - timedelta(minutes=1),
        channel="web",
        customer_id=f"c-{cid}",
        handoff_reason="asked_human",
        handed_off_at=handed,
        is_ticket=ticket,
        group=group,
        agent_id=agent,
        agent_name={"a1": "小王", "a2": "小李"}.get(agent or ""),
        assigned_at=assigned,
        first_agent_reply_at=handed + timedelta(seconds=first_s) if agent and first_s is not None else None,
        human_ended_at=assigned + timedelta(seconds=handle_s) if assigned else None,
        ended_at=assigned + timedelta(seconds=handle_s) if assigned else T0 + timedelta(minutes=30),
        rating=rating,
    )


RECORDS = [
    rec("c1", "a1", first_s=20, rating=5),
    rec("c2", "a1", first_s=40, rating=4),
    rec("c3", "a1", first_s=200, handle_s=600, rating=2),  # breach with the default 60 s
    rec("c4", "a2", first_s=30, group="售前", ticket=True),
    rec("c5", None, group="售后"),  # nobody took it: nobody's KPI
]


def test_duration_stats_is_the_dashboards_definition() -> None:
    assert duration_stats([]) == {"count": 0, "avg": None, "p50": None, "p90": None}
    stats = duration_stats(range(1, 11))  # 1 … 10
    assert stats == {"count": 10, "avg": 5.5, "p50": 5.5, "p90": 9}
    assert duration_stats([-1, 4]) == {"count": 1, "avg": 4, "p50": 4, "p90": 4}


def test_agent_rows_count_conversations_times_breaches_tickets_and_csat() -> None:
    rows = agent_kpis(RECORDS, now=NOW, agents={"a1": "小王", "a2": "小李", "a3": "小赵"})
    by = {r.key: r for r in rows}
    assert [r.name for r in rows] == sorted(["小王", "小李", "小赵"])
    a1 = by["a1"]
    assert a1.conversations == 3 and a1.conversation_ids == ("c1", "c2", "c3")
    assert a1.first_response == {"count": 3, "avg": 86.7, "p50": 40, "p90": 200}
    assert a1.handling["avg"] == 400
    assert a1.sla_breaches == 1
    assert (a1.csat_average, a1.csat_count) == (3.67, 3)
    assert a1.csat_distribution == {5: 1, 4: 1, 3: 0, 2: 1, 1: 0}
    assert by["a2"].tickets_handled == 1 and by["a2"].csat_average is None
    assert by["a3"].conversations == 0 and by["a3"].first_response["count"] == 0


def test_breaches_are_the_reports_own_definition() -> None:
    sla = SlaPolicy(first_response=timedelta(seconds=35))
    rows = {r.key: r for r in agent_kpis(RECORDS, now=NOW, sla=sla)}
    report = build_rows(RECORDS, sla=sla, now=NOW)
    expected = {r.conversation_id for r in report if r.first_response_breached}
    assert expected == {"c2", "c3", "c5"}  # c5 was never taken: a breach, but nobody's
    assert rows["a1"].sla_breaches == 2 and rows["a2"].sla_breaches == 0


def test_messages_transfers_attendance_and_qa() -> None:
    shift = ShiftSpan("a1", "售后", T0, T0 + timedelta(hours=8))
    absent = ShiftSpan("a1", "售后", T0 + timedelta(days=-1), T0 + timedelta(days=-1, hours=8))
    late = attendance(shift, [(T0 + timedelta(minutes=30), T0 + timedelta(hours=8))], now=NOW)
    rows = agent_kpis(
        RECORDS,
        now=NOW,
        agent_messages={"a1": 17},
        transfers=[Transfer("c9", "a2", to_agent="a1"), Transfer("c8", "a1", to_group="售前")],
        attendance=[late, attendance(absent, [], now=NOW)],
        qa=[QaResult("c1", "a1", 100), QaResult("c2", "a1", 70, flagged=True)],
    )
    a1 = next(r for r in rows if r.key == "a1")
    assert (a1.messages, a1.transfers_in, a1.transfers_out) == (17, 1, 1)
    assert a1.shifts == 2 and a1.attendance["迟到"] == 1 and a1.attendance["缺勤"] == 1
    assert a1.scheduled_hours == 16 and a1.online_hours == 7.5
    assert (a1.qa_average, a1.qa_count, a1.qa_flagged) == (85, 2, 1)
    a2 = next(r for r in rows if r.key == "a2")
    assert a2.transfers_out == 1
    as_json = a1.as_dict()
    assert as_json["name"] == "小王" and as_json["csat"]["distribution"]["5"] == 1  # type: ignore[index]


def test_group_rows() -> None:
    rows = group_kpis(
        RECORDS,
        now=NOW,
        groups=["售前", "售后", "VIP"],
        transfers=[Transfer("c8", "a1", to_group="售前")],
        qa=[QaResult("c1", "a1", 90, group="售后")],
    )
    by = {r.key: r for r in rows}
    assert [r.key for r in rows] == ["售前", "售后", "VIP"]
    assert by["售后"].conversations == 3 and by["售后"].sla_breaches == 1 and by["售后"].qa_average == 90
    assert by["售前"].transfers_in == 1 and by["售前"].tickets_handled == 1
    assert by["VIP"].conversations == 0


def test_csv_has_chinese_headers_one_row_per_agent_and_no_formula_injection() -> None:
    rows = agent_kpis(RECORDS, now=NOW, agents={"a1": "=HYPERLINK(1)"})
    out = io.StringIO()
    write_kpis_csv(rows, out, bom=True)
    text = out.getvalue()
    assert text.startswith("\ufeff客服,接待会话数,首次响应中位数(秒)")
    lines = text.strip().split("\r\n")
    assert len(lines) == 1 + 2
    assert "'=HYPERLINK(1),3,40" in text
    table = kpi_table(rows)
    assert all(len(row) == len(KPI_COLUMNS) for row in table)
