"""SLA timers: what the supervisor sees for each conversation, and when the customer hears 客服正忙."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from handoff.hours import from_config
from handoff.sla import (
    BUSY_NOTICE,
    ConversationTimes,
    SlaPolicy,
    breached,
    first_response_due,
    follow_up_due,
    is_overdue,
    overdue_by,
    should_send_busy_notice,
)

SH = ZoneInfo("Asia/Shanghai")
HOURS = from_config({"weekly": {"mon-sat": ["08:30-12:00", "13:00-17:30"]}})
POLICY = SlaPolicy()


def t(hh: int, mm: int = 0, ss: int = 0, day: int = 24) -> datetime:
    return datetime(2026, 11, day, hh, mm, ss, tzinfo=SH)


def test_the_four_times_of_a_conversation() -> None:
    times = ConversationTimes(
        opened_at=t(9, 0),
        handed_off_at=t(9, 2),
        assigned_at=t(9, 2, 40),
        first_agent_reply_at=t(9, 3, 10),
        ended_at=t(9, 15),
    )
    assert times.waiting == timedelta(seconds=40)
    assert times.first_response == timedelta(seconds=70)
    assert times.handling == timedelta(minutes=12, seconds=20)
    assert times.resolution == timedelta(minutes=13)


def test_a_bot_only_conversation_has_only_a_resolution_time() -> None:
    times = ConversationTimes(opened_at=t(9, 0), ended_at=t(9, 4))
    assert (times.waiting, times.first_response, times.handling) == (None, None, None)
    assert times.resolution == timedelta(minutes=4)


def test_clock_skew_never_gives_a_negative_time() -> None:
    times = ConversationTimes(opened_at=t(9, 0), handed_off_at=t(9, 2), assigned_at=t(9, 1, 59))
    assert times.waiting == timedelta(0)


def test_first_response_due_during_hours_and_after_hours() -> None:
    assert first_response_due(t(10, 0), POLICY) == t(10, 1)
    assert first_response_due(t(10, 0), POLICY, HOURS) == t(10, 1)
    # Handed off during lunch: the minute starts at 13:00.
    assert first_response_due(t(12, 30), POLICY, HOURS) == t(13, 1)
    # Saturday evening: due Monday 08:31.
    assert first_response_due(t(18, 0, day=28), POLICY, HOURS) == t(8, 31, day=30)


@pytest.mark.parametrize(
    ("responded", "now", "late"),
    [(t(10, 0, 59), t(11, 0), False), (t(10, 1), t(11, 0), False), (t(10, 1, 1), t(11, 0), True)],
)
def test_breached_after_the_due_time(responded: datetime, now: datetime, late: bool) -> None:
    assert breached(t(10, 1), responded, now) is late


def test_breached_while_still_waiting() -> None:
    assert not breached(t(10, 1), None, t(10, 0, 30))
    assert breached(t(10, 1), None, t(10, 1, 1))


def test_the_busy_notice_is_due_once_after_a_minute_without_reply() -> None:
    times = ConversationTimes(opened_at=t(9, 59), handed_off_at=t(10, 0))
    decide = lambda now, sent=None, **kw: should_send_busy_notice(  # noqa: E731
        times, notice_sent_at=sent, now=now, policy=POLICY, **kw
    )
    assert not decide(t(10, 0, 59))
    assert decide(t(10, 1))
    assert not decide(t(10, 5), sent=t(10, 1))  # sent already: never twice
    assert not decide(t(10, 5), is_ticket=True)  # a 留言 got its own notice
    replied = ConversationTimes(opened_at=t(9, 59), handed_off_at=t(10, 0), first_agent_reply_at=t(10, 0, 30))
    assert not should_send_busy_notice(replied, notice_sent_at=None, now=t(10, 5), policy=POLICY)
    assert "客服正忙，请稍候" in BUSY_NOTICE


def test_the_busy_notice_waits_for_opening_hours() -> None:
    times = ConversationTimes(opened_at=t(12, 10), handed_off_at=t(12, 10))
    kwargs = {"notice_sent_at": None, "policy": POLICY, "hours": HOURS}
    assert not should_send_busy_notice(times, now=t(12, 30), **kwargs)  # type: ignore[arg-type]
    assert should_send_busy_notice(times, now=t(13, 1), **kwargs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Ticket:
    due_at: datetime | None
    closed_at: datetime | None = None


def test_follow_up_deadline_and_overdue() -> None:
    due = follow_up_due(t(16, 0), POLICY)
    assert due == t(16, 0, day=25)
    ticket = Ticket(due_at=due)
    assert not is_overdue(ticket, t(15, 59, day=25))
    assert not is_overdue(ticket, due)
    assert is_overdue(ticket, t(16, 1, day=25))
    assert overdue_by(ticket, t(18, 0, day=25)) == timedelta(hours=2)
    assert not is_overdue(Ticket(due_at=due, closed_at=t(17, 0, day=25)), t(18, 0, day=25))
    assert not is_overdue(Ticket(due_at=None), t(18, 0, day=30))


def test_follow_up_deadline_in_business_hours() -> None:
    policy = SlaPolicy(follow_up=timedelta(hours=8), follow_up_business_time=True)
    # Saturday 16:00 + 8 business hours: 1.5 h on Saturday, then Monday 08:30–12:00 and 13:00–16:00.
    assert follow_up_due(t(16, 0, day=28), policy, HOURS) == t(16, 0, day=30)
    assert follow_up_due(t(16, 0, day=28), policy) == t(0, 0, day=29)  # without hours: the plain clock


def test_policy_from_config() -> None:
    policy = SlaPolicy.from_config(
        {"first_response_s": 30, "follow_up_hours": 48, "follow_up_business_time": True}
    )
    assert policy == SlaPolicy(timedelta(seconds=30), timedelta(hours=48), True)
    assert SlaPolicy.from_config(None) == SlaPolicy()
    with pytest.raises(ValueError, match=r"sla\.first_response_s: expected a positive number"):
        SlaPolicy.from_config({"first_response_s": 0})
    with pytest.raises(ValueError, match="unknown key"):
        SlaPolicy.from_config({"first_reply_s": 10})
    with pytest.raises(ValueError, match="true or false"):
        SlaPolicy.from_config({"follow_up_business_time": "yes"})
