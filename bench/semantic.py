"""Semantic-stage benchmark: classify p50/p99 for novel and repeated texts, index build at 60 / 5k / 50k
questions with a cold and a warm embedding cache, and memory.

Same synthetic shop FAQs as `bench.matcher`. Cold = an empty cache directory and nothing embedded in
this process yet (every question goes through the model); warm = a restart with the cache file.
Run: `python -m bench.semantic [sizes…]`.

Past MODEL_LIMIT questions the model would run for many minutes (50,000 × ~13 ms), so there the cache
is filled by a stand-in encoder of the same size (deterministic vectors per text; its own name, so
its vectors never mix with the real model's, in the process or on disk): the warm
build (read the cache, centre, hub correction, calibration) and the matching part of classify are
measured as they are; the cold build is the warm one plus every question's embedding at the per-text
cost measured on the smaller cold run (marked "≈"), and a novel text's latency adds one model call.
"""

from __future__ import annotations

import hashlib
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench.matcher import _entries, _queries
from intents import semantic
from intents.encoder import DEFAULT_MODEL, load_encoder, uncentred
from intents.matcher import Classifier
from intents.semantic import Embedder
from kb.loader import load_kb

SIZES = (60, 5_000, 50_000)
MODEL_LIMIT = 5_000


class StandIn:
    """Same size as the real encoder, deterministic vectors from the text's hash: it fills the cache of
    a kb too big to embed in a benchmark run (the model's cost per text is measured apart). Its name is
    its own: under the real one, its random vectors would be taken for the model's."""

    def __init__(self, real: Any) -> None:
        self.name, self.dim = f"stand-in-for-{real.name}", real.dim
        self.blocks = getattr(real, "blocks", ((real.dim, 1.0),))
        self.uncentred = uncentred(real)  # the real model's scoring work, raw cosines included

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
            out[i] = np.random.default_rng(seed).standard_normal(self.dim)
        lo = 0
        for dim, _ in self.blocks:  # unit rows per part, as the ensemble's
            part = out[:, lo : lo + dim]
            part /= np.linalg.norm(part, axis=1, keepdims=True)
            lo += dim
        return out


def _percentiles(values: list[float]) -> tuple[float, float]:
    array = np.asarray(values)
    return float(np.percentile(array, 50)), float(np.percentile(array, 99))


def measure(n_questions: int, folder: Path, per_text_s: float = 0.0) -> dict[str, float]:
    encoder: Any = load_encoder(DEFAULT_MODEL)
    if encoder is None:
        raise RuntimeError("semantic encoder unavailable: no semantic figures")
    stand_in = n_questions > MODEL_LIMIT
    faqs = _entries(n_questions)
    path = folder / f"kb{n_questions}.yaml"
    path.write_text(yaml.safe_dump({"faqs": faqs}, allow_unicode=True, sort_keys=False), encoding="utf-8")
    kb = load_kb([path]).kb
    assert kb is not None
    cache = folder / f"cache{n_questions}"

    real = encoder
    if stand_in:
        encoder = StandIn(real)
    semantic._SHARED.clear()
    first = Embedder(encoder, cache_dir=cache)
    start = time.perf_counter()
    classifier = Classifier.build(kb, embedder=first)
    cold = time.perf_counter() - start
    embedded = first.encoded
    semantic._SHARED.clear()
    start = time.perf_counter()
    classifier = Classifier.build(kb, embedder=Embedder(encoder, cache_dir=cache))
    warm = time.perf_counter() - start
    if stand_in:  # the real model's time for every question, instead of the stand-in's
        cold = warm + embedded * per_text_s
        assert classifier.semantic is not None
        classifier.semantic.embedder.encoder = real  # customers' texts go through the real model

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
        "estimated": float(stand_in),
        "per_text_s": cold / max(embedded, 1) if not stand_in else per_text_s,
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
    per_text = 0.0
    with tempfile.TemporaryDirectory(prefix="kefu-bench-sem-") as tmp:
        for n in sizes:
            m = measure(n, Path(tmp), per_text)
            if not m["estimated"]:  # the largest real cold build's cost per question
                per_text = m["per_text_s"]
            lines.append(
                f"semantic: {m['questions']:>6} questions  build cold {'≈' if m['estimated'] else ''}"
                f"{m['cold_s']:.1f} s, warm cache "
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
