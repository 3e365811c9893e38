"""Grouping of unanswered questions and the dashboard's time buckets (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.admin_stats import bigrams, buckets, cluster_questions, durations, jaccard
from gateway.storage.stats_queries import UnansweredRow

AT = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)


def rows(*texts: str) -> list[UnansweredRow]:
    return [UnansweredRow(1, "web", t, "handoff", AT) for t in texts]


def test_similar_wordings_are_counted_together_and_the_most_frequent_represents_them() -> None:
    clusters = cluster_questions(
        rows("能开专票吗", "能开专票吗？", "能开专票吗", "可以开专票吗", "你们几点下班", "几点下班")
    )
    assert [(c.text, c.count) for c in clusters] == [("能开专票吗", 4), ("你们几点下班", 2)]
    assert "可以开专票吗" in clusters[0].examples


def test_full_width_and_traditional_forms_are_one_question() -> None:
    assert jaccard(bigrams("退款ＡＢＣ"), bigrams("退款abc")) == 1.0
    assert len(cluster_questions(rows("發票怎麼開", "发票怎么开"))) == 1


def test_short_ranges_are_hourly_and_long_ones_daily() -> None:
    unit, starts = buckets(AT - timedelta(hours=24), AT)
    assert unit == "hour" and len(starts) == 25 and starts[0].minute == 0
    unit, starts = buckets(AT - timedelta(days=7), AT)
    assert unit == "day" and len(starts) == 8


def test_durations_summarise_seconds() -> None:
    assert durations([]) == {"count": 0, "avg": None, "p50": None, "p90": None}
    summary = durations([10, 20, 30, 40, 1000])
    assert summary["count"] == 5 and summary["p50"] == 30 and summary["p90"] == 1000
