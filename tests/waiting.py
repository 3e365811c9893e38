"""Waiting for what the gateway does in the background (outbox deliveries, notices, jobs)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(check: Callable[[], Awaitable[bool]], within: float = 15.0) -> None:
    """Poll an async condition until it holds, or fail after `within` seconds.

    Generous on purpose: a check that holds returns at once, and `make test` runs two workers side by side
    on two cores, where a background step can take seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def holds(value: bool) -> bool:
    """A plain condition as `eventually`'s check: `eventually(lambda: holds(len(calls) == 2))`."""
    return value
