"""The FAQ matcher: an immutable TF-IDF index over one knowledge-base snapshot.

Every question and similar question of every enabled entry (and every example of the rule intents)
is a sparse vector of jieba words and character 1–2-grams, TF-IDF weighted. A query is scored
against each question (cosine) and against each entry's centroid; an entry's score mixes its best
question with its centroid, so an entry with many ways of asking is matched on all of them.

Confidence is not the raw similarity: a query that is as close to another entry (or to small talk),
or whose words the kb has never seen, is not a confident match. It combines the top score with its
margin over the runner-up, which is what keeps small talk and off-topic questions from getting an
FAQ answer. The raw value is mapped onto 0..1 so the default Thresholds mean the same on any kb.
"""

from __future__ import annotations

import contextlib
import gc
import math
from array import array
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import repeat

import numpy as np
from scipy import sparse

from intents.normalize import normalize
from intents.prediction import Candidate, Decision, Prediction, Thresholds
from intents.rules import KeywordRules, effective_intents, example_phrases
from intents.tokenizer import Tokenizer
from kb.model import FaqEntry, KnowledgeBase, RuleIntent

__all__ = ["Classifier", "MatcherOptions"]

# Particles carry no topic; they stay in the character n-grams but are not word features.
# Predictions remembered per classifier (a new index starts empty, so a reload never serves stale ones).
MEMO_SIZE = 4096
MEMO_MAX_CHARS = 64

