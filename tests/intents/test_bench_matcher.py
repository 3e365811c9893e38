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
