"""What a client sent, compared with what a secret makes: in constant time, and whatever it sent."""

from __future__ import annotations

import hmac

__all__ = ["signature_matches"]


def signature_matches(expected: str, given: str) -> bool:
    """Constant-time comparison of strings. As bytes, so that anything a client can send is a mismatch, not
    an error: non-ASCII text, and the lone surrogates of header or query bytes that are not UTF-8."""
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8", "surrogatepass"))
