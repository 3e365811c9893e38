"""Fake upstream platform APIs served by real aiohttp servers in tests (after opsdroid's connector tests)."""

from __future__ import annotations

import asyncio
from collections.abc import Sized


async def wait_for_count(items: Sized, received: asyncio.Event, count: int, within: float) -> None:
    """Wait until `items` (what a fake recorded) holds `count` entries; `received` is set on each new one."""

    async def until() -> None:
        while len(items) < count:
            received.clear()
            await received.wait()

    await asyncio.wait_for(until(), within)
