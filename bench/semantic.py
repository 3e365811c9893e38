"""Semantic-stage benchmark: classify p50/p99 for novel and repeated texts, index build at 60 / 5k / 50k
questions with a cold and a warm embedding cache, and memory.

Same synthetic shop FAQs as `bench.matcher`. Cold = an empty cache directory and nothing embedded in
this process yet (every question goes through the model); warm = a restart with the cache file.
Run: `python -m bench.semantic [sizes…]`.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import yaml

from bench.matcher import _entries, _queries
from intents import semantic
from intents.encoder import DEFAULT_MODEL, load_encoder
from intents.matcher import Classifier
from intents.semantic import Embedder
from kb.loader import load_kb

SIZES = (60, 5_000, 50_000)


def _percentiles(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values)
    return float(np.percentile(array, 50)), float(np.percentile(array, 99))


def measure(n_questions: int, folder: Path) -> dict[str, float]:
    encoder = load_encoder(DEFAULT_MODEL)
    if encoder is None:
        raise RuntimeError("semantic encoder unavailable: no semantic figures")
    faqs = _entries(n_questions)
    path = folder / f"kb{n_questions}.yaml"
    path.write_text(yaml.safe_dump({"faqs": faqs}, allow_unicode=True, sort_keys=False), encoding="utf-8")
    kb = load_kb([path]).kb
    assert kb is not None
    cache = folder / f"cache{n_questions}"

    semantic._SHARED.clear()
    start = time.perf_counter()
    classifier = Classifier.build(kb, embedder=Embedder(encoder, cache_dir=cache))
    cold = time.perf_counter() - start
    semantic._SHARED.clear()
    start = time.perf_counter()
    Classifier.build(kb, embedder=Embedder(encoder, cache_dir=cache))
    warm = time.perf_counter() - start

    queries = list(dict.fromkeys(_queries(faqs, 300)))
    novel: list[float] = []
    for text in queries:  # each text for the first time: embedded, then matched
        t0 = time.perf_counter_ns()
        classifier.classify(text)
        novel.append((time.perf_counter_ns() - t0) / 1000)
    repeat: list[float] = []
    for text in queries:  # the same texts again: the prediction memo (and the embedding memo)
        t0 = time.perf_counter_ns()
        classifier.classify(text)
        repeat.append((time.perf_counter_ns() - t0) / 1000)

    tracemalloc.start()
    semantic._SHARED.clear()
    Classifier.build(kb, embedder=Embedder(encoder, cache_dir=cache))
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    n50, n99 = _percentiles(novel)
    r50, r99 = _percentiles(repeat)
    return {
        "questions": n_questions,
        "cold_s": cold,
        "warm_s": warm,
        "novel_p50_us": n50,
        "novel_p99_us": n99,
        "repeat_p50_us": r50,
        "repeat_p99_us": r99,
        "vectors_mb": classifier.semantic.matrix.nbytes / 2**20 if classifier.semantic else 0.0,
        "retained_mb": retained / 2**20,
        "peak_mb": peak / 2**20,
    }


def run(sizes: tuple[int, ...] = SIZES) -> list[str]:
    """Benchmark lines to print, one per kb size, after the one-off model load."""
    start = time.perf_counter()
    encoder = load_encoder(DEFAULT_MODEL)
    if encoder is None:
        return ["semantic: encoder unavailable on this platform: lexical matcher only, no figures"]
    lines = [f"semantic: {encoder.name} loaded once per process in {time.perf_counter() - start:.2f} s"]
    with tempfile.TemporaryDirectory(prefix="kefu-bench-sem-") as tmp:
        for n in sizes:
            m = measure(n, Path(tmp))
            lines.append(
                f"semantic: {m['questions']:>6} questions  build cold {m['cold_s']:.1f} s, warm cache "
                f"{m['warm_s']:.2f} s  classify novel p50 {m['novel_p50_us'] / 1000:.1f} ms p99 "
                f"{m['novel_p99_us'] / 1000:.1f} ms, repeat p50 {m['repeat_p50_us']:.0f} µs p99 "
                f"{m['repeat_p99_us']:.0f} µs  vectors {m['vectors_mb']:.1f} MB, build retained "
                f"{m['retained_mb']:.1f} MB ({m['peak_mb']:.1f} MB peak)"
            )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    lines.append(f"semantic: process max RSS {rss:.0f} MB (model, jieba and the largest kb included)")
    return lines


if __name__ == "__main__":  # pragma: no cover
    sizes = tuple(int(a) for a in sys.argv[1:]) or SIZES
    for line in run(sizes):
        print(line, flush=True)
