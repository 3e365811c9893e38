"""The per-visitor token bucket on a fake clock: a burst, a steady rate, separate visitors, bounded memory."""

from __future__ import annotations

import pytest

from gateway.rate_limit import RateLimiter, retry_after_header


class FakeClock:
    """Seconds that only move when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def test_a_burst_then_one_message_a_second() -> None:
    clock = FakeClock()
    limit = RateLimiter(per_minute=60, burst=5, clock=clock)
    assert [limit.take("web:default:v1") for _ in range(5)] == [0.0] * 5
    assert limit.take("web:default:v1") == pytest.approx(1.0)  # the sixth waits a second
    clock.advance(0.25)
    assert limit.take("web:default:v1") == pytest.approx(0.75)  # a refused try spends nothing
    clock.advance(0.75)
    assert limit.take("web:default:v1") == 0.0
    assert limit.take("web:default:v1") > 0
    # Waiting long refills the bucket, but never beyond the burst.
    clock.advance(3600)
    assert [limit.take("web:default:v1") for _ in range(6)][-2:] == [0.0, pytest.approx(1.0)]


def test_each_visitor_has_their_own_bucket() -> None:
    limit = RateLimiter(per_minute=6, burst=1, clock=FakeClock())
    assert limit.take("web:default:a") == 0.0
    assert limit.take("web:default:a") == pytest.approx(10.0)  # 6 a minute: one every 10 s
    assert limit.take("web:default:b") == 0.0


def test_idle_buckets_are_forgotten_and_memory_is_bounded() -> None:
    clock = FakeClock()
    limit = RateLimiter(per_minute=60, burst=5, clock=clock, max_keys=3)
    limit.take("a")
    clock.advance(1)
    limit.take("b")
    assert len(limit) == 2
    clock.advance(4.5)  # a was last seen 5.5 s ago: full again (5 tokens at 1/s), so dropped
    limit.take("c")
    assert len(limit) == 2
    # A flood of fresh keys evicts the least recently used bucket instead of growing.
    for key in ("d", "e", "f"):
        limit.take(key)
    assert len(limit) == 3


def test_a_clock_that_steps_back_does_not_drain_or_overfill() -> None:
    clock = FakeClock()
    limit = RateLimiter(per_minute=60, burst=2, clock=clock)
    limit.take("v")
    clock.advance(-100)
    assert limit.take("v") == 0.0
    assert limit.take("v") == pytest.approx(1.0)


def test_bad_parameters_and_the_retry_after_header() -> None:
    with pytest.raises(ValueError):
        RateLimiter(per_minute=0, burst=5)
    with pytest.raises(ValueError):
        RateLimiter(per_minute=60, burst=0)
    assert retry_after_header(0.2) == "1"
    assert retry_after_header(1.0) == "1"
    assert retry_after_header(9.01) == "10"
