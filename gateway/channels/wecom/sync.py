"""Pulling 微信客服 messages with kf/sync_msg: one puller per account, the cursor advanced only after storing.

Callbacks only ask for a pull (a durable request, see gateway.storage.cursor_store); this puller runs the
pulls one after another, and a lease in the database keeps other gateway processes from pulling the same
scope at the same time: the lease holder pulls again for requests that arrived while it held it. Should
two pulls ever overlap (an expired lease), every message still dedupes by its `msgid`.
"""

from __future__ import annotations

import asyncio
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from gateway.channels.base import SendError
from gateway.channels.wecom import events
from gateway.channels.wecom.api import SyncPage, WeComAPIError
from gateway.channels.wecom.events import Item
from gateway.message import utcnow
from gateway.storage import Conflict, Store, Unit, is_database_error
from gateway.storage.cursor_store import (
    load_cursor,
    mark_pulled,
    owed_pulls,
    release_lease,
    save_cursor,
    take_lease,
)

if TYPE_CHECKING:
    from gateway.channels.wecom.adapter import WeComAdapter

logger = logging.getLogger(__name__)

# The callback's pull token is valid for 10 minutes; a little less, to be safe.
TOKEN_TTL = timedelta(minutes=9)
PULL_RETRIES = 3
PULL_RETRY_S = 2.0
# How long a pull may hold a scope before another process may take over (extended as pages are stored).
LEASE = timedelta(seconds=60)
LEASE_EVERY_ITEMS = 50
# The msgid kefu gives its sends (see WeComAdapter.send): `kf{outbox id}x{hash}-{piece}`.
_OUR_MSGID = re.compile(r"^kf(\d{1,18})x[0-9a-f]{8}-\d{1,3}$")

FAIL_TYPES = {
    0: "未知原因",
    10: "用户拒收",
    11: "企业未有成员登录企业微信App",
    12: "发送方客服帐号被禁用",
    13: "客服帐号不存在",
}


def outbox_id_of(msgid: str) -> int | None:
    """The outbox row behind one of kefu's own send msgids (None for anybody else's)."""
    match = _OUR_MSGID.match(msgid)
    return int(match.group(1)) if match else None


