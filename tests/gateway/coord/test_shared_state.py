"""The Redis implementations of the coordination layer, as two processes see them (two links, one Redis).

Each test talks to the machine's Redis under a prefix of its own (`redis_section`); two `Coordination`s
built from the same settings behave like two kefu processes (each has its own connection pool and
process id). Platform token endpoints are our fakes over real HTTP.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from gateway.channels.base import SendError
from gateway.channels.wechat.api import AccessTokenManager, CustomerServiceSender
from gateway.coord import Coordination, RedisSettings, build_coordination
from gateway.coord.events import AGENT_EVENTS
from tests.fakes.wechat_api import APPID, SECRET, FakeWeChatAPI


@pytest.fixture
async def processes(redis_section: dict[str, Any]) -> AsyncIterator[Callable[[], Coordination]]:
    """Make `Coordination`s of one deployment (started; stopped at the end)."""
    made: list[Coordination] = []

    def make() -> Coordination:
        coord = build_coordination(RedisSettings(**redis_section))
        made.append(coord)
        return coord

    yield make
    for coord in made:
        await coord.stop()


@pytest.fixture
async def wechat_api(aiohttp_server: Any) -> FakeWeChatAPI:
    return await FakeWeChatAPI(token_latency_s=0.1).start(aiohttp_server)


async def test_two_processes_fetching_the_token_at_once_make_one_fetch(processes, wechat_api):
    a, b = processes(), processes()
    async with aiohttp.ClientSession() as http:
        managers = [
            AccessTokenManager(http, APPID, SECRET, api_base=wechat_api.url, shared=coord.tokens)
            for coord in (a, b)
        ]
        tokens = await asyncio.gather(*(m.get() for m in managers for _ in range(5)))
        assert set(tokens) == {"TOKEN-1"}
        assert wechat_api.token_fetches == 1
        # WeChat refused the token (40001) in both processes: still one new fetch between them.
        renewed = await asyncio.gather(*(m.refresh("TOKEN-1") for m in managers))
        assert set(renewed) == {"TOKEN-2"}
        assert wechat_api.token_fetches == 2
        # A third process starting later uses the stored token instead of invalidating it.
        late = AccessTokenManager(http, APPID, SECRET, api_base=wechat_api.url, shared=processes().tokens)
        assert await late.get() == "TOKEN-2"
        assert wechat_api.token_fetches == 2


async def test_a_wakeup_published_by_one_process_reaches_the_other(processes):
    a, b = processes(), processes()
    await b.start()
    await asyncio.wait_for(b.bus.listening.wait(), 5)  # type: ignore[attr-defined]
    flag = b.bus.topic(AGENT_EVENTS).subscribe()
    other = b.bus.topic("outbox").subscribe()
    a.bus.topic(AGENT_EVENTS).publish()
    await asyncio.wait_for(flag.wait(), 1.0)  # within a second, as agents' consoles need
    assert not other.is_set()


async def test_the_visitor_rate_limit_is_one_bucket_for_every_process(processes):
    a, b = processes(), processes()
    limits = [coord.rate_limiter("web", per_minute=60, burst=3) for coord in (a, b)]
    waits = [await limits[i % 2].check("web:default:v1") for i in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert 0 < waits[3] <= 1.0  # the fourth, on either process, waits for the refill
    assert await limits[0].check("web:default:v2") == 0.0  # another visitor has their own bucket


async def test_an_agent_goes_offline_only_when_their_last_console_on_any_process_closes(processes):
    a, b = processes(), processes()
    await a.start()
    await b.start()
    await a.connections.opened("7")
    await b.connections.opened("7")
    assert await a.connections.closed("7") == 1  # still open on b
    assert await b.connections.closed("7") == 0


async def test_a_dead_processs_connections_stop_counting(processes):
    a, b = processes(), processes()
    await a.start()
    await b.start()
    await a.connections.opened("8")
    await b.connections.opened("8")
    # Process a dies without closing anything: its liveness key is gone (expired, here deleted).
    assert a.link is not None
    await a.link.client.delete(a.link.key("proc", a.link.process_id))
    assert await b.connections.closed("8") == 0


async def test_qq_counters_are_shared(processes):
    a, b = processes(), processes()
    assert await a.counters.add("qqbot:bot:m1:seq", 1, 60) == 1
    assert await b.counters.add("qqbot:bot:m1:seq", 1, 60) == 2
    assert await b.counters.raise_to("qqbot:bot:m1:seq", 40, 60) == 40
    assert await a.counters.raise_to("qqbot:bot:m1:seq", 5, 60) == 40
    assert await a.counters.get("qqbot:bot:m1:seq") == 40


async def test_the_assignment_lock_is_held_by_one_process_at_a_time(processes):
    a, b = processes(), processes()
    inside: list[str] = []
    overlap: list[bool] = []

    async def round_(coord: Coordination, name: str) -> None:
        async with coord.assign_lock.hold():
            overlap.append(bool(inside))
            inside.append(name)
            await asyncio.sleep(0.05)
            inside.remove(name)

    await asyncio.gather(*(round_(c, n) for c, n in [(a, "a"), (b, "b"), (a, "a2"), (b, "b2")]))
    assert overlap == [False] * 4


async def test_in_flight_claims_name_one_owner_and_pass_its_outcome(processes):
    a, b = processes(), processes()
    assert a.inflight is not None and b.inflight is not None
    first = await a.inflight.claim("wechat", "shop", "1001")
    second = await b.inflight.claim("wechat", "shop", "1001")
    assert first.owner and not second.owner
    assert 0 <= second.since_first_s < 5
    assert await b.inflight.outcome(second, 0.0) is None  # not decided yet
    await a.inflight.finish(first, "passive")
    assert await b.inflight.outcome(second, 1.0) == "passive"


async def test_the_retry_of_a_partly_sent_long_text_on_another_process_sends_only_the_rest(
    processes, wechat_api
):
    a, b = processes(), processes()
    text = "\n".join(["第一段。" * 150, "第二段。" * 150])  # two pieces of ~1,800 bytes
    async with aiohttp.ClientSession() as http:

        def sender(coord: Coordination) -> CustomerServiceSender:
            tokens = AccessTokenManager(http, APPID, SECRET, api_base=wechat_api.url, shared=coord.tokens)
            return CustomerServiceSender(http, tokens, api_base=wechat_api.url, progress=coord.counters)

        wechat_api.fail_next(status=500, after=1)  # process a sends the first piece, the second fails
        with pytest.raises(SendError):
            await sender(a).send_text("oUser-0002", text)
        await sender(b).send_text("oUser-0002", text)  # the outbox's retry runs on process b
    assert wechat_api.texts_to("oUser-0002") == ["第一段。" * 150, "第二段。" * 150]
