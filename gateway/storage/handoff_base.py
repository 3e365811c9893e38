"""The base of the handoff storage (gateway/storage/handoff_store.py): sessions on the gateway's engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from gateway.storage.errors import Conflict
from gateway.storage.store import Store
from handoff.presence import DEFAULT_HEARTBEAT_TIMEOUT
from handoff.state import ConversationState

OPEN_HUMAN = (ConversationState.QUEUED.value, ConversationState.ASSIGNED.value)

# A work handed to `HandoffTables.joins` returns this to end its batch: the works after it are not run.
STOP_BATCH = object()


def _alone(work: Callable[[Any], Any]) -> bool:
    return False


_ID_MAX = 2**31 - 1  # INTEGER keys: 32-bit on PostgreSQL


def conversation_pk(conversation_id: str | int) -> int | None:
    """The integer primary key of an API conversation id, or None when no row can have it (not a number,
    or past the INTEGER key range: the driver would raise)."""
    try:
        cid = int(conversation_id)
    except (TypeError, ValueError):
        return None
    return cid if 1 <= cid <= _ID_MAX else None


class HandoffTables:
    """What the handoff query mixins share: the store, the settings and one write transaction helper."""

    def __init__(
        self,
        store: Store,
        *,
        heartbeat_timeout: timedelta = DEFAULT_HEARTBEAT_TIMEOUT,
        default_group: str = "客服",
    ) -> None:
        self.store = store
        self.heartbeat_timeout = heartbeat_timeout
        self.default_group = default_group
        self._sessions = async_sessionmaker(store.engine, expire_on_commit=False)
        # Where a write whose result nobody waits for may join the caller's batch of writes (one unit of
        # work for a whole handoff step): True when it was taken. Set by gateway/handoff_service.py.
        self.joins: Callable[[Callable[[Any], Any]], bool] = _alone

    @asynccontextmanager
    async def _begin(self) -> AsyncIterator[AsyncSession]:
        async with self.store.write_lock(), self._sessions() as session, session.begin():
            try:
                yield session
            except IntegrityError as exc:
                raise Conflict(str(exc.orig)) from exc
