"""Text normalisation before matching: one canonical form for what customers type.

Full-width → half-width, traditional → simplified, casefold, and punctuation, emoji, control
characters and leading list numbers ("1." "2:" "①") removed. Pure and fast: the OpenCC converter
and the character tables are built once per process.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path

__all__ = ["normalize"]

# Circled / parenthesised / full-stop numbers (①…⑳, ⑴…⒇, ⒈…⒛, ❶…❿, ➀…➓) used as list markers.
_CIRCLED = re.compile(r"^\s*[\u2460-\u249b\u24ea-\u24ff\u2776-\u2793]\s*")
# After NFKC: "1." "2:" "3、" "(4)" "[5]" "一、" at the start; "1.5倍" keeps its number.
_LIST_NUMBER = re.compile(
    r"^\s*(?:[(\[]\s*\d{1,3}\s*[)\]]|\d{1,3}\s*(?:[.:、)\]](?!\d))|[一二三四五六七八九十]{1,3}\s*[、.:])\s*"
)
_SPACES = re.compile(r"\s+")
# "." is kept through the table so a decimal point survives ("1.5倍"); any other "." goes here.
_STRAY_DOT = re.compile(r"(?<!\d)\.|\.(?!\d)")


class _CharTable(dict[int, str | None]):
    """str.translate table filled on first sight of each code point (Unicode is too big to precompute)."""

    def __missing__(self, code: int) -> str | None:
        char = chr(code)
        if char == ".":
            self[code] = char
            return char
        category = unicodedata.category(char)
        # Punctuation, symbols (emoji are So), controls, format chars (ZWJ, BOM) and variation
        # selectors become a space so words on either side stay apart; whitespace collapses later.
        if category[0] in "PSZ" or category in ("Cc", "Cf", "Cs", "Co", "Cn") or 0xFE00 <= code <= 0xFE0F:
            value: str | None = " "
        else:
            value = char  # keep as is (None would delete it)
        self[code] = value
        return value


_TABLE = _CharTable()


@lru_cache(maxsize=1)
def _converter() -> tuple[object, frozenset[str]]:
    """The OpenCC t2s converter and the set of characters it changes (so plain simplified text skips it)."""
    import opencc

    converter = opencc.OpenCC("t2s")
    chars: set[str] = set()
    path = Path(opencc.__file__).parent / "dictionary" / "TSCharacters.txt"
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            key, _, values = line.partition("\t")
            # Single traditional characters that convert to something else; phrase keys would drag
            # in simplified characters too (e.g. 么 from 么麼) and send every message through OpenCC.
            if len(key) == 1 and values and values.split(" ")[0] != key:
                chars.add(key)
    return converter, frozenset(chars)


def to_simplified(text: str) -> str:
    """Traditional → simplified Chinese; a set lookup first because OpenCC costs ~40 µs a call."""
    converter, traditional = _converter()
    if traditional and traditional.isdisjoint(text):  # (an empty set: the table was not read, so convert)
        return text
    return converter.convert(text)  # type: ignore[attr-defined]


@lru_cache(maxsize=4096)
def normalize(text: str) -> str:
    """The canonical form of a customer's text: half-width, simplified, casefolded, no punctuation."""
    if not text:
        return ""
    text = _CIRCLED.sub("", text, count=1)
    text = unicodedata.normalize("NFKC", text)  # full-width letters/digits/punctuation → ASCII
    text = _LIST_NUMBER.sub("", text, count=1)
    text = to_simplified(text.casefold())
    text = text.translate(_TABLE)
    if "." in text:
        text = _STRAY_DOT.sub(" ", text)
    return _SPACES.sub(" ", text).strip()
