"""Light text folding used to spot the same question written twice."""

from __future__ import annotations

import re
import unicodedata

# \W is everything that is not a letter, digit or underscore (CJK ideographs count as letters), so
# this drops ASCII and full-width punctuation, symbols and every kind of space in one pass.
_NOT_WORD = re.compile(r"[\W_]+")


def fold_question(text: str) -> str:
    """Fold a question for duplicate detection: NFKC (full-width → half-width), casefold, drop spaces/punctuation."""
    return _NOT_WORD.sub("", unicodedata.normalize("NFKC", text).casefold())
