"""The matcher benchmark still runs (a small size only: the real figures come from `make bench`)."""

from pathlib import Path

from bench.matcher import _entries, measure


def test_synthetic_kb_has_unique_plausible_questions():
    faqs = _entries(500)
    questions = [q for f in faqs for q in (f["question"], *f["similar"])]
    assert len(questions) == 500
    assert len(set(questions)) == len(questions)


def test_measure_small_kb(tmp_path: Path):
    m = measure(60, tmp_path)
    assert m["questions"] == 60
    assert 0 < m["p50_us"] <= m["p99_us"]
    assert m["retained_mb"] > 0


def test_semantic_bench_estimates_the_cold_build_past_the_model_limit(tmp_path, monkeypatch):
    """Past MODEL_LIMIT the cache is filled by a stand-in and the cold build is warm + n × per-text cost."""
    from bench import semantic as bench_semantic

    monkeypatch.setattr(bench_semantic, "MODEL_LIMIT", 10)
    m = bench_semantic.measure(60, tmp_path, per_text_s=0.01)
    assert m["estimated"] == 1.0
    assert m["cold_s"] >= m["warm_s"] + 60 * 0.01 * 0.9  # ~60 distinct questions, each "embedded" at 10 ms
    assert m["novel_p50_us"] > 0 and m["repeat_p50_us"] <= m["novel_p50_us"]


def test_the_semantic_bench_stand_in_leaves_the_real_models_vectors_alone(tmp_path, monkeypatch):
    """Regression: the stand-in's random vectors, shared under the real model's name, were served to the
    later builds of the same process (a test run's eval figures moved, and they were cached on disk)."""
    import numpy as np

    from bench import semantic as bench_semantic
    from bench.matcher import _entries
    from intents.encoder import DEFAULT_MODEL, load_encoder
    from intents.semantic import Embedder

    monkeypatch.setattr(bench_semantic, "MODEL_LIMIT", 10)
    bench_semantic.measure(60, tmp_path, per_text_s=0.01)
    real = load_encoder(DEFAULT_MODEL)
    assert real is not None
    texts = [f["question"] for f in _entries(60)[:3]] + ["谁创造了你"]  # a rule intent's phrase too
    assert np.abs(Embedder(real).questions(texts) - real.encode(texts)).max() < 1e-5
