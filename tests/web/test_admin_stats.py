"""Grouping of unanswered questions and the dashboard's time buckets (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from gateway.http.admin_api import buckets, durations, unanswered_clusters
from gateway.storage.stats_queries import UnansweredRow

AT = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)


def rows(*texts: str) -> list[UnansweredRow]:
    return [UnansweredRow(1, "web", t, "handoff", AT) for t in texts]


def test_similar_wordings_are_counted_together_and_the_most_frequent_represents_them() -> None:
    clusters = unanswered_clusters(
        rows("能开专票吗", "能开专票吗？", "能开专票吗", "可以开专票吗", "你们几点下班", "几点下班")
    )
    assert [(c["text"], c["count"]) for c in clusters] == [("能开专票吗", 4), ("你们几点下班", 2)]
    assert clusters[0]["examples"] == ["能开专票吗", "可以开专票吗"]  # the lead first, as admin.js expects


def test_full_width_and_traditional_forms_are_one_question() -> None:
    # The dashboard passes the intents normaliser: full-width → half-width, traditional → simplified.
    clusters = unanswered_clusters(rows("發票怎麼開", "发票怎么开", "退款ＡＢＣ", "退款abc"))
    assert [(c["text"], c["count"]) for c in clusters] == [("發票怎麼開", 2), ("退款ＡＢＣ", 2)]


def test_each_group_carries_its_channels_and_last_time() -> None:
    later = AT + timedelta(hours=2)
    misses = [
        # Newest first, as stats_queries.unanswered returns them.
        UnansweredRow(3, "qq", "几点下班", "handoff", later),
        UnansweredRow(2, "wechat", "你们几点下班", "suggest", AT + timedelta(hours=1)),
        UnansweredRow(1, "web", "几点下班", "handoff", AT),
    ]
    [cluster] = unanswered_clusters(misses)
    assert cluster == {
        "text": "几点下班",
        "count": 3,
        "examples": ["几点下班", "你们几点下班"],
        "channels": {"web": 1, "wechat": 1, "qq": 1},
        "last_at": later.isoformat(),
    }


def test_equal_counts_list_the_question_asked_first_first_and_the_limit_applies() -> None:
    misses = [
        UnansweredRow(2, "web", "怎么退款", "handoff", AT + timedelta(minutes=5)),
        UnansweredRow(1, "web", "几点发货", "handoff", AT),
    ]
    assert [c["text"] for c in unanswered_clusters(misses)] == ["几点发货", "怎么退款"]
    assert [c["text"] for c in unanswered_clusters(misses, limit=1)] == ["几点发货"]


def test_phone_numbers_in_unanswered_questions_are_masked_unless_masking_is_off() -> None:
    misses = rows("我的手机13812345678收不到验证码", "我的手机13812345678收不到验证码")
    [cluster] = unanswered_clusters(misses)
    assert cluster["text"] == "我的手机138****5678收不到验证码"
    assert all("13812345678" not in text for text in cluster["examples"])
    [raw] = unanswered_clusters(misses, mask=False)  # privacy.mask_exports: false
    assert raw["text"] == "我的手机13812345678收不到验证码"


def test_short_ranges_are_hourly_and_long_ones_daily() -> None:
    unit, starts = buckets(AT - timedelta(hours=24), AT)
    assert unit == "hour" and len(starts) == 25 and starts[0].minute == 0
    unit, starts = buckets(AT - timedelta(days=7), AT)
    assert unit == "day" and len(starts) == 8


def test_durations_summarise_seconds() -> None:
    assert durations([]) == {"count": 0, "avg": None, "p50": None, "p90": None}
    summary = durations([10, 20, 30, 40, 1000])
    assert summary["count"] == 5 and summary["p50"] == 30 and summary["p90"] == 1000
