"""Pull cursors of channels that fetch their messages (WeCom 微信客服's kf/sync_msg), one row per scope.

A callback only says "there is something new": it bumps `requested` (durable before it is acknowledged),
the puller remembers the `requested` it started from, stores every message of a page, then the page's
cursor, and finally sets `pulled` to what it started from. A crash anywhere re-reads from the last saved
cursor (the messages dedupe by their platform id), and `requested > pulled` says a pull is still owed,
also after a restart. One puller at a time holds a scope's lease (`lease_owner`, `lease_until`), also across
gateway processes; a request that finds the lease taken is left to the holder, which looks for requests
that arrived meanwhile after it lets go. The table is in `schema/cursors.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from gateway.storage.schema.cursors import ChannelCursorRecord
from gateway.storage.store import Store

__all__ = [
    "ChannelCursorRecord",
    "CursorState",
    "load_cursor",
    "mark_pulled",
    "owed_pulls",
    "release_lease",
    "request_pull",
    "save_cursor",
    "take_lease",
]


@dataclass(frozen=True, slots=True)
class CursorState:
    """One scope's stored cursor and pull bookkeeping (empty when nothing was stored yet)."""

    cursor: str | None = None
    requested: int = 0
    pulled: int = 0
    token: str | None = None
    token_at: datetime | None = None

    @property
    def owed(self) -> bool:
        """A callback asked for a pull that has not completed yet."""
        return self.requested > self.pulled


_T = ChannelCursorRecord.__table__


def _key(channel: str, account: str, scope: str) -> tuple[object, ...]:
    return (_T.c.channel == channel, _T.c.account == account, _T.c.scope == scope)


async def request_pull(
    store: Store, channel: str, account: str, scope: str, token: str | None, now: datetime
) -> None:
    """Record that a pull is owed (and the callback's token); committed before the callback is answered."""
    changes: dict[str, object] = {"requested": _T.c.requested + 1, "updated_at": now}
    if token:
        changes |= {"token": token, "token_at": now}
    for _attempt in range(2):
        try:
            async with store.write_lock(), store.engine.begin() as conn:
                done = await conn.execute(update(_T).where(*_key(channel, account, scope)).values(**changes))
                if done.rowcount == 0:
                    values = {
                        "channel": channel,
                        "account": account,
                        "scope": scope,
                        "cursor": None,
                        "requested": 1,
                        "pulled": 0,
                        "token": token or None,
                        "token_at": now if token else None,
                        "updated_at": now,
                    }
                    await conn.execute(_T.insert().values(**values))
            return
        except IntegrityError:
            continue  # a concurrent first callback inserted the row: update it instead
    raise RuntimeError("channel cursor row could neither be inserted nor updated")  # pragma: no cover


async def load_cursor(store: Store, channel: str, account: str, scope: str) -> CursorState:
    """The stored state of one scope (an empty state when there is none yet)."""
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(_T).where(*_key(channel, account, scope)))).first()
    if row is None:
        return CursorState()
    m = row._mapping
    token_at = m["token_at"]
    if token_at is not None and token_at.tzinfo is None:
        token_at = token_at.replace(tzinfo=UTC)
    return CursorState(m["cursor"], int(m["requested"]), int(m["pulled"]), m["token"], token_at)


async def save_cursor(
    store: Store, channel: str, account: str, scope: str, cursor: str, now: datetime
) -> None:
    """Advance the cursor: call only after every message it covers is stored."""
    async with store.write_lock(), store.engine.begin() as conn:
        done = await conn.execute(
            update(_T).where(*_key(channel, account, scope)).values(cursor=cursor, updated_at=now)
        )
        if done.rowcount == 0:
            values = {
                "channel": channel,
                "account": account,
                "scope": scope,
                "cursor": cursor,
                "updated_at": now,
            }
            await conn.execute(_T.insert().values(requested=0, pulled=0, **values))


async def mark_pulled(store: Store, channel: str, account: str, scope: str, seen: int, now: datetime) -> None:
    """A pull that started when `requested` was `seen` has reached the end: those requests are served."""
    async with store.write_lock(), store.engine.begin() as conn:
        await conn.execute(
            update(_T)
            .where(*_key(channel, account, scope), _T.c.pulled < seen)
            .values(pulled=seen, updated_at=now)
        )


async def take_lease(
    store: Store, channel: str, account: str, scope: str, owner: str, now: datetime, lease: timedelta
) -> bool:
    """Take (or extend) the scope's pull lease: False while another owner's lease runs."""
    free = or_(_T.c.lease_until.is_(None), _T.c.lease_until < now, _T.c.lease_owner == owner)
    async with store.write_lock(), store.engine.begin() as conn:
        done = await conn.execute(
            update(_T)
            .where(*_key(channel, account, scope), free)
            .values(lease_owner=owner, lease_until=now + lease)
        )
    return done.rowcount == 1


async def release_lease(store: Store, channel: str, account: str, scope: str, owner: str) -> None:
    """Let go of the scope's pull lease (only this owner's)."""
    async with store.write_lock(), store.engine.begin() as conn:
        await conn.execute(
            update(_T)
            .where(*_key(channel, account, scope), _T.c.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        )


async def owed_pulls(store: Store, channel: str, account: str) -> list[str]:
    """The scopes of an account whose last requested pull never completed (pulled again at start-up)."""
    query = select(_T.c.scope).where(
        _T.c.channel == channel, _T.c.account == account, _T.c.requested > _T.c.pulled
    )
    async with store.engine.connect() as conn:
        return [r.scope for r in await conn.execute(query)]