class Puller:
    """Runs an account's pulls one at a time and hands each item to the adapter."""

    def __init__(
        self,
        adapter: WeComAdapter,
        fetch: Callable[..., Awaitable[SyncPage]],
        *,
        clock: Callable[[], datetime] = utcnow,
        retry_s: float = PULL_RETRY_S,
    ) -> None:
        self.adapter = adapter
        self._fetch = fetch
        self.clock = clock
        self._retry_s = retry_s
        self._wanted: list[str] = []
        self._task: asyncio.Task[None] | None = None
        self._owner = uuid.uuid4().hex
        self.pulls = 0  # completed pulls (for tests and metrics)

    @property
    def store(self) -> Store:
        return self.adapter.runtime.store

    def kick(self, scope: str) -> None:
        """Ask for a pull of one scope (open_kfid); a running puller picks it up after its current pull."""
        if scope not in self._wanted:
            self._wanted.append(scope)
        if self._task is None or self._task.done():
            self._task = self.adapter.runtime.spawn(self._run(), name=f"wecom-{self.adapter.account}-pull")

    async def resume(self) -> None:
        """At start-up: pull again wherever a callback's pull never completed (a crash, a restart)."""
        for scope in await owed_pulls(self.store, events.CHANNEL, self.adapter.account):
            self.kick(scope)

    async def idle(self) -> None:
        """Wait until no pull is running or wanted (tests)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def _run(self) -> None:
        failures = 0
        while self._wanted:
            scope = self._wanted.pop(0)
            try:
                await self.pull(scope)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                reason = exc.reason if isinstance(exc, SendError) else f"{type(exc).__name__}: {exc}"
                # The request stays owed in the database: the next callback or a restart pulls again.
                logger.warning(
                    "wecom pull failed (%d/%d): %s",
                    failures,
                    PULL_RETRIES,
                    reason,
                    extra={"account": self.adapter.account},
                    exc_info=not isinstance(exc, SendError | WeComAPIError),
                )
                if failures < PULL_RETRIES:
                    if scope not in self._wanted:
                        self._wanted.insert(0, scope)
                    await asyncio.sleep(self._retry_s * failures)
                else:
                    failures = 0

    async def pull(self, scope: str) -> None:
        """Pull one scope while requests are owed, holding its lease; leave it to another holder if taken."""
        account = self.adapter.account
        while True:
            if not await self._lease(scope):
                return  # another process is pulling; it looks for this request when it lets go
            try:
                await self._pull_once(scope)
            finally:
                await release_lease(self.store, events.CHANNEL, account, scope, self._owner)
            # Released first, then checked: a request that found the lease taken is seen here.
            if not (await load_cursor(self.store, events.CHANNEL, account, scope)).owed:
                return

    async def _lease(self, scope: str) -> bool:
        account = self.adapter.account
        return await take_lease(self.store, events.CHANNEL, account, scope, self._owner, self.clock(), LEASE)

    async def _pull_once(self, scope: str) -> None:
        """Read every new message of one scope, storing each before the cursor moves past it."""
        account = self.adapter.account
        state = await load_cursor(self.store, events.CHANNEL, account, scope)
        now = self.clock()
        token = state.token if state.token_at is not None and now - state.token_at < TOKEN_TTL else None
        cursor = state.cursor
        while True:
            page = await self._fetch(cursor=cursor, token=token, open_kfid=scope or None)
            for index, raw in enumerate(page.messages, 1):
                if index % LEASE_EVERY_ITEMS == 0:
                    await self._lease(scope)  # a long page keeps the lease
                item = events.read_item(raw, self.clock)
                if item is None:
                    logger.warning(
                        "wecom: sync_msg item without msgid/open_kfid skipped", extra={"account": account}
                    )
                    continue
                try:
                    await self.adapter.take(item)
                except Exception as exc:
                    if is_database_error(exc) or isinstance(exc, Conflict | SendError):
                        raise  # transient: the cursor stays, the pull is retried and reads this item again
                    # A bug on one item must not block every later message behind the cursor forever.
                    logger.exception(
                        "wecom: item %s could not be handled and is skipped",
                        item.msgid,
                        extra={"account": account},
                    )
            moved = bool(page.next_cursor) and page.next_cursor != cursor
            await self._lease(scope)
            if moved:
                await save_cursor(self.store, events.CHANNEL, account, scope, page.next_cursor, self.clock())
                cursor = page.next_cursor
            if not page.has_more or not moved:
                break
        await mark_pulled(self.store, events.CHANNEL, account, scope, state.requested, self.clock())
        self.pulls += 1


def record_unit(
    *,
    account: str,
    item: Item,
    direction: str,
    sender: str,
    sender_name: str | None,
    decision: str | None,
    now: datetime,
) -> Callable[[Unit], bool]:
    """A unit of work that stores one item as history only (no answer); False when it was stored before."""
    key = events.conversation_key(account, item.open_kfid, item.external_userid)

    def work(unit: Unit) -> bool:
        if unit.find_message(events.CHANNEL, account, item.msgid) is not None:
            return False
        conversation = unit.open_conversation(key)
        if conversation is None:
            customer_id = unit.upsert_customer(events.CHANNEL, account, item.external_userid, None, now)
            conversation = unit.create_conversation(
                customer_id=customer_id,
                channel=events.CHANNEL,
                account=account,
                conversation_key=key,
                now=now,
                kb_version=None,
            )
        unit.add_message(
            conversation_id=conversation.id,
            conversation_key=key,
            channel=events.CHANNEL,
            account=account,
            direction=direction,
            sender=sender,
            sender_name=sender_name,
            text=events.item_text(item),
            kind=events.item_kind(item),
            channel_msg_id=item.msgid,
            decision=decision,
            target={"user_id": item.external_userid, "chat_type": "private", "group_id": None},
            created_at=item.send_time,
        )
        unit.update_conversation(conversation.id, last_activity_at=now)
        return True

    return work


async def record(store: Store, work: Callable[[Unit], bool]) -> bool:
    """Run a record unit; a concurrent twin that stored the same msgid first counts as stored."""
    try:
        return await store.run(work)
    except Conflict:
        return False
