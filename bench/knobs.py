"""The benches' environment knobs (KEFU_BENCH_*, SOAK_*): read once, checked, refused with a clear message.

A typo or an absurd value (letters, 0, a 5,000-digit number) must stop the bench before it starts servers,
with the variable's name and what it accepts, not a traceback from int() halfway through a run.
"""

from __future__ import annotations

import os
from typing import TypeVar

N = TypeVar("N", int, float)


def knob(name: str, default: N, low: N, high: N) -> N:
    """The environment variable `name` as a number of `default`'s type between `low` and `high` (both
    included), or `default` when it is unset or empty; SystemExit with a clear message otherwise."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    kind = type(default)
    try:
        value = kind(text[:40]) if len(text) <= 40 else None
    except ValueError:
        value = None
    if value is None or not low <= value <= high:  # NaN and infinities fail the comparison too
        what = "a whole number" if kind is int else "a number"
        raise SystemExit(f"{name}={text[:40]!r}: give {what} from {low} to {high} (unset: {default})")
    return value
