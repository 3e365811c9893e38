"""Answer/suggest thresholds calibrated on the knowledge base itself, for a target answer precision.

At build, FAQ questions are held out one at a time (leave-one-out) and matched against the rest:
- a question whose entry has other questions is an *in-scope* trial: right when its own entry wins;
- every question is also a *near miss* trial with its whole entry removed: whatever wins is wrong,
  which is what a customer's question that the FAQ does not cover looks like (same domain, no entry).
The answer threshold is the lowest confidence at which the in-scope trials reach
`target_precision`; a kb with (almost) one question per entry has no such trials, and there at most
1 − `target_precision` of the near misses are answered instead. The suggest
threshold sits at the near misses' median, so half of what the FAQ does not cover goes straight to a
person and the other half gets 猜你想问. Nothing here sees a customer's question or an eval query.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import sparse

from intents.lexical import LexicalIndex
from intents.options import MatcherOptions
from intents.prediction import Thresholds
from intents.semantic import SemanticIndex

__all__ = ["Calibration", "calibrate", "confidence"]

CHUNK = 128  # held-out questions scored at once (bounds the dense score blocks at 50k questions)
MIN_TRIALS = 30
# Semantic weights tried when the kb has in-scope trials to choose between them.
WEIGHTS = (0.3, 0.45, 0.6, 0.75)
# Share of customers' questions assumed to be outside the FAQ when weighing near misses against
# in-scope trials (the precision a customer sees mixes both).
OUT_OF_SCOPE = 0.1


@dataclass(frozen=True, slots=True)
class Calibration:
    """The chosen thresholds and the leave-one-out evidence behind them."""

    thresholds: Thresholds
    semantic_weight: float
    target_precision: float
    in_scope_trials: int
    in_scope_top1: float
    near_miss_trials: int
    # (threshold, in-scope precision, in-scope answered, near misses answered) at a few thresholds
    curve: tuple[tuple[float, float, float, float], ...]


def confidence(top: np.ndarray, second: np.ndarray, power: float) -> np.ndarray:
    """The matcher's confidence: the top score discounted by how little it beats the runner-up."""
    safe = np.maximum(top, 1e-9)
    margin = np.clip((top - second) / safe, 0.0, 1.0)
    return np.where(top > 0, np.minimum(top, 1.0) * margin**power, 0.0)


def calibrate(
    index: LexicalIndex, semantic: SemanticIndex, n_entries: int, options: MatcherOptions
) -> Calibration:
    """Leave-one-out over (a sample of) the kb's questions; see the module docstring."""
    n_rows = len(semantic.matrix)
    n_targets = len(semantic.has_rows)
    owner = index.owner[:n_rows]
    counts = np.bincount(owner, minlength=n_targets)
    rng = np.random.default_rng(7)
    sample = np.flatnonzero(owner < n_entries)  # FAQ questions are held out; rule examples stay in
    if len(sample) > options.calibration_sample:
        sample = np.sort(rng.choice(sample, options.calibration_sample, replace=False))
    questions = _question_matrix(index, n_rows)
    sums = (
        sparse.csr_matrix((np.ones(n_rows), (owner, np.arange(n_rows))), shape=(n_targets, n_rows))
        @ questions
    )
    sums_norm2 = np.asarray(sums.multiply(sums).sum(axis=1)).ravel()
    self_norm2 = np.asarray(questions.multiply(questions).sum(axis=1)).ravel()
    c = options.centroid_weight
    has_trials = int((counts[owner[sample]] >= 2).sum()) >= MIN_TRIALS
    weights = WEIGHTS if has_trials else (options.semantic_weight,)

    in_conf: dict[float, list[np.ndarray]] = {w: [] for w in weights}
    in_right: dict[float, list[np.ndarray]] = {w: [] for w in weights}
    near_conf: dict[float, list[np.ndarray]] = {w: [] for w in weights}
    for lo in range(0, len(sample), CHUNK):
        rows = sample[lo : lo + CHUNK]
        k = np.arange(len(rows))
        own = owner[rows]
        # Lexical, exactly as the index scores it, with the held-out question removed everywhere.
        qq = (questions[rows] @ questions.T).toarray()
        qq[k, rows] = -np.inf
        best = np.maximum.reduceat(qq, np.minimum(semantic.starts, n_rows - 1), axis=1)
        best = np.where(np.isfinite(best), best, 0.0)
        qc = (questions[rows] @ sums.T).toarray()
        cen = qc / np.sqrt(np.maximum(sums_norm2, 1e-12))
        rest2 = sums_norm2[own] - 2 * qc[k, own] + self_norm2[rows]
        cen[k, own] = np.where(
            rest2 > 1e-9, (qc[k, own] - self_norm2[rows]) / np.sqrt(np.maximum(rest2, 1e-12)), 0.0
        )
        lexical = (1 - c) * best + c * cen
        cos = semantic.cosines(semantic.matrix[rows])
        cos[k, rows] = -np.inf
        meaning = semantic.entry_scores(np.where(np.isfinite(cos), cos, -1.0))
        alone = counts[own] < 2  # nothing left of its entry: only a near-miss trial
        trial = ~alone
        for w in weights:
            fused = (1 - w) * lexical + w * meaning
            fused[:, ~semantic.has_rows] = -np.inf
            fused[k[alone], own[alone]] = -np.inf
            top2 = _top2(fused, n_entries)
            support = np.minimum(1.0, lexical[k, top2[2]] / options.lexical_support)
            if trial.any():
                conf = confidence(top2[0], top2[1], options.margin_power) * support
                in_conf[w].append(conf[trial])
                in_right[w].append(top2[2][trial] == own[trial])
            fused[k, own] = -np.inf
            top2 = _top2(fused, n_entries)
            support = np.minimum(1.0, lexical[k, top2[2]] / options.lexical_support)
            near_conf[w].append(confidence(top2[0], top2[1], options.margin_power) * support)
    # The mix of the two stages that ranks this kb's own held-out questions best (ties: the default).
    w = max(
        weights,
        key=lambda w: (
            float(np.concatenate(in_right[w]).mean()) if in_right[w] else 0.0,
            w == options.semantic_weight,
        ),
    )
    found = _choose(
        np.concatenate(in_conf[w]) if in_conf[w] else np.zeros(0),
        np.concatenate(in_right[w]) if in_right[w] else np.zeros(0, dtype=bool),
        np.concatenate(near_conf[w]) if near_conf[w] else np.zeros(0),
        options.target_precision,
    )
    return replace(found, semantic_weight=w)


