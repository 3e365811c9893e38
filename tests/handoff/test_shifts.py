"""排班: weekly templates, coverage gaps against business hours, swap rules, attendance, on-shift routing."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from handoff.hours import HoursConfigError, group_hours_from_config
from handoff.shifts import (
    AttendanceStatus,
    ShiftSpan,
    SwapPolicy,
    SwapRequest,
    agents_on_shift,
    attendance,
    check_swap,
    coverage_gaps,
    group_label,
    is_on_shift,
    next_shift_start,
    prefer_on_shift,
    week_start,
    weekly_from_config,
)

TZ = ZoneInfo("Asia/Shanghai")
MONDAY = date(2026, 12, 7)


def at(day: int, hh: int, mm: int = 0) -> datetime:
    """December 2026, Shanghai time."""
    return datetime(2026, 12, day, hh, mm, tzinfo=TZ)


def span(agent: str, group: str, start: datetime, end: datetime, **kw: object) -> ShiftSpan:
    return ShiftSpan(agent, group, start, end, **kw)  # type: ignore[arg-type]


HOURS = group_hours_from_config(
    {
        "weekly": {"mon-fri": ["09:00-18:00"], "sat-sun": ["10:00-16:00"]},
        "groups": {"售后": {"weekly": {"mon-sun": ["09:00-22:00"]}}},
    }
)


# -- shifts and templates ----------------------------------------------------------------------------


def test_a_shift_across_midnight_is_one_shift_ending_the_next_day() -> None:
    night = span("小王", "售后", at(7, 22), at(8, 2))
    assert night.covers(at(8, 1, 30))
    assert not night.covers(at(8, 2))
    assert night.working() == [(at(7, 22), at(8, 2))]


def test_a_break_is_off_duty() -> None:
    day = span("小王", "售前", at(7, 9), at(7, 18), breaks=((at(7, 12), at(7, 13)),))
    assert day.working() == [(at(7, 9), at(7, 12)), (at(7, 13), at(7, 18))]
    assert not day.covers(at(7, 12, 30))
    assert day.covers(at(7, 13))


@pytest.mark.parametrize(
    ("start", "end", "breaks", "needle"),
    [
        (at(7, 18), at(7, 9), (), "before it starts"),
        (at(7, 9), at(8, 10), (), "longer than 24 hours"),
        (at(7, 9), at(7, 18), ((at(7, 8), at(7, 10)),), "outside the shift"),
        (datetime(2026, 12, 7, 9), at(7, 18), (), "timezone-aware"),
    ],
)
def test_impossible_shifts_are_refused(
    start: datetime, end: datetime, breaks: tuple[tuple[datetime, datetime], ...], needle: str
) -> None:
    with pytest.raises(ValueError, match=needle):
        span("小王", "售前", start, end, breaks=breaks)


def test_weekly_template_expands_like_business_hours_with_lunch_breaks_and_night_shifts() -> None:
    template = {
        "售前": {"小王": {"mon-fri": ["09:00-12:00", "13:00-18:00"]}},
        "售后": {"小李": {"周六": "22:00-02:00"}},
    }
    spans = weekly_from_config(template, MONDAY)
    wang = [s for s in spans if s.agent == "小王"]
    assert len(wang) == 5
    assert wang[0].start == at(7, 9) and wang[0].end == at(7, 18)
    assert wang[0].breaks == ((at(7, 12), at(7, 13)),)
    (li,) = [s for s in spans if s.agent == "小李"]
    assert (li.start, li.end, li.group) == (at(12, 22), at(13, 2), "售后")


def test_weekly_template_errors_name_the_field() -> None:
    with pytest.raises(HoursConfigError, match=r"shifts\.售前\.小王\.funday: unknown day"):
        weekly_from_config({"售前": {"小王": {"funday": "09:00-18:00"}}}, MONDAY)
    with pytest.raises(HoursConfigError, match=r"shifts\.售前\.小王\.mon: .*not a shift"):
        weekly_from_config({"售前": {"小王": {"mon": "nine to five"}}}, MONDAY)
    with pytest.raises(ValueError, match="not a Monday"):
        weekly_from_config({}, MONDAY + timedelta(days=1))


def test_week_start_and_group_label() -> None:
    assert week_start(date(2026, 12, 12)) == MONDAY
    assert group_label("售后") == "售后组"
    assert group_label("VIP组") == "VIP组"


# -- coverage -----------------------------------------------------------------------------------------


def test_coverage_gap_is_reported_in_chinese_per_group_and_day() -> None:
    shifts = [
        # 售后 opens 09:00-22:00 every day; Saturday is covered only until 21:00.
        span("小李", "售后", at(12, 9), at(12, 21)),
        # 售前 (default hours) Saturday 10:00-16:00, fully covered.
        span("小王", "售前", at(12, 10), at(12, 16)),
    ]
    gaps = coverage_gaps(shifts, HOURS, ["售前", "售后"], at(12, 0), at(13, 0))
    assert [g.text for g in gaps] == ["周六 21:00–22:00 售后组无人值班"]
    assert gaps[0].date_text == "12月12日（周六）21:00–22:00 售后组无人值班"


def test_breaks_leave_a_gap_unless_a_colleague_covers_them() -> None:
    lunch = ((at(7, 12), at(7, 13)),)
    alone = [span("小王", "售前", at(7, 9), at(7, 18), breaks=lunch)]
    gaps = coverage_gaps(alone, HOURS, ["售前"], at(7, 0), at(8, 0))
    assert [g.text for g in gaps] == ["周一 12:00–13:00 售前组无人值班"]
    covered = [*alone, span("小张", "售前", at(7, 11), at(7, 14))]
    assert coverage_gaps(covered, HOURS, ["售前"], at(7, 0), at(8, 0)) == []


def test_another_groups_shift_does_not_cover_and_an_empty_week_lists_every_day() -> None:
    gaps = coverage_gaps([span("小王", "售前", at(7, 9), at(7, 22))], HOURS, ["售后"], at(7, 0), at(14, 0))
    assert len(gaps) == 7
    assert gaps[0].text == "周一 09:00–22:00 售后组无人值班"
    assert gaps[-1].text == "周日 09:00–22:00 售后组无人值班"


def test_a_gap_until_midnight_ends_at_24_00_and_night_hours_split_per_day() -> None:
    night = group_hours_from_config({"weekly": {"mon-sun": ["20:00-02:00"]}})
    gaps = coverage_gaps([], night, ["夜班"], at(7, 0), at(8, 12))
    assert [g.text for g in gaps][:3] == [
        "周一 00:00–02:00 夜班组无人值班",  # Sunday night's shift, still open on Monday
        "周一 20:00–24:00 夜班组无人值班",
        "周二 00:00–02:00 夜班组无人值班",
    ]


def test_holidays_need_no_coverage() -> None:
    hours = group_hours_from_config({"weekly": {"mon-fri": ["09:00-18:00"]}, "holidays": ["2026-12-08"]})
    gaps = coverage_gaps([], hours, ["售前"], at(7, 0), at(10, 0))
    assert [g.start.day for g in gaps] == [7, 9]


# -- on shift -------------------------------------------------------------------------------------------


def test_who_is_on_shift_and_routing_preference() -> None:
    shifts = [
        span("小王", "售前", at(7, 9), at(7, 18), breaks=((at(7, 12), at(7, 13)),)),
        span("小李", "售后", at(7, 9), at(7, 22)),
    ]
    assert agents_on_shift(shifts, at(7, 10)) == {"小王", "小李"}
    assert agents_on_shift(shifts, at(7, 12, 30), "售前") == set()
    assert is_on_shift(shifts, "小李", at(7, 21, 59), "售后")
    assert not is_on_shift(shifts, "小李", at(7, 21, 59), "售前")
    assert prefer_on_shift(["小赵", "小王", "小钱", "小李"], {"小李", "小王"}) == [
        "小王",
        "小李",
        "小赵",
        "小钱",
    ]


def test_next_shift_start_for_the_nobody_online_notice() -> None:
    shifts = [
        span("小王", "售前", at(7, 9), at(7, 18), breaks=((at(7, 12), at(7, 13)),)),
        span("小王", "售前", at(8, 9), at(8, 18)),
        span("小李", "售后", at(7, 8), at(7, 22)),
    ]
    assert next_shift_start(shifts, at(7, 7), "售前") == at(7, 9)
    assert next_shift_start(shifts, at(7, 12, 10), "售前") == at(7, 13)  # back from lunch
    assert next_shift_start(shifts, at(7, 19), "售前") == at(8, 9)
    assert next_shift_start(shifts, at(9, 0), "售前") is None


# -- swaps ----------------------------------------------------------------------------------------------

POLICY = SwapPolicy()
NOW = at(1, 10)


def test_swap_with_enough_notice_is_allowed() -> None:
    shift = span("小王", "售前", at(10, 9), at(10, 18))
    assert check_swap(shift, "小王", "小李", now=NOW, policy=POLICY) is None


def test_swap_needs_three_days_notice_by_default() -> None:
    shift = span("小王", "售前", at(3, 9), at(3, 18))
    refusal = check_swap(shift, "小王", "小李", now=NOW, policy=POLICY)
    assert refusal is not None and refusal.code == "notice"
    assert refusal.message.startswith("调班需提前 3 天申请")
    assert "12月3日（周四）09:00" in refusal.message
    # Exactly three days ahead is enough; one day with a one-day rule too.
    assert (
        check_swap(span("小王", "售前", at(4, 10), at(4, 18)), "小王", "小李", now=NOW, policy=POLICY) is None
    )
    assert check_swap(shift, "小王", "小李", now=NOW, policy=SwapPolicy(swap_notice_days=1)) is None


def test_third_swap_in_a_month_is_refused_but_rejected_ones_do_not_count() -> None:
    shift = span("小王", "售前", at(20, 9), at(20, 18))
    two = [SwapRequest("小王", at(10, 9), "approved"), SwapRequest("小王", at(15, 9), "pending")]
    refusal = check_swap(shift, "小王", "小李", now=NOW, policy=POLICY, earlier=two)
    assert refusal is not None and refusal.code == "monthly_limit"
    assert refusal.message == "每月最多允许调班 2 次：您 2026年12月 已申请 2 次"
    others = [
        SwapRequest("小王", at(10, 9), "approved"),
        SwapRequest("小王", at(15, 9), "rejected"),
        SwapRequest("小李", at(16, 9), "approved"),
        SwapRequest("小王", datetime(2027, 1, 5, 9, tzinfo=TZ), "approved"),
    ]
    assert check_swap(shift, "小王", "小李", now=NOW, policy=POLICY, earlier=others) is None


def test_swap_refusals_for_someone_elses_shift_oneself_a_started_shift_and_a_busy_colleague() -> None:
    shift = span("小王", "售前", at(10, 9), at(10, 18))
    assert check_swap(shift, "小李", "小赵", now=NOW, policy=POLICY).code == "not_own_shift"  # type: ignore[union-attr]
    assert check_swap(shift, "小王", "小王", now=NOW, policy=POLICY).code == "same_agent"  # type: ignore[union-attr]
    assert check_swap(shift, "小王", "小李", now=at(10, 9), policy=POLICY).code == "started"  # type: ignore[union-attr]
    busy = check_swap(
        shift, "小王", "小李", now=NOW, policy=POLICY, others=[span("小李", "售后", at(10, 17), at(10, 22))]
    )
    assert (
        busy is not None and busy.code == "busy" and "小李 在 12月10日（周四）17:00 已有班次" in busy.message
    )


def test_swap_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="shifts.max_swaps_per_month"):
        SwapPolicy(max_swaps_per_month=-1)
    with pytest.raises(ValueError, match="shifts.swap_notice_days"):
        SwapPolicy(swap_notice_days=True)


# -- attendance -----------------------------------------------------------------------------------------

SHIFT = span("小王", "售前", at(7, 9), at(7, 18), breaks=((at(7, 12), at(7, 13)),))
AFTER = at(7, 20)


def test_on_time_all_day_is_present_with_full_ratio() -> None:
    a = attendance(SHIFT, [(at(7, 8, 55), at(7, 18, 2))], now=AFTER)
    assert a.status is AttendanceStatus.PRESENT
    assert a.online == timedelta(hours=8) == a.scheduled and a.ratio == 1.0


def test_late_early_leave_both_and_absent() -> None:
    late = attendance(SHIFT, [(at(7, 9, 20), at(7, 18))], now=AFTER)
    assert late.status is AttendanceStatus.LATE and late.late_by == timedelta(minutes=20)
    early = attendance(SHIFT, [(at(7, 9), at(7, 17))], now=AFTER)
    assert early.status is AttendanceStatus.EARLY_LEAVE and early.left_early_by == timedelta(hours=1)
    both = attendance(SHIFT, [(at(7, 10), at(7, 11)), (at(7, 14), at(7, 16))], now=AFTER)
    assert both.status is AttendanceStatus.LATE_AND_EARLY
    assert both.online == timedelta(hours=3)
    assert attendance(SHIFT, [(at(6, 9), at(6, 18))], now=AFTER).status is AttendanceStatus.ABSENT


def test_grace_period_and_shifts_not_over_yet() -> None:
    assert attendance(SHIFT, [(at(7, 9, 4), at(7, 17, 57))], now=AFTER).status is AttendanceStatus.PRESENT
    assert attendance(SHIFT, [], now=at(7, 8)).status is AttendanceStatus.UPCOMING
    assert attendance(SHIFT, [], now=at(7, 9, 3)).status is AttendanceStatus.UPCOMING
    # Mid-shift, online since the start: present (leaving early is only known at the end).
    running = attendance(SHIFT, [(at(7, 9), at(7, 11))], now=at(7, 11))
    assert running.status is AttendanceStatus.PRESENT
