"""Agents: accounts, token lookup, presence and heartbeats, load per agent."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any, cast

from sqlalchemy import bindparam, func, select, update

from gateway.storage.handoff_base import HandoffTables, conversation_pk
from gateway.storage.rows import utcnow
from gateway.storage.schema.handoff import (
    AgentRecord,
    AssignmentRecord,
)
from handoff.agents import AgentInfo, Role
from handoff.presence import Presence, presence_from_heartbeat
from handoff.queue import AgentLoad

# Open (assigned) conversations per agent.
_ACTIVE_LOADS = (
    select(AssignmentRecord.agent_id, func.count().label("n"))
    .where(AssignmentRecord.active.is_(True))
    .group_by(AssignmentRecord.agent_id)
)
# Every agent, as the columns _agent_row reads (the same names as AgentRecord's attributes).
_AGENTS = select(
    *(
        AgentRecord.__table__.c[name]
        for name in ("id", "name", "role", "groups", "max_chats", "enabled", "presence")
        + ("last_heartbeat_at", "last_assigned_at")
    )
).order_by(AgentRecord.__table__.c.id)
# The enabled agent a bearer token belongs to: every agent API call and console poll asks, so one Core read
# (an ORM session cost ~1 ms of CPU, a sixth of a queue page's).
_BY_TOKEN = select(
    *(AgentRecord.__table__.c[name] for name in ("id", "name", "role", "groups", "max_chats", "enabled"))
).where(
    AgentRecord.__table__.c.token_hash == bindparam("token_hash"), AgentRecord.__table__.c.enabled.is_(True)
)


@dataclass(frozen=True, slots=True)
class AgentRow:
    """An agent as admins see it: the pure AgentInfo plus presence bookkeeping."""

    info: AgentInfo
    declared: Presence
    presence: Presence  # effective (heartbeat-aware)
    last_heartbeat_at: datetime | None
    load: int


def _info(row: AgentRecord) -> AgentInfo:
    return AgentInfo(
        id=str(row.id),
        name=row.name,
        role=Role(row.role),
        groups=frozenset(row.groups or ()),
        max_chats=row.max_chats,
        enabled=row.enabled,
    )


LoadRows = tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]


def loads_read(unit: Any) -> LoadRows:
    """The rows of `AgentQueries.agent_loads`: open chats per agent, and every agent."""
    return unit.db.rows(_ACTIVE_LOADS), unit.db.rows(_AGENTS)


class AgentQueries(HandoffTables):
    """Mixed into HandoffDb (gateway/storage/handoff_store.py)."""

    async def add_agent(
        self, name: str, *, role: Role, groups: Sequence[str], max_chats: int, token_hash: str
    ) -> AgentInfo:
        """Create an agent; Conflict when the name is taken."""
        now = utcnow()
        # Validate through the pure model first, so the CLI reports the same problems as the logic.
        AgentInfo(id="new", name=name, role=role, groups=frozenset(groups), max_chats=max_chats)
        async with self._begin() as s:
            row = AgentRecord(
                name=name,
                role=Role(role).value,
                groups=sorted(set(groups)),
                max_chats=max_chats,
                enabled=True,
                token_hash=token_hash,
                presence=Presence.OFFLINE.value,
                created_at=now,
            )
            s.add(row)
            await s.flush()
            return _info(row)

    async def set_agent_enabled(self, name: str, enabled: bool) -> AgentInfo | None:
        """Enable or disable an agent by name; None when there is no such agent."""
        async with self._begin() as s:
            row = await s.scalar(select(AgentRecord).where(AgentRecord.name == name))
            if row is None:
                return None
            row.enabled = enabled
            if not enabled:
                row.presence = Presence.OFFLINE.value
            await s.flush()
            return _info(row)

    async def update_agent(
        self,
        agent_id: str,
        *,
        role: Role | None = None,
        groups: Sequence[str] | None = None,
        max_chats: int | None = None,
        enabled: bool | None = None,
        token_hash: str | None = None,
    ) -> AgentInfo | None:
        """Change an agent's role, groups, capacity, enabled flag or token (None: unchanged); None when absent.

        Validated through the pure model first (ValueError), like `add_agent`.
        """
        aid = conversation_pk(agent_id)
        if aid is None:
            return None
        async with self._begin() as s:
            row = await s.get(AgentRecord, aid)
            if row is None:
                return None
            info = _info(row)
            AgentInfo(
                id=info.id,
                name=info.name,
                role=Role(role) if role is not None else info.role,
                groups=frozenset(groups) if groups is not None else info.groups,
                max_chats=max_chats if max_chats is not None else info.max_chats,
            )
            if role is not None:
                row.role = Role(role).value
            if groups is not None:
                row.groups = sorted(set(groups))
            if max_chats is not None:
                row.max_chats = max_chats
            if token_hash is not None:
                row.token_hash = token_hash
            if enabled is not None:
                row.enabled = enabled
                if not enabled:
                    row.presence = Presence.OFFLINE.value
            await s.flush()
            return _info(row)

    async def list_agents(self, now: datetime | None = None) -> list[AgentRow]:
        """Every agent with presence and load, by name."""
        now = now or utcnow()
        loads = await self.load_by_agent()
        async with self._sessions() as s:
            rows = list(await s.scalars(select(AgentRecord).order_by(AgentRecord.name)))
        return [self._agent_row(r, loads.get(str(r.id), 0), now) for r in rows]

    def _agent_row(self, row: AgentRecord, load: int, now: datetime) -> AgentRow:
        declared = Presence.parse(row.presence)
        presence = presence_from_heartbeat(row.last_heartbeat_at, declared, now, self.heartbeat_timeout)
        if not row.enabled:
            presence = Presence.OFFLINE
        return AgentRow(_info(row), declared, presence, row.last_heartbeat_at, load)

    async def agent_row(self, agent_id: str) -> AgentRow | None:
        """One agent with presence and load."""
        aid = conversation_pk(agent_id)
        if aid is None:
            return None
        loads = await self.load_by_agent([agent_id])
        async with self._sessions() as s:
            row = await s.get(AgentRecord, aid)
        return self._agent_row(row, loads.get(agent_id, 0), utcnow()) if row is not None else None

    async def get_agent(self, agent_id: str) -> AgentInfo | None:
        """The agent with this id, or None."""
        aid = conversation_pk(agent_id)
        if aid is None:
            return None
        async with self._sessions() as s:
            row = await s.get(AgentRecord, aid)
            return _info(row) if row is not None else None

    async def agent_by_name(self, name: str) -> AgentInfo | None:
        """The agent with this display name, or None."""
        async with self._sessions() as s:
            row = await s.scalar(select(AgentRecord).where(AgentRecord.name == name))
            return _info(row) if row is not None else None

    async def agent_by_token_hash(self, token_hash: str) -> AgentInfo | None:
        """The enabled agent whose API token hashes to `token_hash`, or None."""
        rows = await self.store.read(lambda unit: unit.db.rows(_BY_TOKEN, {"token_hash": token_hash}))
        return _info(cast(AgentRecord, SimpleNamespace(**rows[0]))) if rows else None

    async def record_heartbeat(self, agent_id: str, declared: Presence, at: datetime) -> None:
        """Store the console's heartbeat and the presence the agent chose (online/away)."""
        aid = conversation_pk(agent_id)
        async with self._begin() as s:
            await s.execute(
                update(AgentRecord)
                .where(AgentRecord.id == aid)
                .values(presence=Presence(declared).value, last_heartbeat_at=at)
            )

    async def heartbeat(self, agent_id: str, at: datetime) -> None:
        """A ping from the console: fresh heartbeat, the declared presence unchanged (offline → online)."""
        aid = conversation_pk(agent_id)
        async with self._begin() as s:
            row = await s.get(AgentRecord, aid)
            if row is None:
                return
            row.last_heartbeat_at = at
            if row.presence == Presence.OFFLINE.value:
                row.presence = Presence.ONLINE.value

    async def go_offline(self, agent_id: str) -> None:
        """The console disconnected: offline at once instead of after the heartbeat timeout.

        The last heartbeat is kept: it says since when the agent is gone (their chats are requeued
        `handoff.offline_grace_s` after the heartbeat timeout, see jobs/handoff_jobs.offline_sweep).
        """
        async with self._begin() as s:
            await s.execute(
                update(AgentRecord)
                .where(AgentRecord.id == conversation_pk(agent_id))
                .values(presence=Presence.OFFLINE.value)
            )

    async def load_by_agent(self, agent_ids: Collection[str] | None = None) -> Mapping[str, int]:
        """Open (assigned) conversations per agent; agents with none are absent (= 0)."""
        query = _ACTIVE_LOADS
        if agent_ids is not None:
            query = query.where(AssignmentRecord.agent_id.in_([int(a) for a in agent_ids]))
        async with self._sessions() as s:
            return {str(agent): int(count) for agent, count in await s.execute(query)}

    async def agent_loads(self, group: str | None = None) -> Sequence[AgentLoad]:
        """Agents (of a group, or all) with effective presence, load and last assignment time."""
        # Both reads in one read-only trip (every handoff asks; an ORM session cost several times more).
        return self.loads_from(await self.store.read(loads_read), group)

    def loads_from(self, read: LoadRows, group: str | None = None) -> list[AgentLoad]:
        """`agent_loads` of what `loads_read` returned (in a trip of the caller's, with its other reads)."""
        now = utcnow()
        load_rows, agent_rows = read
        loads = {str(r["agent_id"]): int(r["n"]) for r in load_rows}
        rows = [cast(AgentRecord, SimpleNamespace(**r)) for r in agent_rows]
        result = []
        for row in rows:
            if group is not None and group not in (row.groups or ()):
                continue
            agent = self._agent_row(row, loads.get(str(row.id), 0), now)
            result.append(AgentLoad(agent.info, agent.presence, agent.load, row.last_assigned_at))
        return result

    async def last_assigned(self, group: str) -> str | None:
        """Id of the agent the group's latest automatic assignment went to (the round-robin cursor)."""
        async with self._sessions() as s:
            agent_id = await s.scalar(
                select(AssignmentRecord.agent_id)
                .where(AssignmentRecord.group == group, AssignmentRecord.auto.is_(True))
                .order_by(AssignmentRecord.assigned_at.desc())
                .limit(1)
            )
        return str(agent_id) if agent_id is not None else None
