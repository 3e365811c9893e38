"""The lexical stage of the FAQ matcher: a TF-IDF index over one knowledge-base snapshot.

Every question and similar question of every enabled entry (and every example of the rule intents)
is a sparse vector of jieba words and character 1–2-grams, TF-IDF weighted. A query is scored
against each question (cosine) and against each entry's centroid; an entry's score mixes its best
question with its centroid, so an entry with many ways of asking is matched on all of them.
"""

from __future__ import annotations

import math
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from operator import add

import numpy as np
from scipy import sparse

from intents.normalize import normalize
from intents.options import MatcherOptions
from intents.tokenizer import Tokenizer
from kb.model import FaqEntry, RuleIntent

__all__ = ["FUNCTION_WORDS", "LexicalIndex", "Target", "build_lexical", "candidates"]

# Particles carry no topic; they stay in the character n-grams but are not word features.
PARTICLES = frozenset(
    [
        "的",
        "了",
        "吗",
        "呢",
        "吧",
        "啊",
        "呀",
        "嘛",
        "哦",
        "啦",
        "么",
        "呗",
        "哇",
        "哟",
        "着",
        "过",
        "得",
        "地",
    ]
)

# Words that ask but do not say about what: a message made only of these ("怎么", "是什么呢",
# "它在哪里") may be suggested from, never answered directly.
FUNCTION_WORDS = PARTICLES | frozenset(
    [
        "我",
        "你",
        "您",
        "他",
        "她",
        "它",
        "我们",
        "你们",
        "他们",
        "咱",
        "咱们",
        "这",
        "那",
        "这个",
        "那个",
        "这些",
        "那些",
        "这里",
        "那里",
        "这儿",
        "那儿",
        "哪",
        "哪个",
        "哪些",
        "哪里",
        "哪儿",
        "什么",
        "啥",
        "怎么",
        "怎么样",
        "怎样",
        "咋",
        "如何",
        "为什么",
        "为啥",
        "多少",
        "几",
        "谁",
        "是",
        "是不是",
        "有",
        "有没有",
        "没有",
        "在",
        "能",
        "能不能",
        "可以",
        "可不可以",
        "会",
        "要",
        "想",
        "请",
        "请问",
        "问",
        "问下",
        "一下",
        "下",
        "和",
        "与",
        "还",
        "也",
        "都",
        "就",
        "又",
        "再",
        "很",
        "太",
        "好",
        "嗯",
        "给",
        "帮",
        "让",
        "把",
        "被",
        "对",
        "跟",
        "个",
        "些",
        "一",
        "不",
        "没",
        "呢",
        "呵",
        "哈",
        "吗",
        "嘛",
        "呀",
        "啊",
        "哦",
        "么",
        "去",
        "来",
        "说",
        "做",
        "弄",
        "搞",
        "办",
        "用",
        "看",
        "知道",
        "告诉",
    ]
)


@dataclass(frozen=True, slots=True)
class Target:
    """Something a query can match: an FAQ entry or a rule intent (by its examples)."""

    entry: FaqEntry | None
    intent: RuleIntent | None
    questions: tuple[str, ...]


def _features(words: Sequence[str], min_ngram: int, max_ngram: int) -> tuple[Counter[str], Counter[str]]:
    """Word and character n-gram counts of tokenised text (each in first-occurrence order)."""
    word_counts = Counter(w for w in words if w not in PARTICLES)
    text = "".join(words)
    chars: Counter[str] = Counter(text) if min_ngram <= 1 else Counter()
    if len(text) < min_ngram:
        chars.update([text])
    for n in range(max(2, min_ngram), max_ngram + 1):
        if n == 2:  # the usual case: the pairs made in C, not by a generator of slices
            chars.update(map(add, text, text[1:]))
        else:
            chars.update(text[i : i + n] for i in range(len(text) - n + 1))
    return word_counts, chars


@dataclass(frozen=True, slots=True)
class LexicalIndex:
    """Feature-major postings of one snapshot: rows 0..Q-1 are questions, Q.. are target centroids."""

    # word / character n-gram feature → (id, idf); two maps, so a query looks up without building keys
    words: dict[str, tuple[int, float]]
    chars: dict[str, tuple[int, float]]
    unknown_idf: float
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    owner: np.ndarray  # target of each question row
    deferred: frozenset[int]  # feature ids with more than options.defer_postings postings
    ranges: tuple[tuple[int, int], ...]  # question rows of each target
    n_questions: int
    n_targets: int


def _accumulate(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, ids: list[int], weights: list[float], size: int
) -> np.ndarray:
    """Σ weight · posting over the query's features as one bincount (a Python loop per feature is 5× slower)."""
    fids = np.asarray(ids, dtype=np.int64)
    lo = indptr[fids]
    lengths = indptr[fids + 1] - lo
    ends = lengths.cumsum()  # the methods, not np.cumsum / np.repeat: their wrappers cost more than the work
    total = int(ends[-1])
    if total == 0:
        return np.zeros(size)
    # Positions of every posting of every query feature, without a Python loop.
    offsets = np.arange(total) + (lo - (ends - lengths)).repeat(lengths)
    values = data[offsets] * np.asarray(weights).repeat(lengths)
    return np.bincount(indices[offsets], weights=values, minlength=size)


