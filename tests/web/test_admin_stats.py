"""Grouping of unanswered questions and the dashboard's time buckets (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from gateway.http.admin_api import bucket_labels, buckets, durations, parse_range, unanswered_clusters
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
        # The drill-down: each message with its conversation, newest first.
        "messages": [
            {
                "conversation_id": 3,
                "channel": "qq",
                "text": "几点下班",
                "decision": "handoff",
                "at": later.isoformat(),
            },
            {
                "conversation_id": 2,
                "channel": "wechat",
                "text": "你们几点下班",
                "decision": "suggest",
                "at": (AT + timedelta(hours=1)).isoformat(),
            },
            {
                "conversation_id": 1,
                "channel": "web",
                "text": "几点下班",
                "decision": "handoff",
                "at": AT.isoformat(),
            },
        ],
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


def test_buckets_and_labels_follow_the_business_hours_time_zone_not_utc() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    unit, starts = buckets(AT - timedelta(days=3), AT, shanghai)
    # Days start at midnight in Shanghai (16:00 UTC the day before), labelled with Shanghai's dates.
    assert unit == "day" and starts[0] == datetime(2026, 11, 20, 16, tzinfo=UTC)
    assert bucket_labels(starts, unit, shanghai) == ["11/21", "11/22", "11/23", "11/24"]
    unit, starts = buckets(AT - timedelta(hours=2), AT, shanghai)
    assert bucket_labels(starts, unit, shanghai) == ["14:00", "15:00", "16:00"]  # 06:30–08:30 UTC
    # Across a DST change a local day is 23 hours long.
    paris = ZoneInfo("Europe/Paris")
    _, starts = buckets(datetime(2026, 3, 28, 12, tzinfo=UTC), datetime(2026, 3, 31, tzinfo=UTC), paris)
    assert [b - a for a, b in zip(starts, starts[1:], strict=False)] == [
        timedelta(hours=24),
        timedelta(hours=23),  # Sunday 29 March 2026: clocks go forward
        timedelta(hours=24),
    ]


def test_a_date_in_the_range_is_midnight_in_the_business_time_zone() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    start, end = parse_range({"from": "2026-11-01", "to": "2026-11-08"}, tz=shanghai)
    assert (start, end) == (datetime(2026, 10, 31, 16, tzinfo=UTC), datetime(2026, 11, 7, 16, tzinfo=UTC))
    assert len(buckets(start, end, shanghai)[1]) == 7
    # A datetime keeps its own offset (or UTC without one), as the page sends it.
    start, _ = parse_range({"from": "2026-11-01T00:00:00", "to": "2026-11-02T00:00:00Z"}, tz=shanghai)
    assert start == datetime(2026, 11, 1, tzinfo=UTC)


def test_durations_summarise_seconds() -> None:
    assert durations([]) == {"count": 0, "avg": None, "p50": None, "p90": None}
    summary = durations([10, 20, 30, 40, 1000])
    assert summary["count"] == 5 and summary["p50"] == 30 and summary["p90"] == 1000
