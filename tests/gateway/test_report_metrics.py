"""The dashboard's 机器人解决率 and the 受理记录 report count with one definition (handoff/metrics.py)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from handoff.hours import DEFAULT_TIMEZONE


async def test_dashboard_and_records_report_agree_on_the_same_conversations(
    app_client: Any, admin_headers: dict[str, str]
) -> None:
    # Answered from the FAQ; small talk only (no FAQ answer: not resolved by the bot); a human request.
    for user, text in (("v1", "怎么退货"), ("v2", "你好"), ("v3", "转人工"), ("v4", "怎么开发票")):
        resp = await app_client.post("/web/messages", json={"user_id": user, "text": text})
        assert resp.status == 200

    # The same range for both: today in the report's time zone.
    zone = ZoneInfo(DEFAULT_TIMEZONE)
    today = datetime.now(UTC).astimezone(zone).date()
    start = datetime.combine(today, time(0), tzinfo=zone)
    end = start + timedelta(days=1)
    stats_resp = await app_client.get(
        "/admin/api/stats",
        params={"from": start.isoformat(), "to": end.isoformat()},
        headers=admin_headers,
    )
    assert stats_resp.status == 200
    totals = (await stats_resp.json())["totals"]
    report_resp = await app_client.get(
        "/api/v1/reports/records",
        params={"from": today.isoformat(), "to": today.isoformat(), "format": "json"},
        headers=admin_headers,
    )
    assert report_resp.status == 200
    summary = {(section, item): value for section, item, value in (await report_resp.json())["summary"]}

    assert totals["conversations"] == summary[("总量", "会话数")] == 4
    assert totals["handoffs"] == summary[("总量", "转人工")] == 1
    assert totals["bot_resolved"] == summary[("机器人", "机器人解决数")] == 2  # v1, v4; not the 你好
    assert totals["resolution_rate"] == summary[("机器人", "机器人解决率")] == 0.5
    assert totals["handoff_rate"] == 0.25