def _question_matrix(index: LexicalIndex, n_rows: int) -> sparse.csr_matrix:
    """The entries' question rows (questions × features) from the index's feature-major postings."""
    postings = sparse.csr_matrix(
        (index.data, index.indices, index.indptr),
        shape=(len(index.indptr) - 1, index.n_questions + index.n_targets),
    )
    return sparse.csr_matrix(postings[:, :n_rows].T)


def _top2(scores: np.ndarray, n_entries: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best entry's score, the best other target's (0 when absent) and the best entry of each row."""
    if n_entries == 0:
        zero = np.zeros(scores.shape[0])
        return zero, zero, np.full(scores.shape[0], -1)
    arg = np.argmax(scores[:, :n_entries], axis=1)
    k = np.arange(scores.shape[0])
    top = scores[k, arg]
    rest = scores.copy()
    rest[k, arg] = -np.inf
    second = rest.max(axis=1) if scores.shape[1] > 1 else np.full(len(k), -np.inf)
    top = np.where(np.isfinite(top), top, 0.0)
    return top, np.where(np.isfinite(second), np.maximum(second, 0.0), 0.0), arg


def _choose(in_conf: np.ndarray, in_right: np.ndarray, near: np.ndarray, target: float) -> Calibration:
    if len(in_conf) >= MIN_TRIALS:
        # Enough entries asked several ways: the lowest threshold whose answered trials keep the
        # precision, counting near misses as the OUT_OF_SCOPE share of what customers ask.
        order = np.argsort(-in_conf, kind="stable")
        conf = in_conf[order]
        near_sorted = np.sort(near)
        near_answered = (len(near) - np.searchsorted(near_sorted, conf, side="left")) / max(len(near), 1)
        answered = np.arange(1, len(order) + 1) / len(order)
        right = np.cumsum(in_right[order]) / len(order)
        share = OUT_OF_SCOPE
        precision = (1 - share) * right / ((1 - share) * answered + share * near_answered)
        ok = np.flatnonzero(precision >= target)
        ok = ok[ok >= MIN_TRIALS // 3 - 1]
        answer = float(in_conf[order][ok[-1]]) if len(ok) else float(in_conf.max()) + 1e-4
    else:
        # One question per entry: precision cannot be measured, so bound the near misses answered instead.
        answer = float(np.quantile(near, target, method="higher")) if len(near) else 0.5
    answer = float(np.clip(answer + 1e-4, 0.02, 0.98))
    suggest = float(min(np.median(near) if len(near) else 0.0, answer))
    curve = []
    for t in sorted({round(float(x), 3) for x in np.linspace(0.0, 0.5, 11)} | {round(answer, 3)}):
        answered = in_conf >= t
        curve.append(
            (
                t,
                float(in_right[answered].mean()) if answered.any() else 1.0,
                float(answered.mean()) if len(in_conf) else 0.0,
                float((near >= t).mean()) if len(near) else 0.0,
            )
        )
    return Calibration(
        thresholds=Thresholds(answer=round(answer, 4), suggest=round(suggest, 4)),
        semantic_weight=0.0,
        target_precision=target,
        in_scope_trials=len(in_conf),
        in_scope_top1=float(in_right.mean()) if len(in_right) else 0.0,
        near_miss_trials=len(near),
        curve=tuple(curve),
    )
