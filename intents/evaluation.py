"""Offline evaluation of a Classifier on labelled questions (`kefu eval`)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from intents.matcher import Classifier
from intents.prediction import Decision

__all__ = ["MUST_NOT_ANSWER", "METRIC_KEYS", "evaluate", "read_tsv"]

MUST_NOT_ANSWER = "-"

# The keys `kefu eval --json` prints; other tools rely on them.
METRIC_KEYS = (
    "n",
    "n_in_scope",
    "n_must_not_answer",
    "top1_accuracy",
    "top3_accuracy",
    "answer_rate",
    "answer_precision",
    "oos_answer_rate",
    "suggest_rate",
    "handoff_rate",
    "smalltalk_rate",
    "p50_us",
    "p99_us",
)


def read_tsv(path: str | Path) -> list[tuple[str, str]]:
    """`text<TAB>expected id` rows; `-` marks a question the bot must not answer. Blank lines skipped."""
    rows: list[tuple[str, str]] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        text, sep, expected = line.rpartition("\t")
        if not sep or not text.strip() or not expected.strip():
            raise ValueError(
                f"{path}:{number}: expected 'text<TAB>expected id' (use '-' for must-not-answer)"
            )
        rows.append((text, expected.strip()))
    return rows


def _share(count: int, total: int) -> float:
    return round(count / total, 4) if total else 0.0


def evaluate(classifier: Classifier, rows: Iterable[tuple[str, str]]) -> dict[str, float | int]:
    """Accuracy, answer/precision/off-topic rates and latency of `classifier` on (text, expected id) rows.

    top-k accuracy is over in-scope rows and ignores thresholds and rules; answer_rate is the share of
    in-scope rows answered directly and answer_precision the share of those answered with the expected
    id; oos_answer_rate is the share of must-not-answer rows that got a direct answer; suggest, handoff
    and small-talk rates are over all rows. Latencies are of classify() alone, in microseconds.
    """
    n = n_in = n_oos = top1 = top3 = answered = answered_right = oos_answered = 0
    counts = dict.fromkeys(Decision, 0)
    latencies: list[float] = []
    for text, expected in rows:
        n += 1
        start = time.perf_counter_ns()
        prediction = classifier.classify(text, memo=False)
        latencies.append((time.perf_counter_ns() - start) / 1000)
        counts[prediction.decision] += 1
        is_answer = prediction.decision is Decision.ANSWER
        if expected == MUST_NOT_ANSWER:
            n_oos += 1
            oos_answered += is_answer
            continue
        n_in += 1
        ranked = [c.entry_id for c in classifier.rank(text, 3)]
        top1 += bool(ranked) and ranked[0] == expected
        top3 += expected in ranked
        if is_answer:
            answered += 1
            answered_right += prediction.entry is not None and prediction.entry.id == expected
    lat = np.asarray(latencies) if latencies else np.zeros(1)
    return {
        "n": n,
        "n_in_scope": n_in,
        "n_must_not_answer": n_oos,
        "top1_accuracy": _share(top1, n_in),
        "top3_accuracy": _share(top3, n_in),
        "answer_rate": _share(answered, n_in),
        "answer_precision": _share(answered_right, answered),
        "oos_answer_rate": _share(oos_answered, n_oos),
        "suggest_rate": _share(counts[Decision.SUGGEST], n),
        "handoff_rate": _share(counts[Decision.HANDOFF], n),
        "smalltalk_rate": _share(counts[Decision.SMALLTALK], n),
        "p50_us": round(float(np.percentile(lat, 50)), 1),
        "p99_us": round(float(np.percentile(lat, 99)), 1),
    }
