"""What the customer reads during a handoff: polite, specific, always with a next step."""

from __future__ import annotations

from datetime import datetime

import pytest

from handoff import notices
from handoff.csat import CSAT_QUESTION

NOW = datetime(2026, 11, 24, 22, 30)  # a Tuesday evening, local time


def test_queued_names_the_position() -> None:
    assert notices.queued(3).startswith("已为您转接人工客服，当前排队第 3 位")
    assert "第 1 位" in notices.queued(1)


def test_position_update_names_the_new_position() -> None:
    assert "第 7 位" in notices.position_update(7)
    assert "马上" in notices.position_update(1)


@pytest.mark.parametrize("bad", [0, -1, True, 2.0])
def test_a_wrong_position_is_a_bug_not_a_message(bad: object) -> None:
    with pytest.raises(ValueError):
        notices.queued(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        notices.position_update(bad)  # type: ignore[arg-type]


def test_agent_joined_names_the_agent() -> None:
    assert "客服 小王 为您服务" in notices.agent_joined("小王")
    assert notices.agent_joined(" ").startswith("您好，人工客服为您服务")


def test_idle_reminder_and_auto_close() -> None:
    assert "5 分钟内" in notices.idle_reminder(5)
    assert "还在吗" in notices.idle_reminder()
    assert "已自动结束" in notices.auto_closed()
    assert CSAT_QUESTION not in notices.auto_closed()
    assert notices.auto_closed(with_csat=True).endswith(CSAT_QUESTION)


def test_closed_by_agent_asks_for_a_rating() -> None:
    text = notices.closed_by_agent("小王")
    assert "客服 小王" in text and text.endswith(CSAT_QUESTION)
    assert notices.closed_by_agent().startswith("本次服务已结束")


def test_thanks_apologises_for_a_low_rating() -> None:
    assert "抱歉" in notices.thanks_for_rating(1)
    assert "抱歉" not in notices.thanks_for_rating(5)
    with pytest.raises(ValueError):
        notices.thanks_for_rating(0)


def test_no_agent_online_is_honest_and_says_when() -> None:
    plain = notices.no_agent_online()
    assert "暂时没有人工客服在线" in plain and "留言" in plain
    tomorrow = notices.no_agent_online(datetime(2026, 11, 25, 9, 0), now=NOW, service_hours="每天 9:00–22:00")
    assert "明天 09:00" in tomorrow and "每天 9:00–22:00" in tomorrow


@pytest.mark.parametrize(
    ("resumes", "expected"),
    [
        (datetime(2026, 11, 24, 23, 0), "今天 23:00"),
        (datetime(2026, 11, 25, 9, 0), "明天 09:00"),
        (datetime(2026, 11, 26, 9, 0), "后天（周四）09:00"),
        (datetime(2026, 11, 28, 9, 30), "11月28日（周六）09:30"),
    ],
)
def test_resume_time_reads_naturally(resumes: datetime, expected: str) -> None:
    assert notices.format_resume_time(resumes, NOW) == expected


def test_transfer_and_back_to_bot() -> None:
    assert "客服 小李" in notices.transferred(to_agent_name="小李")
    assert "售后客服" in notices.transferred(to_group="售后")
    assert "转接" in notices.transferred()
    assert "转人工" in notices.back_to_bot()
    assert "已记录" in notices.ticket_followup()


def test_every_notice_is_polite_chinese_without_leftover_placeholders() -> None:
    texts = [
        notices.queued(2),
        notices.position_update(2),
        notices.agent_joined("小王"),
        notices.idle_reminder(3),
        notices.auto_closed(),
        notices.closed_by_agent("小王"),
        notices.thanks_for_rating(4),
        notices.no_agent_online(),
        notices.ticket_followup(),
        notices.transferred("售后"),
        notices.back_to_bot(),
    ]
    for text in texts:
        assert "{" not in text and "None" not in text
        assert "你" not in text, text  # 您, never 你, to a customer
