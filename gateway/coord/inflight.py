"""In-flight platform deliveries shared by every process: who handles a message id, and how it ended.

WeChat retries a message it got no answer to after 5 s, and a load balancer may send the retry to
another process. The first request to claim a message id is its owner; the owner records the outcome
(`passive`: it answered in the webhook response; `ack`: it said `success` and the replies go through
the outbox) once decided. A later request of the same id (a follower) waits for that outcome, then
knows whether the platform can still be waiting for an answer: only a follower that arrives at least
the platform's retry interval after the first request is a retry of a lost answer and may repeat it.
The outbox rows' compare-and-set in the database still guards against two paths delivering one reply
(a crash, or an outcome that never came); this record is what keeps a passive answer from being
given twice by two processes.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field

from gateway.coord.connection import RedisLink

# Long enough for all of WeChat's tries of one message (3 tries, 5 s apart) and a slow store.
CLAIM_TTL_MS = 60_000
# How often a follower looks for the owner's outcome (followers are rare: a platform retry).
POLL_S = 0.05

# KEYS[1] the record. ARGV[1] TTL ms. Returns {1 if this caller is the owner, first-seen, now} in
# Redis's own clock, so processes on machines with different clocks agree on the retry interval.
_CLAIM = """
local t = redis.call('TIME')
local now = tostring(tonumber(t[1]) + tonumber(t[2]) / 1000000)
if redis.call('HSETNX', KEYS[1], 'first', now) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  return {1, now, now}
end
return {0, redis.call('HGET', KEYS[1], 'first'), now}
"""


# KEYS[1] the record, ARGV[1] the request's token: 1 when this request is (now) the one that answers passively.
# `spoke`: when the speaker took its turn (Redis's clock), for a follower to tell a dead speaker from a busy one.
_SPEAK = """
if redis.call('HSETNX', KEYS[1], 'speaker', ARGV[1]) == 1 then
  local t = redis.call('TIME')
  redis.call('HSET', KEYS[1], 'spoke', tostring(tonumber(t[1]) + tonumber(t[2]) / 1000000))
  return 1
end
if redis.call('HGET', KEYS[1], 'speaker') == ARGV[1] then return 1 end
return 0
"""

# KEYS[1] the record, ARGV[1] the request's token, ARGV[2] seconds: the speaker's turn passes to this request
# when no outcome was recorded and the speaker took its turn at least that long ago (it died between taking
# it and writing its answer: writing and recording take milliseconds). 1 when this request now speaks.
_TAKE_OVER = """
if redis.call('HEXISTS', KEYS[1], 'outcome') == 1 then return 0 end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local spoke = tonumber(redis.call('HGET', KEYS[1], 'spoke') or now)
if now - spoke < tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'speaker', ARGV[1], 'spoke', tostring(now))
return 1
"""


@dataclass(frozen=True, slots=True)
class Claim:
    """This request's standing: `owner` (the first for the id) and how long after the first it came."""

    key: str
    owner: bool
    since_first_s: float
    token: str = field(default_factory=lambda: uuid.uuid4().hex)


class SharedInFlight:
    """Claims and outcomes of message ids in Redis (`<prefix>:inflight:<channel>:<account>:<id>`)."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self._claim = link.client.register_script(_CLAIM)
        self._speak = link.client.register_script(_SPEAK)
        self._take_over = link.client.register_script(_TAKE_OVER)

    async def claim(self, channel: str, account: str, message_id: str) -> Claim:
        """Claim a message id, or learn that another request (on any process) did first."""
        key = self.link.key("inflight", channel, account, message_id)
        async with self.link.guard("in-flight claim"):
            owner, first, now = await self._claim(keys=[key], args=[CLAIM_TTL_MS])
        return Claim(key, bool(int(owner)), max(float(now) - float(first), 0.0))

    async def speak(self, claim: Claim) -> bool:
        """Become the one request that answers this id passively (False: another one already is).

        The owner asks before its passive answer; a follower asks when the owner went silent (it died),
        so a slow owner and a follower never both answer.
        """
        async with self.link.guard("in-flight speaker"):
            return bool(await self._speak(keys=[claim.key], args=[claim.token]))

    async def take_over(self, claim: Claim, silent_s: float) -> bool:
        """Speak in place of a speaker silent for `silent_s` with no outcome (killed after taking its turn,
        before its answer reached the platform: the platform's retry is then the only way to answer)."""
        async with self.link.guard("in-flight speaker"):
            return bool(await self._take_over(keys=[claim.key], args=[claim.token, silent_s]))

    async def finish(self, claim: Claim, outcome: str) -> None:
        """The owner's decision: `passive` or `ack`."""
        async with self.link.guard("in-flight outcome"):
            await self.link.client.hset(claim.key, "outcome", outcome)

    async def outcome(self, claim: Claim, within_s: float) -> str | None:
        """The owner's decision, waiting up to `within_s`; None when it did not come (slow, or crashed)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while True:
            async with self.link.guard("in-flight outcome"):
                outcome = await self.link.client.hget(claim.key, "outcome")
            if outcome is not None or loop.time() >= deadline:
                return outcome
            await asyncio.sleep(POLL_S)
