"""What a client sent, compared with what a secret makes: in constant time, and whatever it sent."""

from __future__ import annotations

import hmac

__all__ = ["signature_matches", "unix_seconds", "within_replay_window"]


def signature_matches(expected: str, given: str) -> bool:
    """Constant-time comparison of strings. As bytes, so that anything a client can send is a mismatch, not
    an error: non-ASCII text, and the lone surrogates of header or query bytes that are not UTF-8."""
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "surrogatepass"))


def unix_seconds(text: str) -> int | None:
    """A signed request's timestamp (unix seconds: ASCII digits, at most 12); None for anything else."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 12 else None


def within_replay_window(timestamp: str, now: float, window_s: float) -> bool:
    """Whether a signed `timestamp` is within `window_s` of `now`: a request replayed later is not."""
    seconds = unix_seconds(timestamp)
    return seconds is not None and abs(now - seconds) <= window_s
