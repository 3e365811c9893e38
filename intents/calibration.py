"""Answer/suggest thresholds calibrated on the knowledge base itself, for a target answer precision.

At build, FAQ questions are held out one at a time (leave-one-out) and matched against the rest:
- a question whose entry has other questions is an *in-scope* trial: right when its own entry wins;
- every question is also a *near miss* trial with its whole entry removed: whatever wins is wrong,
  which is what a customer's question that the FAQ does not cover looks like (same domain, no entry).
A kb with in-scope trials also gets a *meaning floor*: the semantic score that all but
`SEMANTIC_FLOOR_Q` of its rightly matched held-out questions reach. A customer's text whose best entry
is further in meaning than that is not answered, however clear its margin: a question that resembles
nothing in the FAQ is what small talk and other topics look like. The answer threshold is the lowest
confidence at which the in-scope trials (those over the floor) reach `target_precision`; a kb with (almost) one question per entry has no such trials, and there at most
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
OUT_OF_SCOPE = 0.15
# The last answer given may be this much less likely right than the target precision (see _choose).
MARGIN_SLACK = 0.2
# Share of rightly matched in-scope trials allowed under the meaning floor.
SEMANTIC_FLOOR_Q = 0.1


@dataclass(frozen=True, slots=True)
class Calibration:
    """The chosen thresholds and the leave-one-out evidence behind them."""

    thresholds: Thresholds
    semantic_weight: float
    target_precision: float
    # An answer's entry needs at least this semantic score (0: no floor; see the module docstring).
    semantic_floor: float
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
    in_meaning: dict[float, list[np.ndarray]] = {w: [] for w in weights}
    near_conf: dict[float, list[np.ndarray]] = {w: [] for w in weights}
    near_meaning: dict[float, list[np.ndarray]] = {w: [] for w in weights}
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
        cos, plain = semantic.scores(semantic.matrix[rows])
        cos[k, rows] = -np.inf
        if plain is not None:
            plain[k, rows] = -np.inf
        # Centroids without the held-out question (its own entry's is the rest of its questions').
        held = semantic.matrix[rows]
        dots = held @ semantic.sums.T
        centroids = dots / np.maximum(semantic.sums_norm, 1e-6) - semantic.entry_hub
        rest = semantic.sums[own] - held
        rest_norm = np.linalg.norm(rest, axis=1)
        rest_hub = (semantic.entry_hub[own] * counts[own] - semantic.hub[rows]) / np.maximum(
            counts[own] - 1, 1
        )
        own_centroid = np.einsum("ij,ij->i", held, rest) / np.maximum(rest_norm, 1e-6) - rest_hub
        centroids[k, own] = np.where(rest_norm > 1e-6, own_centroid, -1.0)
        meaning = semantic.entry_scores(np.where(np.isfinite(cos), cos, -1.0), centroids, plain)
        alone = counts[own] < 2  # nothing left of its entry: only a near-miss trial
        trial = ~alone
        for w in weights:
            fused = (1 - w) * lexical + w * meaning
            fused[:, ~semantic.has_rows] = -np.inf
            fused[k[alone], own[alone]] = -np.inf
            top2 = _top2(fused, n_entries)
            support = np.minimum(1.0, lexical[k, top2[2]] / options.lexical_support)
            if trial.any():
                conf = confidence(top2[0], top2[1], options.semantic_margin_power) * support
                in_conf[w].append(conf[trial])
                in_right[w].append(top2[2][trial] == own[trial])
                in_meaning[w].append(meaning[k, top2[2]][trial])
            fused[k, own] = -np.inf
            top2 = _top2(fused, n_entries)
            support = np.minimum(1.0, lexical[k, top2[2]] / options.lexical_support)
            near_conf[w].append(confidence(top2[0], top2[1], options.semantic_margin_power) * support)
            near_meaning[w].append(meaning[k, top2[2]])
    # The mix of the two stages that ranks this kb's own held-out questions best (ties: the default).
    w = max(
        weights,
        key=lambda w: (
            float(np.concatenate(in_right[w]).mean()) if in_right[w] else 0.0,
            w == options.semantic_weight,
        ),
    )
    conf_in = np.concatenate(in_conf[w]) if in_conf[w] else np.zeros(0)
    right = np.concatenate(in_right[w]) if in_right[w] else np.zeros(0, dtype=bool)
    conf_near = np.concatenate(near_conf[w]) if near_conf[w] else np.zeros(0)
    # Suggestions are not held to the floor: the near misses' median, as without it.
    suggest = float(np.median(conf_near)) if len(conf_near) else 0.0
    floor = 0.0
    if right.sum() >= MIN_TRIALS:
        meaning_in = np.concatenate(in_meaning[w])
        floor = float(np.quantile(meaning_in[right], SEMANTIC_FLOOR_Q))
        # Under the floor nothing is answered: the thresholds are chosen on what is left.
        conf_in = np.where(meaning_in >= floor, conf_in, 0.0)
        conf_near = np.where(np.concatenate(near_meaning[w]) >= floor, conf_near, 0.0)
    found = _choose(conf_in, right, conf_near, options.target_precision)
    th = found.thresholds
    thresholds = replace(th, suggest=round(min(suggest, th.answer), 4))
    return replace(found, thresholds=thresholds, semantic_weight=w, semantic_floor=round(floor, 4))


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
        # Enough entries asked several ways: the confidence at which one more answer is right with
        # probability target − MARGIN_SLACK (the answers above it are right more often: together
        # they are near the target), near misses counted as the OUT_OF_SCOPE share of what
        # customers ask. P(right | confidence) is a logistic fit on √confidence, which smooths the
        # few hundred trials of a small kb instead of following their noise.
        answer = _marginal_threshold(in_conf, in_right, near, target - MARGIN_SLACK)
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
        semantic_floor=0.0,
        in_scope_trials=len(in_conf),
        in_scope_top1=float(in_right.mean()) if len(in_right) else 0.0,
        near_miss_trials=len(near),
        curve=tuple(curve),
    )


def _marginal_threshold(in_conf: np.ndarray, in_right: np.ndarray, near: np.ndarray, level: float) -> float:
    """The confidence where the fitted P(right | confidence) reaches `level` (trials at 0 are not
    answerable at all: under the meaning floor or without lexical support, and left out)."""
    x = np.concatenate((in_conf, near))
    y = np.concatenate((in_right.astype(float), np.zeros(len(near))))
    w = np.concatenate(
        (
            np.full(len(in_conf), (1 - OUT_OF_SCOPE) / max(len(in_conf), 1)),
            np.full(len(near), OUT_OF_SCOPE / max(len(near), 1)),
        )
    )
    keep = x > 0
    if keep.sum() < MIN_TRIALS or y[keep].min() == y[keep].max():
        return float(in_conf.max()) if y[keep].min(initial=0.0) == 0 else 0.0
    features = np.stack((np.sqrt(x[keep]), np.ones(int(keep.sum()))), axis=1)
    y, w = y[keep], w[keep] / w[keep].sum()
    beta = np.zeros(2)
    for _ in range(50):  # Newton's method on the weighted log-likelihood (two parameters)
        p = 1.0 / (1.0 + np.exp(-features @ beta))
        gradient = features.T @ (w * (p - y))
        hessian = (features * (w * p * (1 - p))[:, None]).T @ features + 1e-9 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-9:
            break
    slope, intercept = beta
    if slope <= 0:  # confidence does not tell right from wrong here: answer only the clearest
        return float(np.quantile(in_conf, 0.9))
    root = (np.log(level / (1 - level)) - intercept) / slope
    return float(max(root, 0.0) ** 2)
