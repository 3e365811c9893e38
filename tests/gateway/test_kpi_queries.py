"""The KPI queries on both databases: presence intervals from the event log, transfers, messages per agent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from gateway.storage.kpi_queries import agent_names, presence_intervals, transfers
from gateway.storage.schema.handoff import AgentEventRecord, AgentRecord
from gateway.storage.store import Store

T0 = datetime(2026, 12, 7, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai


async def seed(
    store: Store, events: list[tuple[str, dict[str, Any], int, int | None]], beat: int | None
) -> None:
    """Agents 1 (小王) and 2 (小李); events (type, payload, minutes after T0, agent id)."""
    async with store.engine.begin() as conn:
        for i, name in ((1, "小王"), (2, "小李")):
            await conn.execute(
                AgentRecord.__table__.insert().values(
                    id=i,
                    name=name,
                    role="agent",
                    groups=["售后"],
                    max_chats=5,
                    enabled=True,
                    token_hash=f"h{i}",
                    presence="offline",
                    last_heartbeat_at=T0 + timedelta(minutes=beat) if beat is not None and i == 1 else None,
                    created_at=T0,
                )
            )
        for type_, payload, minutes, agent in events:
            await conn.execute(
                AgentEventRecord.__table__.insert().values(
                    type=type_,
                    conversation_id=None,
                    agent_id=agent,
                    group_name=None,
                    payload=payload,
                    created_at=T0 + timedelta(minutes=minutes),
                )
            )


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def test_presence_intervals_and_transfers(store: Store) -> None:
    online, away, offline = ({"presence": p} for p in ("online", "away", "offline"))
    await seed(
        store,
        [
            ("agent.presence", online, 5, 1),  # 小王 09:05 online
            ("agent.presence", away, 60, 1),  # still at the console
            ("agent.presence", offline, 120, 1),  # 11:00 gone
            ("agent.presence", online, 180, 1),  # back at 12:00, never said offline: last heartbeat 12:30
            ("agent.presence", online, -60, 2),  # 小李 since before the range, still on at `now`
            ("conversation.transferred", {"from_agent_id": 1, "to_agent_id": 2, "to_group": None}, 30, None),
        ],
        beat=210,
    )
    found = await presence_intervals(store, at(0), at(600), now=at(300))
    assert found == {"1": [(at(5), at(120)), (at(180), at(210))], "2": [(at(0), at(300))]}
    moved = await transfers(store, at(0), at(600))
    assert [(t.from_agent, t.to_agent, t.to_group) for t in moved] == [("1", "2", None)]
    assert await agent_names(store) == {"1": "小王", "2": "小李"}
