"""The single-flight token cache the QQ bot adapter uses (gateway.channels.tokens)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.channels.tokens import TokenCache, parse_expires_in


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counting_fetch(lifetime: float = 7200.0, delay: float = 0.0):
    calls: list[int] = []

    async def fetch() -> tuple[str, float]:
        calls.append(1)
        await asyncio.sleep(delay)
        return f"T{len(calls)}", lifetime

    return fetch, calls


async def test_concurrent_callers_share_one_fetch():
    fetch, calls = counting_fetch(delay=0.05)
    cache = TokenCache(fetch, margin_s=30)
    tokens = await asyncio.gather(*(cache.get() for _ in range(10)))
    assert set(tokens) == {"T1"} and len(calls) == 1


async def test_token_is_refetched_shortly_before_it_expires():
    fetch, calls = counting_fetch(lifetime=7200)
    clock = Clock()
    cache = TokenCache(fetch, margin_s=30, clock=clock)
    assert await cache.get() == "T1"
    clock.now += 7200 - 31
    assert await cache.get() == "T1"
    clock.now += 2
    assert await cache.get() == "T2"
    assert len(calls) == 2


async def test_short_lifetime_is_kept_for_half_of_it_not_refetched_every_call():
    fetch, calls = counting_fetch(lifetime=40)
    clock = Clock()
    cache = TokenCache(fetch, margin_s=30, clock=clock)
    await cache.get()
    clock.now += 19
    await cache.get()
    assert len(calls) == 1


async def test_refresh_after_rejection_is_shared_by_holders_of_the_same_stale_token():
    fetch, calls = counting_fetch(delay=0.02)
    cache = TokenCache(fetch, margin_s=30)
    stale = await cache.get()
    fresh = await asyncio.gather(*(cache.refresh(stale) for _ in range(5)))
    assert set(fresh) == {"T2"} and len(calls) == 2


async def test_failed_fetch_leaves_nothing_cached():
    async def broken() -> tuple[str, float]:
        raise RuntimeError("token endpoint down")

    cache = TokenCache(broken, margin_s=30)
    with pytest.raises(RuntimeError):
        await cache.get()
    assert "cached=False" in repr(cache)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7200", 7200.0),
        (7200, 7200.0),
        ("299", 299.0),
        (None, 7200.0),
        ("soon", 7200.0),
        (True, 7200.0),
        ("0", 7200.0),
        ("-5", 7200.0),
    ],
)
def test_expires_in_as_string_or_number(value, seconds):
    assert parse_expires_in(value) == seconds
