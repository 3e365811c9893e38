"""Offline evaluation of a Classifier on labelled questions (`kefu eval`)."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from intents.matcher import Classifier
from intents.prediction import Decision
from kb.model import KnowledgeBase

__all__ = ["MUST_NOT_ANSWER", "METRIC_KEYS", "evaluate", "learn_split", "read_tsv", "wrapped"]

CURVE_POINTS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.62, 0.7, 0.8, 0.9)

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


# `kefu eval --wrap`: what polite customers put around a question. Written apart from intents.courtesy's
# lexicon (several are not in it as they stand: "老板在不在", "麻烦问一下哈", "谢谢亲"), so the figure tells
# how the matcher holds up against courtesy it was not written for.
WRAP_OPENINGS = (
    "您好，",
    "你好呀，",
    "亲，在吗？",
    "老板在不在，",
    "客服您好，",
    "打扰了，",
    "麻烦问一下哈，",
    "hi，",
    "晚上好，请问",
    "嗯嗯，那个，",
    "不好意思打扰一下，",
    "有人在吗？",
    "",
)
WRAP_CLOSINGS = (
    "，谢谢",
    "？谢谢亲",
    "，感谢感谢！",
    "，辛苦啦",
    "，多谢啦",
    "，在线等，急急急",
    "～谢谢您",
    "，麻烦您了",
    "。拜托了",
    "？求回复",
    "",
)


def wrapped(rows: Iterable[tuple[str, str]], *, seed: int = 7) -> list[tuple[str, str]]:
    """Each question with a courtesy opening and closing drawn from WRAP_* (seeded: the same every run)."""
    rng = random.Random(seed)
    return [(rng.choice(WRAP_OPENINGS) + text + rng.choice(WRAP_CLOSINGS), label) for text, label in rows]


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


def evaluate(classifier: Classifier, rows: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Accuracy, answer/precision/off-topic rates and latency of `classifier` on (text, expected id) rows.

    top-k accuracy is over in-scope rows and ignores thresholds and rules; answer_rate is the share of
    in-scope rows answered directly and answer_precision the share of those answered with the expected
    id; oos_answer_rate is the share of must-not-answer rows that got a direct answer; suggest, handoff
    and small-talk rates are over all rows. Latencies are of classify() alone, in microseconds.
    """
    n = n_in = n_oos = top1 = top3 = answered = answered_right = oos_answered = 0
    counts = dict.fromkeys(Decision, 0)
    latencies: list[float] = []
    # (confidence, in scope, top entry right) of every FAQ decision: the precision-coverage curve
    faq: list[tuple[float, bool, bool]] = []
    for text, expected in rows:
        n += 1
        start = time.perf_counter_ns()
        prediction = classifier.classify(text, memo=False)
        latencies.append((time.perf_counter_ns() - start) / 1000)
        counts[prediction.decision] += 1
        is_answer = prediction.decision is Decision.ANSWER
        if prediction.intent is None and prediction.alternatives:
            right = prediction.alternatives[0].entry_id == expected
            faq.append((prediction.confidence, expected != MUST_NOT_ANSWER, right))
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
        "curve": _curve(faq, n_in, n_oos),
    }


def _curve(faq: list[tuple[float, bool, bool]], n_in: int, n_oos: int) -> list[dict[str, float]]:
    """Answer precision, in-scope coverage and must-not-answer answered if the answer threshold were t."""
    out = []
    for t in CURVE_POINTS:
        hits = [(inside, right) for conf, inside, right in faq if conf >= t]
        inside = [right for is_in, right in hits if is_in]
        out.append(
            {
                "threshold": t,
                "precision": _share(sum(inside), len(inside)),
                "coverage": _share(len(inside), n_in),
                "oos_answered": _share(len(hits) - len(inside), n_oos),
            }
        )
    return out


def learn_split(
    kb: KnowledgeBase, rows: list[tuple[str, str]], n: int, *, seed: int = 0
) -> tuple[KnowledgeBase, list[tuple[str, str]]]:
    """`kefu eval --learn N`: N labelled in-scope rows become similar questions of their entries, as
    agents would teach them; the kb with them and the rows left to evaluate on are returned."""
    labelled = [i for i, (_, expected) in enumerate(rows) if expected != MUST_NOT_ANSWER and kb.get(expected)]
    rng = random.Random(seed)
    taught = set(rng.sample(labelled, min(n, len(labelled))))
    extra: dict[str, list[str]] = {}
    for i in sorted(taught):
        text, expected = rows[i]
        extra.setdefault(expected, []).append(text)
    entries = tuple(
        replace(e, similar=(*e.similar, *extra[e.id])) if e.id in extra else e for e in kb.entries
    )
    learned = replace(kb, entries=entries, version=f"{kb.version}+learn{len(taught)}")
    return learned, [row for i, row in enumerate(rows) if i not in taught]
