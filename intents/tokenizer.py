"""jieba words for one knowledge-base snapshot: the kb's user words, synonyms folded to one word."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterable

import jieba

from intents.normalize import normalize

__all__ = ["Tokenizer"]

jieba.setLogLevel(logging.WARNING)  # jieba prints "Building prefix dict…" to stderr at DEBUG

_base_lock = threading.Lock()
_base: jieba.Tokenizer | None = None


def _base_dictionary() -> jieba.Tokenizer:
    """jieba's main dictionary, loaded once per process (~1 s) and only ever copied, never changed."""
    global _base
    with _base_lock:
        if _base is None:
            base = jieba.Tokenizer()
            base.initialize()
            _base = base
        return _base


def _new_jieba(words: Iterable[str]) -> jieba.Tokenizer:
    """A private jieba instance: the base dictionary copied, plus this kb's words (no leak between kbs)."""
    base = _base_dictionary()
    tokenizer = jieba.Tokenizer()
    tokenizer.FREQ = dict(base.FREQ)  # ~15 ms for 500k words; cheaper than re-reading the dictionary
    tokenizer.total = base.total
    tokenizer.initialized = True
    for word in words:
        word = normalize(word).replace(" ", "")
        if len(word) > 1 and not tokenizer.FREQ.get(word):
            tokenizer.add_word(word)
    return tokenizer


# jieba's own block patterns: text is cut into the same blocks as jieba.cut cuts it.
_HAN = jieba.re_han_default
_SKIP = jieba.re_skip_default
_ASCII_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")  # jieba.re_eng


def _route(block: str, freq: dict[str, int], logtotal: float) -> list[int]:
    """Where the most probable word starting at each position ends (jieba's DAG and route, in one pass).

    The same words as `jieba.Tokenizer.cut(block, HMM=False)`, to the last bit of each score (the same
    float operations in the same order, ties to the longer word), without the DAG dict, the generator of
    tuples per position and three dictionary lookups per fragment (jieba's way was a quarter of a new
    message's matching).
    """
    n = len(block)
    scores = [0.0] * (n + 1)
    ends = [0] * (n + 1)
    for k in range(n - 1, -1, -1):
        best = -math.inf
        end = k
        found = False
        i = k
        frag = block[k]
        while True:
            f = freq.get(frag)
            if f is None:
                break
            if f:
                found = True
                score = math.log(f) - logtotal + scores[i + 1]
                if score >= best:  # jieba takes max((score, end)): the later end wins a tie
                    best, end = score, i
            i += 1
            if i >= n:
                break
            frag = block[k : i + 1]
        if not found:  # no word starts here: the character alone, as jieba scores it (log 1)
            best, end = 0.0 - logtotal + scores[k + 1], k
        scores[k] = best
        ends[k] = end
    return ends


def _cut_block(block: str, freq: dict[str, int], logtotal: float) -> list[str]:
    """jieba's __cut_DAG_NO_HMM: the route's words, runs of single ASCII letters/digits joined."""
    ends = _route(block, freq, logtotal)
    out: list[str] = []
    buf = ""
    x = 0
    n = len(block)
    while x < n:
        y = ends[x] + 1
        word = block[x:y]
        if y - x == 1 and word in _ASCII_ALNUM:
            buf += word
        else:
            if buf:
                out.append(buf)
                buf = ""
            out.append(word)
        x = y
    if buf:
        out.append(buf)
    return out


class Tokenizer:
    """Splits normalised text into words with jieba and folds each synonym to its group's first word."""

    __slots__ = ("_jieba", "_fold", "_hmm", "_logtotal")

    def __init__(
        self,
        words: Iterable[str] = (),
        synonyms: Iterable[Iterable[str]] = (),
        *,
        hmm: bool = False,
    ) -> None:
        fold: dict[str, str] = {}
        user_words = list(words)
        for group in synonyms:
            forms = [normalize(w).replace(" ", "") for w in group]
            forms = [w for w in forms if w]
            if not forms:
                continue
            for form in forms:
                fold.setdefault(form, forms[0])
            user_words.extend(forms)  # so each synonym is cut as one word and can be folded
        self._fold = fold
        self._jieba = _new_jieba(user_words)
        # HMM off by default: it invents different words for the same characters in query and kb.
        self._hmm = hmm
        self._logtotal = math.log(self._jieba.total)  # the dictionary is complete: no word is added later

    def words(self, normalized: str) -> tuple[str, ...]:
        """The words of already-normalised text, synonyms folded; spaces dropped."""
        if not normalized:
            return ()
        fold = self._fold
        words = self._jieba.cut(normalized, HMM=True) if self._hmm else self._cut(normalized)
        return tuple(fold.get(word, word) for word in words if not word.isspace())

    def _cut(self, text: str) -> list[str]:
        """`jieba.Tokenizer.cut(text, HMM=False)`, the same words, about twice as fast."""
        freq = self._jieba.FREQ
        logtotal = self._logtotal
        out: list[str] = []
        for block in _HAN.split(text):
            if not block:
                continue
            if _HAN.match(block):
                out.extend(_cut_block(block, freq, logtotal))
            else:
                for part in _SKIP.split(block):
                    if _SKIP.match(part):
                        out.append(part)
                    else:
                        out.extend(part)  # jieba yields every other character on its own
        return out

    def tokenize(self, text: str) -> tuple[str, ...]:
        """Normalise then split raw text."""
        return self.words(normalize(text))