def _lookup(index: LexicalIndex, features: list[tuple[int, float]], rows: np.ndarray) -> np.ndarray:
    """Σ weight · posting of the given features at the given rows only (binary search in each list)."""
    out = np.zeros(len(rows))
    for fid, w in features:
        lo, hi = int(index.indptr[fid]), int(index.indptr[fid + 1])
        posting = index.indices[lo:hi]  # sorted
        pos = np.minimum(np.searchsorted(posting, rows), hi - lo - 1)
        hit = posting[pos] == rows
        out += np.where(hit, index.data[lo + pos], 0.0) * w
    return out


def _build_index(
    r_idx: array,
    f_idx: array,
    grp: array,
    tfs: array,
    feature_ids: dict[tuple[int, str], int],
    owner: list[int],
    n_targets: int,
    options: MatcherOptions,
) -> LexicalIndex:
    """TF-IDF rows (per-group L2, scaled by the group's share) and normalised target centroids."""
    n = len(owner)
    rows = np.frombuffer(r_idx, dtype=np.int64) if len(r_idx) else np.zeros(0, dtype=np.int64)
    fids = np.frombuffer(f_idx, dtype=np.int64) if len(f_idx) else np.zeros(0, dtype=np.int64)
    groups = np.frombuffer(grp, dtype=np.int8).astype(np.int64) if len(grp) else np.zeros(0, dtype=np.int64)
    tf = np.frombuffer(tfs, dtype=np.float64) if len(tfs) else np.zeros(0)
    n_features = len(feature_ids)
    df = np.bincount(fids, minlength=n_features)
    idf = np.log((n + 1) / (df + 1.0)) + 1.0
    # A query word the kb has never seen is as rare as can be: it weighs in the query's norm, so a
    # question full of unknown words scores low instead of matching on its one common character.
    unknown_idf = math.log(n + 1) + 1.0

    weights = (1.0 + np.log(tf)) * idf[fids]
    slot = rows * 2 + groups  # one L2 norm per (question, feature group)
    norm2 = np.bincount(slot, weights=weights * weights, minlength=2 * n)
    share = np.where(groups == 0, options.word_weight, 1.0 - options.word_weight)
    values = weights * np.sqrt(share / norm2[slot]) if len(slot) else weights
    matrix = sparse.csr_matrix((values, (rows, fids)), shape=(n, n_features), dtype=np.float64)

    owner_arr = np.asarray(owner, dtype=np.int64)
    assign = sparse.csr_matrix((np.ones(n), (owner_arr, np.arange(n))), shape=(n_targets, n))
    centroids = sparse.csr_matrix(assign @ matrix)
    norms = np.sqrt(np.asarray(centroids.multiply(centroids).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    centroids = sparse.csr_matrix(sparse.diags(1.0 / norms) @ centroids)
    postings = sparse.vstack([matrix, centroids]).T.tocsr()
    postings.sort_indices()

    counts = np.bincount(owner_arr, minlength=n_targets) if n else np.zeros(n_targets, dtype=np.int64)
    ends = np.cumsum(counts)
    ranges = tuple(zip((ends - counts).tolist(), ends.tolist(), strict=True))
    by_group: tuple[dict[str, tuple[int, float]], dict[str, tuple[int, float]]] = ({}, {})
    for (g, feature), fid, f_idf in zip(feature_ids, feature_ids.values(), idf.tolist(), strict=True):
        by_group[g][feature] = (fid, f_idf)
    return LexicalIndex(
        words=by_group[0],
        chars=by_group[1],
        unknown_idf=unknown_idf,
        indptr=postings.indptr.astype(np.int64),
        indices=postings.indices,
        data=postings.data,
        owner=owner_arr,
        deferred=frozenset(np.flatnonzero(np.diff(postings.indptr) > options.defer_postings).tolist()),
        ranges=ranges,
        n_questions=n,
        n_targets=n_targets,
    )


def build_lexical(
    targets: Sequence[Target], tokenizer: Tokenizer, options: MatcherOptions, texts: list[str]
) -> LexicalIndex:
    """Tokenise every question once, streaming (row, feature, tf) triples into typed arrays."""
    # Typed arrays, not lists of Counters: a 50k kb has millions of non-zeros, a list a boxed object each.
    r_idx, f_idx, grp, tfs = array("q"), array("q"), array("b"), array("d")
    feature_ids: dict[tuple[int, str], int] = {}  # (0 word / 1 character n-gram, feature) → id
    owner: list[int] = []
    shares = (options.word_weight, 1.0 - options.word_weight)
    for t, target in enumerate(targets):
        for question in dict.fromkeys(target.questions):  # a repeated question is one row
            words = tokenizer.words(normalize(question))
            if not words:
                continue
            row = len(texts)
            texts.append(question)
            owner.append(t)
            for g, counts in enumerate(_features(words, options.min_ngram, options.max_ngram)):
                if not counts or shares[g] <= 0:
                    continue
                f_idx.extend(feature_ids.setdefault((g, f), len(feature_ids)) for f in counts)
                tfs.extend(counts.values())
                r_idx.extend(repeat(row, len(counts)))
                grp.extend(repeat(g, len(counts)))
    return _build_index(r_idx, f_idx, grp, tfs, feature_ids, owner, len(targets), options)


def _vector(
    index: LexicalIndex, options: MatcherOptions, words: Sequence[str]
) -> tuple[list[int], list[float]]:
    """The query's weighted features; unseen features count in the norm but match nothing."""
    unknown = index.unknown_idf
    ids: list[int] = []
    weights: list[float] = []
    w_share = options.word_weight
    groups = _features(words, options.min_ngram, options.max_ngram)
    for features, counts, share in (
        (index.words, groups[0], w_share),
        (index.chars, groups[1], 1.0 - w_share),
    ):
        if not counts or share <= 0:
            continue
        start = len(ids)
        norm2 = 0.0
        for feature, tf in counts.items():
            known = features.get(feature)
            w = (
                (1.0 + math.log(tf)) * (known[1] if known else unknown)
                if tf > 1
                else (known[1] if known else unknown)
            )
            norm2 += w * w
            if known:
                ids.append(known[0])
                weights.append(w)
        scale = math.sqrt(share / norm2)
        for i in range(start, len(weights)):
            weights[i] *= scale
    return ids, weights


def candidates(
    index: LexicalIndex, options: MatcherOptions, n_entries: int, words: Sequence[str]
) -> list[tuple[float, int, int]]:
    """(score, target, best question row) of the targets worth ranking, best first."""
    n_q = index.n_questions
    ids, weights = _vector(index, options, words)
    if not ids or n_q == 0:
        return []
    deferred: list[tuple[int, float]] = []
    if index.deferred:
        kept = [(i, w) for i, w in zip(ids, weights, strict=True) if i not in index.deferred]
        if kept:  # a query of nothing but very common features is scored exactly, the slow way
            deferred = [(i, w) for i, w in zip(ids, weights, strict=True) if i in index.deferred]
            ids = [i for i, _ in kept]
            weights = [w for _, w in kept]
    scores = _accumulate(index.indptr, index.indices, index.data, ids, weights, n_q + index.n_targets)
    q_scores = scores[:n_q]
    c_scores = scores[n_q:]
    # Question rows of the entries come first, then those of the rule intents (few: all scored).
    n_eq = index.ranges[n_entries][0] if n_entries < index.n_targets else n_q
    k = options.top_questions
    # argpartition on the negated scores with a small kth: ~4× faster than a large kth here.
    rows = (-q_scores[:n_eq]).argpartition(k - 1)[:k] if n_eq > k else np.arange(n_eq)
    if n_eq < n_q:
        rows = np.concatenate((rows, np.arange(n_eq, n_q)))
    # Best first, so the first row seen of a target is its best question among these — and an
    # entry with a question among the top k has its best question there too.
    # Each target's best question among these: sorted by target, then best first (stable: ties keep the
    # rows' order), the first row of each target.
    owners = index.owner[rows]
    order = np.lexsort((-q_scores[rows], owners))
    owners = owners[order]
    first = np.empty(len(owners), dtype=bool)
    first[:1] = True
    np.not_equal(owners[1:], owners[:-1], out=first[1:])
    targets = owners[first]
    picked = rows[order[first]]
    if n_eq > k:
        # Entries close on the whole (centroid) but with no single question in the top k.
        k = options.top_centroids
        extra = (-c_scores[:n_entries]).argpartition(k - 1)[:k] if n_entries > k else np.arange(n_entries)
        seen = np.zeros(index.n_targets, dtype=bool)
        seen[targets] = True
        more = [
            (t, lo + int(q_scores[lo:hi].argmax()))
            for t in extra[~seen[extra]].tolist()
            for lo, hi in (index.ranges[t],)
            if hi > lo
        ]
        if more:
            targets = np.concatenate(
                (targets, np.fromiter((t for t, _ in more), dtype=np.int64, count=len(more)))
            )
            picked = np.concatenate(
                (picked, np.fromiter((r for _, r in more), dtype=np.int64, count=len(more)))
            )
    q_part = q_scores[picked]
    c_part = c_scores[targets]
    if deferred:
        extra_scores = _lookup(index, deferred, np.concatenate((picked, targets + n_q)))
        q_part = q_part + extra_scores[: len(picked)]
        c_part = c_part + extra_scores[len(picked) :]
    c = options.centroid_weight
    combined = (1.0 - c) * q_part + c * c_part
    order = np.lexsort((targets, -combined))  # best first, ties by target
    return list(zip(combined[order].tolist(), targets[order].tolist(), picked[order].tolist(), strict=True))
