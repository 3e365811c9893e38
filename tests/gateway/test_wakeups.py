"""WakeLoop: the sockets' push loops (gateway/wakeups.py), stopped for sure."""

from __future__ import annotations

import asyncio

from gateway.wakeups import WakeLoop


async def _turns(done: asyncio.Future[None], most: int = 200) -> None:
    """Loop turns, no timers: until `done` or `most` turns have passed."""
    for _ in range(most):
        if done.done():
            return
        await asyncio.sleep(0)


async def test_a_stop_in_the_same_turn_as_a_wake_up_ends_the_loop() -> None:
    # On Python 3.11 the cancel arrives as wait_for's wait ends and is swallowed: only the flag stops it.
    flag = asyncio.Event()
    steps: list[int] = []

    async def step() -> bool:
        steps.append(1)
        return True

    loop = WakeLoop(flag, 60.0, step)
    loop.start("test-wake-loop")
    task = loop.task
    assert task is not None
    for _ in range(100):  # loop turns until it waits for a wake-up
        if flag._waiters:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0)
    assert flag._waiters  # type: ignore[attr-defined]
    flag.set()
    stopping = asyncio.ensure_future(loop.stop())
    try:
        await _turns(stopping)
        assert stopping.done() and task.done()
    finally:
        if not stopping.done():
            task.cancel()  # (without the flag: a second cancel, so that the test can end)
            await stopping
    assert steps == []  # stopped: the wake-up that raced the stop pushes nothing


async def test_each_wake_up_runs_one_step_and_a_false_step_ends_the_loop() -> None:
    flag = asyncio.Event()
    results = [True, False]
    ran = asyncio.Event()

    async def step() -> bool:
        ran.set()
        return results.pop(0)

    loop = WakeLoop(flag, 60.0, step)
    loop.start("test-wake-loop")
    task = loop.task
    assert task is not None
    flag.set()
    await asyncio.wait_for(ran.wait(), 5)
    ran.clear()
    assert results == [False] and not task.done()
    flag.set()
    await asyncio.wait_for(task, 5)  # the second step said stop
    assert results == []
    await loop.stop()  # stopping an ended loop is fine


async def test_the_loop_polls_without_wake_ups_and_ends_when_no_longer_alive() -> None:
    alive = [True]
    polled = asyncio.Event()

    async def step() -> bool:
        polled.set()
        alive[0] = False
        return True

    loop = WakeLoop(asyncio.Event(), 0.01, step, lambda: alive[0])
    loop.start("test-wake-loop")
    task = loop.task
    assert task is not None
    await asyncio.wait_for(task, 5)
    assert polled.is_set()


async def test_step_first_runs_once_before_any_wake_up_then_waits() -> None:
    flag = asyncio.Event()
    ran = asyncio.Event()
    steps: list[int] = []

    async def step() -> bool:
        steps.append(1)
        ran.set()
        return True

    loop = WakeLoop(flag, 60.0, step, step_first=True)
    loop.start("test-wake-loop")
    await asyncio.wait_for(ran.wait(), 5)
    for _ in range(20):  # loop turns: no second step without a wake-up
        await asyncio.sleep(0)
    assert steps == [1]
    await loop.stop()


async def test_a_step_that_fails_ends_the_loop_and_is_logged_when_it_happens(caplog) -> None:
    flag = asyncio.Event()

    async def step() -> bool:
        raise RuntimeError("the push broke")

    loop = WakeLoop(flag, 60.0, step, step_first=True)
    loop.start("test-failing-step")
    task = loop.task
    assert task is not None
    await _turns(task)  # type: ignore[arg-type]
    assert task.done()
    await asyncio.sleep(0)  # the done-callback's turn
    failed = [r for r in caplog.records if r.name == "gateway.wakeups"]
    assert [r.getMessage() for r in failed] == ["test-failing-step ended: its step failed"]
    assert failed[0].exc_info is not None and "the push broke" in str(failed[0].exc_info[1])
    await loop.stop()  # quietly: said once already
    assert len([r for r in caplog.records if r.name == "gateway.wakeups"]) == 1
