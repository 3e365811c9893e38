"""Read-only queries behind the agent KPIs (`GET /api/v1/reports/agents`, `kefu report agents`).

The conversations come from `report_queries.conversation_records` (the 受理记录's own rows); this module
adds what the 受理记录 does not hold: messages per agent, transfers and presence from the agent event
log, and the agents themselves. Everything is computed in `handoff.kpis`.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

from sqlalchemy import func, select

from gateway.storage.schema.core import MessageRecord
from gateway.storage.schema.handoff import AgentEventRecord, AgentRecord
from gateway.storage.store import Store
from handoff.kpis import Transfer

__all__ = ["agent_message_counts", "agent_names", "presence_intervals", "transfers"]

Interval = tuple[datetime, datetime]


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def agent_names(store: Store) -> dict[str, str]:
    """Every agent (enabled or not): id → name."""
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(AgentRecord.id, AgentRecord.name).order_by(AgentRecord.name))).all()
    return {str(r.id): r.name for r in rows}


async def agent_message_counts(store: Store, start: datetime, end: datetime) -> dict[str, int]:
    """Messages each agent wrote in [start, end), by agent name (messages carry the sender's name)."""
    m = MessageRecord
    query = (
        select(m.sender_name, func.count())
        .where(m.sender == "agent", m.created_at >= start, m.created_at < end)
        .group_by(m.sender_name)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {name: int(count) for name, count in rows if name}


async def transfers(store: Store, start: datetime, end: datetime) -> list[Transfer]:
    """Transfers in [start, end) from the event log (agent ids as strings)."""
    e = AgentEventRecord
    query = (
        select(e.conversation_id, e.payload)
        .where(e.type == "conversation.transferred", e.created_at >= start, e.created_at < end)
        .order_by(e.seq)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    out: list[Transfer] = []
    for cid, payload in rows:
        p = payload or {}
        ids = [p.get(k) for k in ("from_agent_id", "to_agent_id", "to_group")]
        out.append(Transfer(str(cid), *(str(v) if v is not None else None for v in ids)))
    return out


async def presence_intervals(
    store: Store, start: datetime, end: datetime, *, now: datetime
) -> dict[str, list[Interval]]:
    """When each agent was at the console (online or away) within [start, end), from presence events.

    An `agent.presence` online/away event opens an interval and offline closes it; one still open ends
    at the agent's last heartbeat (a console that went away without saying so) or `now`.
    """
    e = AgentEventRecord
    query = (
        select(e.agent_id, e.payload, e.created_at)
        .where(e.type == "agent.presence", e.created_at < end)
        .order_by(e.seq)
    )
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
        beats = dict((await conn.execute(select(AgentRecord.id, AgentRecord.last_heartbeat_at))).all())
    opened: dict[str, datetime] = {}
    out: dict[str, list[Interval]] = defaultdict(list)

    def close(agent: str, until: datetime) -> None:
        since = opened.pop(agent, None)
        if since is not None and until > start and since < end:
            out[agent].append((max(since, start), min(until, end)))

    for agent_id, payload, created in rows:
        if agent_id is None:
            continue
        agent, at = str(agent_id), _aware(created)
        if (payload or {}).get("presence") == "offline":
            close(agent, at)
        else:
            opened.setdefault(agent, at)
    for agent in list(opened):
        beat = beats.get(int(agent))
        last = _aware(beat) if beat is not None else now
        close(agent, max(min(last, now), opened[agent]))
    return dict(out)