_PARTICLES = frozenset(
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
_FUNCTION_WORDS = _PARTICLES | frozenset(
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
class MatcherOptions:
    """Tunables of the matcher (defaults measured on two public Chinese intent/FAQ sets)."""

    word_weight: float = 0.4  # share of the cosine from jieba words; the rest from character n-grams
    min_ngram: int = 1
    max_ngram: int = 2
    # entry score = (1-c)·best question + c·centroid: entries asked many ways are matched on all of them
    centroid_weight: float = 0.6
    # raw confidence = top · (margin / top) ** margin_power, margin = top − best other target
    margin_power: float = 0.6
    # raw confidence → 0..1, piecewise linear: the default Thresholds (answer 0.62, suggest 0.35) sit
    # where, on both public sets, precision ≥ 0.9 with ≤ 10% of off-topic questions answered.
    calibration: tuple[tuple[float, float], ...] = (
        (0.0, 0.0),
        (0.06, 0.35),
        (0.105, 0.62),
        (0.3, 0.9),
        (1.0, 1.0),
    )
    intent_bar: float = 0.35  # a small-talk example must score this (and beat every entry) to fire
    # Candidate generation: the entries of the best questions plus the best centroids are scored
    # exactly; everything else cannot be in the top 3 in practice, and skipping it keeps a 50k kb fast.
    top_questions: int = 64
    top_centroids: int = 16
    # Features with longer posting lists ("吗", "怎么" in a big kb) are left out of candidate
    # generation and added back exactly for the candidates only: bounded work per query at 50k.
    defer_postings: int = 5000
    max_chars: int = 200  # of normalised text used for matching
    hmm: bool = False


@dataclass(frozen=True, slots=True)
class _Target:
    """Something a query can match: an FAQ entry or a rule intent (by its examples)."""

    entry: FaqEntry | None
    intent: RuleIntent | None
    questions: tuple[str, ...]


def _features(words: Sequence[str], min_ngram: int, max_ngram: int) -> tuple[Counter[str], Counter[str]]:
    """Word and character n-gram counts of tokenised text."""
    word_counts = Counter(w for w in words if w not in _PARTICLES)
    text = "".join(words)
    chars: Counter[str] = Counter(text) if min_ngram <= 1 else Counter()
    if len(text) < min_ngram:
        chars.update([text])
    for n in range(max(2, min_ngram), max_ngram + 1):
        chars.update(text[i : i + n] for i in range(len(text) - n + 1))
    return word_counts, chars


@dataclass(frozen=True, slots=True)
class _Index:
    """Feature-major postings of one snapshot: rows 0..Q-1 are questions, Q.. are target centroids."""

    features: dict[str, tuple[int, float]]  # "w"/"c" + feature → (id, idf)
    unknown_idf: float
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    owner: np.ndarray  # target of each question row
    deferred: frozenset[int]  # feature ids with more than options.defer_postings postings
    ranges: tuple[tuple[int, int], ...]  # question rows of each target
    n_questions: int
    n_targets: int


@dataclass(frozen=True, slots=True, eq=False)
class Classifier:
    """An immutable matcher over one KnowledgeBase snapshot; build once per (re)load, share freely."""

    kb: KnowledgeBase
    thresholds: Thresholds
    options: MatcherOptions
    tokenizer: Tokenizer
    keyword_rules: KeywordRules
    _targets: tuple[_Target, ...]
    _question_texts: tuple[str, ...]
    _index: _Index
    _n_entries: int
    # The same short questions come in all day ("怎么退货"): their predictions are kept per index. A plain
    # dict, not functools.lru_cache over a bound method: that would make every classifier a reference
    # cycle, left for the cyclic GC after each reload.
    _memo: dict[str, Prediction] = field(default_factory=dict, init=False, repr=False, compare=False)

    # ---- building ---------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        kb: KnowledgeBase,
        thresholds: Thresholds | None = None,
        options: MatcherOptions | None = None,
    ) -> Classifier:
        """Index every question of every enabled entry and every rule-intent example of `kb`."""
        thresholds = thresholds or Thresholds()
        options = options or MatcherOptions()
        intents = effective_intents(kb)
        keywords = [k for e in kb.entries if e.enabled for k in e.keywords]
        tokenizer = Tokenizer((*kb.words, *keywords), kb.synonyms, hmm=options.hmm)

        targets = [_Target(e, None, e.questions) for e in kb.entries if e.enabled]
        n_entries = len(targets)
        for intent in intents:
            phrases = example_phrases(intent)
            if phrases:
                targets.append(_Target(None, intent, phrases))

        texts: list[str] = []
        # Building allocates millions of small objects and no cycles: the cyclic GC would rescan them
        # over and over (a 50k kb built 3× slower with it on).
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            index = cls._index_rows(targets, tokenizer, options, texts)
        finally:
            if gc_was_enabled:
                gc.enable()
        return cls(
            kb=kb,
            thresholds=thresholds,
            options=options,
            tokenizer=tokenizer,
            keyword_rules=KeywordRules.build(intents),
            _targets=tuple(targets),
            _question_texts=tuple(texts),
            _index=index,
            _n_entries=n_entries,
        )

    @staticmethod
    def _index_rows(
        targets: list[_Target], tokenizer: Tokenizer, options: MatcherOptions, texts: list[str]
    ) -> _Index:
        """Tokenise every question once, streaming (row, feature, tf) triples into typed arrays."""
        # Typed arrays, not lists of Counters: a 50k kb has millions of non-zeros, a list a boxed object each.
        r_idx, f_idx, grp, tfs = array("q"), array("q"), array("b"), array("d")
        feature_ids: dict[str, int] = {}
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
                groups = _features(words, options.min_ngram, options.max_ngram)
                for g, (prefix, counts) in enumerate((("w", groups[0]), ("c", groups[1]))):
                    if not counts or shares[g] <= 0:
                        continue
                    f_idx.extend(feature_ids.setdefault(prefix + f, len(feature_ids)) for f in counts)
                    tfs.extend(counts.values())
                    r_idx.extend(repeat(row, len(counts)))
                    grp.extend(repeat(g, len(counts)))
        return _build_index(r_idx, f_idx, grp, tfs, feature_ids, owner, len(targets), options)

    def with_thresholds(self, thresholds: Thresholds) -> Classifier:
        """The same index with other cut-offs (cheap: nothing is rebuilt)."""
        return replace(self, thresholds=thresholds)

    # ---- scoring ----------------------------------------------------------------------------

    def _vector(self, words: Sequence[str]) -> tuple[list[int], list[float]]:
        """The query's weighted features; unseen features count in the norm but match nothing."""
        features = self._index.features
        unknown = self._index.unknown_idf
        ids: list[int] = []
        weights: list[float] = []
        w_share = self.options.word_weight
        groups = _features(words, self.options.min_ngram, self.options.max_ngram)
        for prefix, counts, share in (("w", groups[0], w_share), ("c", groups[1], 1.0 - w_share)):
            if not counts or share <= 0:
                continue
            start = len(ids)
            norm2 = 0.0
            for feature, tf in counts.items():
                known = features.get(prefix + feature)
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

    def _candidates(self, words: Sequence[str]) -> list[tuple[float, int, int]]:
        """(score, target, best question row) of the targets worth ranking, best first."""
        index = self._index
        n_q = index.n_questions
        ids, weights = self._vector(words)
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
        n_entries = self._n_entries
        # Question rows of the entries come first, then those of the rule intents (few: all scored).
        n_eq = index.ranges[n_entries][0] if n_entries < index.n_targets else n_q
        k = self.options.top_questions
        # argpartition on the negated scores with a small kth: ~4× faster than a large kth here.
        rows = np.argpartition(-q_scores[:n_eq], k - 1)[:k] if n_eq > k else np.arange(n_eq)
        if n_eq < n_q:
            rows = np.concatenate((rows, np.arange(n_eq, n_q)))
        # Best first, so the first row seen of a target is its best question among these — and an
        # entry with a question among the top k has its best question there too.
        rows = rows[np.argsort(-q_scores[rows], kind="stable")]
        best: dict[int, int] = {}  # target → its best question row
        for row, t in zip(rows.tolist(), index.owner[rows].tolist(), strict=True):
            best.setdefault(t, row)
        if n_eq > k:
            # Entries close on the whole (centroid) but with no single question in the top k.
            k = self.options.top_centroids
            extra = np.argpartition(-c_scores[:n_entries], k - 1)[:k] if n_entries > k else range(n_entries)
            for t in extra:
                t = int(t)
                if t not in best:
                    lo, hi = index.ranges[t]
                    if hi > lo:
                        best[t] = lo + int(np.argmax(q_scores[lo:hi]))
        targets = np.fromiter(best, dtype=np.int64, count=len(best))
        picked = np.fromiter(best.values(), dtype=np.int64, count=len(best))
        q_part = q_scores[picked]
        c_part = c_scores[targets]
        if deferred:
            extra_scores = _lookup(index, deferred, np.concatenate((picked, targets + n_q)))
            q_part = q_part + extra_scores[: len(picked)]
            c_part = c_part + extra_scores[len(picked) :]
        c = self.options.centroid_weight
        combined = ((1.0 - c) * q_part + c * c_part).tolist()
        ranked = sorted(
            zip(combined, targets.tolist(), picked.tolist(), strict=True), key=lambda x: (-x[0], x[1])
        )
        return ranked

    def _confidence(self, top: float, runner_up: float) -> float:
        """Top score discounted by how little it beats the runner-up (ambiguity ⇒ low confidence)."""
        if top <= 0 or runner_up >= top:
            return 0.0
        raw = top * ((top - runner_up) / top) ** self.options.margin_power
        xs, ys = zip(*self.options.calibration, strict=True)
        return float(np.interp(raw, xs, ys))

    def _entry_candidates(self, ranked: list[tuple[float, int, int]], k: int) -> tuple[Candidate, ...]:
        out = []
        for score, t, row in ranked:
            entry = self._targets[t].entry
            if entry is None or score <= 0:
                continue
            out.append(Candidate(entry.id, self._question_texts[row], round(min(score, 1.0), 4)))
            if len(out) >= k:
                break
        return tuple(out)

    def rank(self, text: str, k: int = 3) -> tuple[Candidate, ...]:
        """The k best FAQ entries for text, one per entry, best first, ignoring rules and thresholds."""
        words = self.tokenizer.words(normalize(text or "")[: self.options.max_chars])
        return self._entry_candidates(self._candidates(words), k) if words else ()

    # ---- classify ---------------------------------------------------------------------------

    def classify(self, text: str, *, memo: bool = True) -> Prediction:
        """Decide what to do with one customer message: answer, suggest, hand off or small talk.

        memo=False always computes (benchmarks and evaluations time the matcher, not the memo).
        """
        if not memo or len(text) > MEMO_MAX_CHARS:  # a pasted essay is rarely sent twice: keep it out
            return self._classify(text)
        memo = self._memo
        prediction = memo.get(text)
        if prediction is None:
            prediction = memo[text] = self._classify(text)
            if len(memo) > MEMO_SIZE:  # first in, first out: cheap, and the hot questions come right back
                with contextlib.suppress(KeyError, RuntimeError, StopIteration):  # another thread evicted it
                    del memo[next(iter(memo))]
        return prediction

    def _classify(self, text: str) -> Prediction:
        normalized = normalize(text or "")
        # A pasted essay is matched on its opening (where people put the question) to bound the
        # latency; rule keywords are still looked for in all of it.
        matched = self.keyword_rules.strip_negated(normalized[: self.options.max_chars])
        tokens = self.tokenizer.words(matched or normalized[: self.options.max_chars])
        if not tokens:
            # Only emoji/punctuation/whitespace: nothing to match and nothing to hand over; ask for words.
            return Prediction(
                decision=Decision.SUGGEST,
                confidence=0.0,
                reason="empty",
                tokens=tokens,
                reply=self.kb.replies.get("greeting"),
            )
        rule = self.keyword_rules.match(normalized.replace(" ", ""))
        if rule is not None:
            return self._rule_prediction(rule, 1.0, tokens)

        ranked = self._candidates(tokens)
        if not ranked:
            return Prediction(decision=Decision.HANDOFF, confidence=0.0, reason="no_match", tokens=tokens)
        top_score, top, _ = ranked[0]
        runner_up = ranked[1][0] if len(ranked) > 1 else 0.0
        top_intent = self._targets[top].intent
        if top_intent is not None and top_score >= self.options.intent_bar:
            return self._rule_prediction(top_intent, self._confidence(top_score, runner_up), tokens)

        alternatives = self._entry_candidates(ranked, 3)
        if not alternatives:
            return Prediction(decision=Decision.HANDOFF, confidence=0.0, reason="no_match", tokens=tokens)
        # The runner-up is the best *other* target, rule intents included: a question as close to
        # "你好吗" as to an FAQ entry is not a confident FAQ match.
        best_score, best_t = next((s, t) for s, t, _ in ranked if self._targets[t].entry is not None)
        second = next((s for s, t, _ in ranked if t != best_t), 0.0)
        confidence = self._confidence(best_score, second)
        has_content = any(t not in _FUNCTION_WORDS for t in tokens)
        if confidence >= self.thresholds.answer and has_content:
            decision, reason = Decision.ANSWER, "faq"
        elif confidence >= self.thresholds.suggest:
            decision, reason = Decision.SUGGEST, "unsure"
        else:
            decision, reason = Decision.HANDOFF, "no_match"
        return Prediction(
            decision=decision,
            confidence=round(confidence, 4),
            entry=self._targets[best_t].entry if decision is Decision.ANSWER else None,
            alternatives=alternatives,
            reason=reason,
            tokens=tokens,
        )

    def _rule_prediction(self, intent: RuleIntent, confidence: float, tokens: tuple[str, ...]) -> Prediction:
        if intent.action == "handoff":
            return Prediction(
                decision=Decision.HANDOFF,
                confidence=round(confidence, 4),
                intent=intent.name,
                priority=intent.priority,
                reason="complaint" if intent.priority == "high" else "asked_human",
                tokens=tokens,
                reply=intent.reply,
            )
        decision = Decision.ANSWER if intent.action == "answer" else Decision.SMALLTALK
        return Prediction(
            decision=decision,
            confidence=round(confidence, 4),
            intent=intent.name,
            priority=intent.priority,
            reason="smalltalk" if decision is Decision.SMALLTALK else "rule",
            tokens=tokens,
            reply=intent.reply,
        )


def _accumulate(
    indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, ids: list[int], weights: list[float], size: int
) -> np.ndarray:
    """Σ weight · posting over the query's features as one bincount (a Python loop per feature is 5× slower)."""
    fids = np.asarray(ids, dtype=np.int64)
    lo = indptr[fids]
    lengths = indptr[fids + 1] - lo
    ends = np.cumsum(lengths)
    total = int(ends[-1])
    if total == 0:
        return np.zeros(size)
    # Positions of every posting of every query feature, without a Python loop.
    offsets = np.arange(total) + np.repeat(lo - (ends - lengths), lengths)
    values = data[offsets] * np.repeat(np.asarray(weights), lengths)
    return np.bincount(indices[offsets], weights=values, minlength=size)


def _lookup(index: _Index, features: list[tuple[int, float]], rows: np.ndarray) -> np.ndarray:
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
    feature_ids: dict[str, int],
    owner: list[int],
    n_targets: int,
    options: MatcherOptions,
) -> _Index:
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
    return _Index(
        features=dict(zip(feature_ids, zip(feature_ids.values(), idf.tolist(), strict=True), strict=True)),
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
