"""排班 over real HTTP (SQLite and PostgreSQL): shifts, the coverage check and swap requests with their rules."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from gateway.app import create_app
from handoff.agents import Role
from tests.gateway.test_agent_api import make_agent
from tests.gateway.test_handoff_flow import handoff_section

TZ = ZoneInfo("Asia/Shanghai")
HOURS = {"weekly": {"mon-sun": ["09:00-22:00"]}}


def later_month_day(day: int) -> date:
    """Day `day` of the month after next: always more than 3 days ahead, all in one month."""
    today = datetime.now(UTC).astimezone(TZ).date()
    first = (today.replace(day=1) + timedelta(days=40)).replace(day=1)
    return first.replace(day=day)


def iso(day: date, hh: int, mm: int = 0) -> str:
    return datetime.combine(day, time(hh, mm), tzinfo=TZ).isoformat()


@pytest.fixture
async def gateway(aiohttp_client: Any, settings_factory: Any) -> Any:
    settings = settings_factory(handoff=handoff_section(assignment="manual"), business_hours=HOURS)
    return await aiohttp_client(create_app(settings))


@pytest.fixture
async def team(gateway: Any) -> dict[str, Any]:
    return {
        "boss": await make_agent(gateway, "主管", ("售前", "售后"), role=Role.SUPERVISOR),
        "wang": await make_agent(gateway, "小王", ("售后",)),
        "li": await make_agent(gateway, "小李", ("售后",)),
        "zhao": await make_agent(gateway, "小赵", ("售前",)),
    }


async def add_shift(
    boss: Any, agent: str, group: str, day: date, start: int, end: int, expect: int = 201
) -> Any:
    return await boss.call(
        "POST",
        "/shifts",
        json={"agent": agent, "group": group, "start": iso(day, start), "end": iso(day, end)},
        expect=expect,
    )


async def test_a_supervisor_schedules_two_groups_and_sees_the_coverage_gap(
    gateway: Any, team: dict[str, Any]
) -> None:
    boss = team["boss"]
    saturday = later_month_day(7)
    while saturday.weekday() != 5:
        saturday += timedelta(days=1)
    first = await add_shift(boss, "小王", "售后", saturday, 9, 15)
    assert isinstance(first["id"], int)
    await add_shift(boss, "小李", "售后", saturday, 15, 21)
    await add_shift(boss, "小赵", "售前", saturday, 9, 22)
    listed = await boss.call("GET", f"/shifts?from={saturday}&to={saturday}")
    assert [(s["agent"], s["group"]) for s in listed["shifts"]] == [
        ("小王", "售后"),
        ("小赵", "售前"),
        ("小李", "售后"),
    ]
    coverage = await boss.call("GET", f"/shifts/coverage?from={saturday}&to={saturday}")
    assert [g["text"] for g in coverage["gaps"]] == ["周六 21:00–22:00 售后组无人值班"]
    # Any agent may read the schedule; only supervisors change it.
    assert len((await team["wang"].call("GET", f"/shifts?from={saturday}&to={saturday}"))["shifts"]) == 3
    await team["wang"].call(
        "POST",
        "/shifts",
        json={"agent": "小王", "group": "售后", "start": iso(saturday, 21), "end": iso(saturday, 22)},
        expect=403,
    )
    # The gap is closed by one more shift, across midnight.
    await add_shift(boss, "小王", "售后", saturday, 20, 23)
    assert (await boss.call("GET", f"/shifts/coverage?from={saturday}&to={saturday}&group=售后"))[
        "gaps"
    ] == []


async def test_bad_shifts_are_refused_with_a_reason(
    gateway: Any, team: dict[str, Any], admin_headers: dict[str, str]
) -> None:
    boss = team["boss"]
    day = later_month_day(10)
    assert "unknown agent" in (await add_shift(boss, "无名", "售后", day, 9, 18, expect=400))["error"]
    assert "unknown group" in (await add_shift(boss, "小王", "VIP", day, 9, 18, expect=400))["error"]
    assert "not in group 售前" in (await add_shift(boss, "小王", "售前", day, 9, 18, expect=400))["error"]
    assert "before it starts" in (await add_shift(boss, "小王", "售后", day, 18, 9, expect=400))["error"]
    bad_time = await boss.call(
        "POST",
        "/shifts",
        json={"agent": "小王", "group": "售后", "start": "明天", "end": iso(day, 9)},
        expect=400,
    )
    assert "ISO-8601" in bad_time["error"]
    await add_shift(boss, "小王", "售后", day, 9, 18)
    clash = await add_shift(boss, "小王", "售后", day, 17, 20, expect=409)
    assert "overlaps" in clash["error"]
    # The admin token is a supervisor too; a shift is deleted once.
    resp = await gateway.post(
        "/api/v1/shifts",
        json={"agent": "小李", "group": "售后", "start": iso(day, 9), "end": iso(day, 18)},
        headers=admin_headers,
    )
    assert resp.status == 201
    shift_id = (await resp.json())["id"]
    assert (await gateway.delete(f"/api/v1/shifts/{shift_id}", headers=admin_headers)).status == 204
    assert (await gateway.delete(f"/api/v1/shifts/{shift_id}", headers=admin_headers)).status == 404
    assert (await gateway.get("/api/v1/shifts")).status == 401


async def test_two_swaps_approved_and_a_third_in_the_same_month_refused(
    gateway: Any, team: dict[str, Any]
) -> None:
    boss, wang, li = team["boss"], team["wang"], team["li"]
    ids = [(await add_shift(boss, "小王", "售后", later_month_day(d), 9, 18))["id"] for d in (10, 12, 14)]
    first = await wang.call(
        "POST", "/shifts/swaps", json={"shift_id": ids[0], "with_agent": "小李"}, expect=201
    )
    assert first["status"] == "pending"
    await boss.call("POST", f"/shifts/swaps/{first['id']}/approve", json={"note": "同意"})
    second = await wang.call(
        "POST", "/shifts/swaps", json={"shift_id": ids[1], "with_agent": "小李"}, expect=201
    )
    await boss.call("POST", f"/shifts/swaps/{second['id']}/approve")
    third = await wang.call(
        "POST", "/shifts/swaps", json={"shift_id": ids[2], "with_agent": "小李"}, expect=422
    )
    assert third["rule"] == "monthly_limit"
    assert third["error"].startswith("每月最多允许调班 2 次")
    # Approved swaps moved the shifts to 小李; deciding twice is a conflict.
    shifts = (await boss.call("GET", f"/shifts?from={later_month_day(10)}&to={later_month_day(14)}"))[
        "shifts"
    ]
    assert [s["agent"] for s in shifts] == ["小李", "小李", "小王"]
    await boss.call("POST", f"/shifts/swaps/{first['id']}/reject", expect=409)
    swaps = await wang.call("GET", "/shifts/swaps")
    assert [s["status"] for s in swaps["swaps"]] == ["approved", "approved"]
    assert (await li.call("GET", "/shifts/swaps"))["swaps"] == []


async def test_swap_rules_notice_own_shift_busy_colleague_and_supervisor_only_decisions(
    gateway: Any, team: dict[str, Any]
) -> None:
    boss, wang, li = team["boss"], team["wang"], team["li"]
    soon = datetime.now(UTC).astimezone(TZ).date() + timedelta(days=1)
    near = (await add_shift(boss, "小王", "售后", soon, 9, 18))["id"]
    refused = await wang.call(
        "POST", "/shifts/swaps", json={"shift_id": near, "with_agent": "小李"}, expect=422
    )
    assert refused["rule"] == "notice" and refused["error"].startswith("调班需提前 3 天申请")
    day = later_month_day(20)
    mine = (await add_shift(boss, "小王", "售后", day, 9, 18))["id"]
    await add_shift(boss, "小李", "售后", day, 12, 20)
    busy = await wang.call("POST", "/shifts/swaps", json={"shift_id": mine, "with_agent": "小李"}, expect=422)
    assert busy["rule"] == "busy"
    not_mine = await li.call(
        "POST", "/shifts/swaps", json={"shift_id": mine, "with_agent": "小赵"}, expect=403
    )
    assert not_mine["error"] == "只能申请调换自己的班次"
    ok = await wang.call("POST", "/shifts/swaps", json={"shift_id": mine, "with_agent": "小赵"}, expect=201)
    await wang.call("POST", f"/shifts/swaps/{ok['id']}/approve", expect=403)
    await boss.call("POST", f"/shifts/swaps/{ok['id']}/reject", json={"note": "人手不足"})
    assert (await boss.call("GET", "/shifts/swaps?status=rejected"))["swaps"][0]["note"] == "人手不足"
    await wang.call("POST", "/shifts/swaps", json={"shift_id": 999999, "with_agent": "小赵"}, expect=404)
    await wang.call("POST", "/shifts/swaps", json={"shift_id": "x", "with_agent": "小赵"}, expect=400)


async def test_the_swap_settings_are_read_from_config(aiohttp_client: Any, settings_factory: Any) -> None:
    settings = settings_factory(
        handoff=handoff_section(assignment="manual"), shifts={"swap_notice_days": 0, "max_swaps_per_month": 1}
    )
    client = await aiohttp_client(create_app(settings))
    boss = await make_agent(client, "主管", ("售后",), role=Role.SUPERVISOR)
    wang = await make_agent(client, "小王", ("售后",))
    await make_agent(client, "小李", ("售后",))
    soon = datetime.now(UTC).astimezone(TZ) + timedelta(hours=2)
    ids = []
    starts = []
    for offset in (0, 1):
        start = soon.replace(minute=0, second=0, microsecond=0) + timedelta(hours=offset * 3)
        starts.append(start)
        body = {
            "agent": "小王",
            "group": "售后",
            "start": start.isoformat(),
            "end": (start + timedelta(hours=2)).isoformat(),
        }
        ids.append((await boss.call("POST", "/shifts", json=body, expect=201))["id"])
    await wang.call("POST", "/shifts/swaps", json={"shift_id": ids[0], "with_agent": "小李"}, expect=201)
    resp = await client.post(
        "/api/v1/shifts/swaps", json={"shift_id": ids[1], "with_agent": "小李"}, headers=wang.headers
    )
    # A shift 2 hours ahead passes swap_notice_days: 0; the second swap in the month breaks the limit of 1
    # (unless the two shifts straddle the end of a month, which the test computes rather than assumes).
    months = {(s.year, s.month) for s in starts}
    assert resp.status == (422 if len(months) == 1 else 201)
    if resp.status == 422:
        assert (await resp.json())["rule"] == "monthly_limit"


async def test_routing_prefers_the_agent_on_shift_and_the_notice_names_the_next_shift(
    aiohttp_client: Any, settings_factory: Any
) -> None:
    from handoff import notices
    from tests.gateway.test_agent_api import complaint, customer_sees

    client = await aiohttp_client(
        create_app(settings_factory(handoff=handoff_section(assignment="least_busy")))
    )
    boss = await make_agent(client, "主管", ("售后",), role=Role.SUPERVISOR)
    wang = await make_agent(client, "小王", ("售后",))
    li = await make_agent(client, "小李", ("售后",))
    now = datetime.now(UTC).astimezone(TZ)
    tomorrow_nine = datetime.combine(now.date() + timedelta(days=1), time(9), tzinfo=TZ)
    body = {"agent": "小王", "group": "售后", "start": tomorrow_nine.isoformat()}
    await boss.call(
        "POST", "/shifts", json={**body, "end": (tomorrow_nine + timedelta(hours=8)).isoformat()}, expect=201
    )
    # Nobody online: the 留言 notice says when the next shift starts.
    await complaint(client, "n1")
    resume = notices.format_resume_time(tomorrow_nine, now)
    for _ in range(100):  # the notice is queued after the handoff's answer
        seen = await customer_sees(client, "n1")
        if len(seen) > 1:
            break
        await asyncio.sleep(0.05)
    assert any(f"客服将于 {resume} 上线" in t for t in seen), seen
    # Both online, only 小李 on shift now: 小李 gets the chat although least-busy would tie-break otherwise.
    start = now - timedelta(hours=1)
    await boss.call(
        "POST",
        "/shifts",
        json={
            "agent": "小李",
            "group": "售后",
            "start": start.isoformat(),
            "end": (start + timedelta(hours=3)).isoformat(),
        },
        expect=201,
    )
    await wang.call("POST", "/me/presence", json={"presence": "online"})
    await li.call("POST", "/me/presence", json={"presence": "online"})
    cid = await complaint(client, "n2")
    for _ in range(50):
        detail = await boss.call("GET", f"/conversations/{cid}")
        if detail["assignment"]:
            break
        await asyncio.sleep(0.05)
    assert detail["assignment"]["agent_name"] == "小李"
