"""Unanswered questions grouped by similarity: one implementation for the reports and the admin dashboard.

`kefu report` / the reports API (via `handoff.reports.summarize`) and the dashboard (gateway/admin_stats.py)
call `cluster_questions`; the gateway passes intents.normalize.normalize, which handoff may not import.
"""

from __future__ import annotations

import unicodedata
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_WORDINGS",
    "UnansweredCluster",
    "cluster_questions",
    "cluster_questions_capped",
    "default_normalize",
]


def default_normalize(text: str) -> str:
    """Stdlib normalisation for grouping: NFKC, casefold, punctuation/spaces/symbols removed."""
    # No traditional → simplified here (that needs OpenCC): callers in the gateway pass intents' normaliser.
    folded = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] not in "PSZC")


# Words that frame a question rather than say what it is about. Short texts are mostly frame, so
# comparing with it kept both splits paraphrases ("可以货到付款吗" / "你们支持货到付款吗") and merges
# different questions ("请问你们几点下班" / "请问你们几点发货"). Longer words first ("可不可以" ⊃ "可以").
_FRAME_WORDS = (
    "我想问",
    "想问",
    "请问",
    "请教",
    "你好",
    "您好",
    "你们",
    "您们",
    "麻烦",
    "一下",
    "可不可以",
    "能不能",
    "可以",
    "能否",
    "是不是",
    "是否",
)
_SAME_WORDS = (("怎么样", "怎么"), ("怎样", "怎么"), ("如何", "怎么"))
_END_PARTICLES = frozenset("吗呢啊呀吧嘛哈")
_KEEPS_ME = frozenset("怎什那这多")  # 怎么, 什么, 那么 … end in 么 that is not a question particle


def _core(key: str) -> str:
    """What a (normalised) question is about: frame words and final particles dropped, 如何/怎样 → 怎么."""
    core = key
    for word in _FRAME_WORDS:
        core = core.replace(word, "")
    for word, same in _SAME_WORDS:
        core = core.replace(word, same)
    while core and (core[-1] in _END_PARTICLES or (core[-1] == "么" and core[-2:-1] not in _KEEPS_ME)):
        core = core[:-1]
    return core or key  # all frame ("你好吗"): compare the wording itself


def _bigrams(text: str) -> frozenset[str]:
    if len(text) < 2:
        return frozenset({text}) if text else frozenset()
    return frozenset(text[i : i + 2] for i in range(len(text) - 1))


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


@dataclass(frozen=True, slots=True)
class UnansweredCluster:
    """Similar unanswered questions: one row of "what the FAQ should answer next".

    `text` is the group's most asked wording (its most common spelling), `count` how many texts the group
    holds, `examples` its other wordings (most asked first), `members` the positions in the input of every
    text in the group, ascending, for callers that keep more per text (the dashboard: channel, time).
    """

    text: str
    count: int
    examples: tuple[str, ...] = ()
    members: tuple[int, ...] = ()


@dataclass(slots=True)
class _Wording:
    """Texts with one normalised form: where they are in the input and how they were spelled."""

    positions: list[int] = field(default_factory=list)
    spellings: Counter[str] = field(default_factory=Counter)

    @property
    def shown(self) -> str:
        # Counter.most_common keeps first-seen order among equal counts: deterministic.
        return self.spellings.most_common(1)[0][0]


@dataclass(slots=True)
class _Group:
    grams: frozenset[str]  # of the lead wording's core; later wordings are compared with it (no chaining)
    wordings: list[_Wording] = field(default_factory=list)


# Each distinct wording is compared with every group so far (quadratic): only the most asked ones are
# grouped, so a month of unanswered questions costs about a second, not minutes.
MAX_WORDINGS = 1_000


def cluster_questions(texts: Iterable[str], **options: Any) -> list[UnansweredCluster]:
    """`cluster_questions_capped` without the truncation flag."""
    return cluster_questions_capped(texts, **options)[0]


def cluster_questions_capped(
    texts: Iterable[str],
    *,
    threshold: float = 0.5,
    normalize: Callable[[str], str] = default_normalize,
    limit: int | None = 20,
    max_examples: int = 3,
    max_wordings: int | None = None,  # default MAX_WORDINGS
) -> tuple[list[UnansweredCluster], bool]:
    """(clusters, truncated): truncated when the cap of max_wordings distinct wordings dropped rare ones.

    Group texts that ask the same thing; biggest groups first, ties by which was asked first.

    Texts with the same normalised form (spaces ignored) are one wording. Wordings are visited most asked
    first (ties: first seen); each joins the group whose lead wording is most similar — character-bigram
    Jaccard of their cores (see `_core`), at least `threshold`, ties to the older group — else leads a new
    group. Greedy, not optimal, but deterministic for a given input order and easy to explain.
    """
    wordings: dict[str, _Wording] = {}
    for position, raw in enumerate(texts):
        key = "".join(normalize(raw).split())
        if not key:
            continue
        wording = wordings.setdefault(key, _Wording())
        wording.positions.append(position)
        wording.spellings[raw.strip()] += 1
    groups: list[_Group] = []
    # dicts keep insertion order, so the stable sort leaves equal counts in first-seen order.
    ranked = sorted(wordings.items(), key=lambda kv: -len(kv[1].positions))
    max_wordings = MAX_WORDINGS if max_wordings is None else max_wordings
    for key, wording in ranked[:max_wordings]:
        grams = _bigrams(_core(key))
        home: _Group | None = None
        best = threshold
        for group in groups:
            score = _jaccard(grams, group.grams)
            if score >= best and (home is None or score > best):
                home, best = group, score
        if home is None:
            home = _Group(grams)
            groups.append(home)
        home.wordings.append(wording)
    clusters = [
        UnansweredCluster(
            text=g.wordings[0].shown,
            count=sum(len(w.positions) for w in g.wordings),
            examples=tuple(w.shown for w in g.wordings[1 : 1 + max_examples]),
            members=tuple(sorted(p for w in g.wordings for p in w.positions)),
        )
        for g in groups
    ]
    clusters.sort(key=lambda c: (-c.count, c.members[0]))
    return (clusters if limit is None else clusters[:limit]), len(ranked) > max_wordings
