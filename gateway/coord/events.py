"""Wake-ups between processes: "something new is in agent_events / for this visitor" (pub/sub).

The data stays in the database (events are numbered rows, outbox rows are leased); a wake-up only says
"look now" so that an agent's WebSocket on process A shows, within a second, what process B stored.
`LocalBus` wakes this process only (one process: the in-memory behaviour); `RedisBus` also publishes
on `<prefix>:wake:<topic>` and sets the local flags of every message from another process. A lost
wake-up costs latency, never data: subscribers still poll now and then (`poll_s`).

Why Redis pub/sub rather than PostgreSQL LISTEN/NOTIFY: it works the same on SQLite deployments that
grow a second process, needs no dedicated database connection per process outside the pool, and the
processes need Redis anyway for the in-flight deliveries, tokens and limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.coord.connection import CoordUnavailable, RedisLink

logger = logging.getLogger(__name__)

AGENT_EVENTS = "agent_events"
# `web:<conversation key>`: a web visitor's sockets (gateway/channels/web/ws.py) on whatever process.


class Topic:
    """One topic of a bus: flags set on every publish; a subscriber clears its flag after reading."""

    def __init__(self, bus: LocalBus, name: str) -> None:
        self.bus = bus
        self.name = name

    @property
    def poll_s(self) -> float:
        """How often a subscriber looks anyway (a wake-up from another process may have been lost)."""
        return self.bus.poll_s

    def subscribe(self) -> asyncio.Event:
        return self.bus.subscribe(self.name)

    def unsubscribe(self, flag: asyncio.Event) -> None:
        self.bus.unsubscribe(self.name, flag)

    def publish(self) -> None:
        self.bus.publish(self.name)


class LocalBus:
    """Wakes the subscribers of this process (a single process needs nothing more)."""

    # Without Redis other processes (if any) are only seen by polling, as before.
    poll_s = 1.0

    def __init__(self) -> None:
        self._flags: dict[str, set[asyncio.Event]] = {}

    def topic(self, name: str) -> Topic:
        return Topic(self, name)

    def subscribe(self, topic: str) -> asyncio.Event:
        flag = asyncio.Event()
        self._flags.setdefault(topic, set()).add(flag)
        return flag

    def unsubscribe(self, topic: str, flag: asyncio.Event) -> None:
        flags = self._flags.get(topic)
        if flags is not None:
            flags.discard(flag)
            if not flags:
                del self._flags[topic]  # per-visitor topics come and go

    def publish(self, topic: str) -> None:
        self._wake_local(topic)

    def _wake_local(self, topic: str) -> None:
        for flag in self._flags.get(topic, ()):
            flag.set()

    def _wake_all(self) -> None:
        for topic in list(self._flags):
            self._wake_local(topic)

    async def start(self) -> None:
        """Start listening (nothing to do in one process)."""

    async def stop(self) -> None:
        """Stop listening."""


class RedisBus(LocalBus):
    """Local wake-ups plus Redis pub/sub to and from the other processes."""

    poll_s = 10.0  # only a safety net: wake-ups arrive within milliseconds
    RECONNECT_S = (0.2, 0.5, 1.0, 2.0)

    def __init__(self, link: RedisLink) -> None:
        super().__init__()
        self.link = link
        self._pattern = link.key("wake", "*")
        self._listener: asyncio.Task[None] | None = None
        self._sends: set[asyncio.Task[None]] = set()
        self.listening = asyncio.Event()  # set while subscribed (tests wait for it)

    def publish(self, topic: str) -> None:
        self._wake_local(topic)
        # Publishers are synchronous (an event was just committed); the Redis publish runs beside them.
        task = asyncio.get_running_loop().create_task(self._send(topic))
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    async def _send(self, topic: str) -> None:
        try:
            async with self.link.guard("publish"):
                await self.link.client.publish(self.link.key("wake", topic), self.link.process_id)
        except CoordUnavailable:
            pass  # the others see it on their next poll

    async def start(self) -> None:
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="kefu-coord-bus")

    async def stop(self) -> None:
        for task in [self._listener, *self._sends]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._listener = None

    async def _listen(self) -> None:
        prefix = self.link.key("wake", "")
        failures = 0
        while True:
            pubsub = self.link.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.psubscribe(self._pattern)
                self.listening.set()
                if failures:
                    logger.warning("coord bus: subscribed again after %d failures", failures)
                    self._wake_all()  # whatever was published meanwhile is looked at now
                failures = 0
                while True:
                    message = await pubsub.get_message(timeout=5.0)
                    if message is None or message.get("data") == self.link.process_id:
                        continue
                    channel = str(message.get("channel") or "")
                    if channel.startswith(prefix):
                        self._wake_local(channel[len(prefix) :])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.listening.clear()
                if failures == 0:
                    logger.error("coord bus: redis subscription lost (%s); retrying", type(exc).__name__)
                pause = self.RECONNECT_S[min(failures, len(self.RECONNECT_S) - 1)]
                failures += 1
                await asyncio.sleep(pause)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
