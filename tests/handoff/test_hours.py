"""Business hours: a 6×8 team (Mon–Sat 8:30–12:00, 13:00–17:30) across lunch, weekends, holidays, midnight."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from handoff import notices
from handoff.hours import (
    BusinessHours,
    DayKind,
    HoursConfigError,
    Shift,
    from_config,
    group_hours_from_config,
)

SH = ZoneInfo("Asia/Shanghai")
SIX_BY_EIGHT = {"weekly": {"mon-sat": ["08:30-12:00", "13:00-17:30"]}}


def at(day: int, hh: int, mm: int = 0, month: int = 11, year: int = 2026) -> datetime:
    """A Shanghai wall-clock time; 2026-11-24 is a Tuesday, 11-28 Saturday, 11-30 Monday."""
    return datetime(year, month, day, hh, mm, tzinfo=SH)


@pytest.fixture
def hours() -> BusinessHours:
    return from_config(SIX_BY_EIGHT)


@pytest.mark.parametrize(
    ("moment", "open_"),
    [
        (at(24, 8, 29), False),
        (at(24, 8, 30), True),  # opening is inclusive
        (at(24, 11, 59), True),
        (at(24, 12, 0), False),  # closing is exclusive: lunch starts
        (at(24, 12, 30), False),
        (at(24, 13, 0), True),
        (at(24, 17, 29), True),
        (at(24, 17, 30), False),
        (at(28, 10, 0), True),  # Saturday is a working day in 6×8
        (at(29, 10, 0), False),  # Sunday is not
        (at(24, 0, 0), False),
    ],
)
def test_open_across_the_day(hours: BusinessHours, moment: datetime, open_: bool) -> None:
    assert hours.is_open(moment) is open_


def test_times_in_utc_are_read_in_shanghai_time(hours: BusinessHours) -> None:
    assert hours.is_open(datetime(2026, 11, 24, 0, 30, tzinfo=UTC))  # 08:30 in Shanghai
    assert not hours.is_open(datetime(2026, 11, 24, 9, 30, tzinfo=UTC))  # 17:30
    opening = hours.next_opening(datetime(2026, 11, 24, 4, 10, tzinfo=UTC))  # 12:10, lunch
    assert opening == at(24, 13, 0) and opening.tzinfo == SH


def test_a_naive_datetime_is_refused(hours: BusinessHours) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        hours.is_open(datetime(2026, 11, 24, 10, 0))


@pytest.mark.parametrize(
    ("after", "opening"),
    [
        (at(24, 7, 0), at(24, 8, 30)),  # early morning
        (at(24, 12, 10), at(24, 13, 0)),  # lunch
        (at(24, 18, 0), at(25, 8, 30)),  # evening → tomorrow
        (at(24, 23, 59), at(25, 8, 30)),  # just before midnight
        (at(28, 18, 0), at(30, 8, 30)),  # Saturday evening → Monday
        (at(29, 9, 0), at(30, 8, 30)),  # Sunday morning → Monday
        (at(24, 10, 0), at(24, 10, 0)),  # open now: now
    ],
)
def test_next_opening(hours: BusinessHours, after: datetime, opening: datetime) -> None:
    assert hours.next_opening(after) == opening


def test_saturday_evening_notice_names_monday_half_past_eight(hours: BusinessHours) -> None:
    now = at(28, 18, 0)
    resumes = hours.next_opening(now)
    assert resumes is not None and resumes.weekday() == 0 and (resumes.hour, resumes.minute) == (8, 30)
    text = notices.no_agent_online(resumes, now=now, service_hours=hours.describe())
    assert "后天（周一）08:30" in text  # Monday, two days after Saturday
    assert "周一至周六 08:30-12:00、13:00-17:30" in text


def test_next_closing(hours: BusinessHours) -> None:
    assert hours.next_closing(at(24, 9, 0)) == at(24, 12, 0)
    assert hours.next_closing(at(24, 12, 30)) is None


def test_extra_holidays_and_working_days() -> None:
    hours = from_config(
        {
            **SIX_BY_EIGHT,
            "holidays": ["2026-11-30", "2026-12-24~2026-12-26"],
            "workdays": [date(2026, 11, 29)],  # a Sunday worked for a sale
            "workday_hours": "10:00-16:00",
        }
    )
    assert not hours.is_open(at(30, 10, 0))
    assert hours.is_open(at(29, 15, 0)) and not hours.is_open(at(29, 9, 0))
    assert hours.next_opening(at(28, 18, 0)) == at(29, 10, 0)
    assert hours.next_opening(at(29, 16, 0)) == at(1, 8, 30, month=12)
    assert hours.next_opening(at(23, 18, 0, month=12)) == at(28, 8, 30, month=12)  # 24–26 closed, 27 Sunday


def test_a_working_day_without_its_own_hours_uses_mondays() -> None:
    hours = from_config({"weekly": {"mon-fri": "09:00-12:00, 13:00-18:00"}, "workdays": ["2026-11-29"]})
    assert hours.shifts_on(date(2026, 11, 29)) == (Shift(540, 720), Shift(780, 1080))


def fake_calendar(day: date) -> DayKind | None:
    # National Day week of 2026 as the State Council published it: 10-01…10-07 off, Saturday 10-10 worked.
    if date(2026, 10, 1) <= day <= date(2026, 10, 7):
        return DayKind.HOLIDAY
    if day == date(2026, 10, 10):
        return DayKind.WORKDAY
    return None


def test_public_holidays_and_tiaoxiu_from_a_calendar() -> None:
    five_day = from_config(
        {"weekly": {"周一至周五": ["08:30-12:00", "13:00-17:30"]}, "chinese_holidays": True},
        public_calendar=fake_calendar,
    )
    assert not five_day.is_open(at(1, 10, 0, month=10))
    assert five_day.next_opening(at(30, 18, 0, month=9)) == at(8, 8, 30, month=10)
    assert five_day.is_open(at(10, 9, 0, month=10))  # 调休: Saturday worked with Monday's hours
    assert not five_day.is_open(at(11, 9, 0, month=10))
    assert five_day.describe().endswith("（法定节假日除外）")


def test_the_real_chinese_calendar() -> None:
    from gateway.holidays import china_public_calendar

    hours = from_config(
        {"weekly": {"mon-fri": ["08:30-12:00", "13:00-17:30"]}, "chinese_holidays": True},
        public_calendar=china_public_calendar(),
    )
    assert hours.next_opening(at(30, 18, 0, month=9)) == at(8, 8, 30, month=10)
    assert hours.is_open(at(10, 9, 0, month=10))  # 2026-10-10, a 调休 Saturday
    assert not hours.is_open(at(18, 9, 0, month=2))  # Spring Festival
    # 2027 is not in the package yet: the weekly schedule applies rather than an error.
    assert hours.is_open(at(4, 9, 0, month=1, year=2027))


def test_an_explicit_workday_beats_the_public_calendar() -> None:
    hours = from_config(
        {**SIX_BY_EIGHT, "chinese_holidays": True, "workdays": ["2026-10-02"]}, public_calendar=fake_calendar
    )
    assert hours.is_open(at(2, 9, 0, month=10)) and not hours.is_open(at(3, 9, 0, month=10))


def test_a_night_shift_runs_past_midnight() -> None:
    hours = from_config({"weekly": {"fri": "22:00-02:00", "sat": "09:00-12:00"}, "holidays": ["2026-12-04"]})
    assert hours.is_open(at(27, 23, 0))
    assert hours.is_open(at(28, 1, 59))  # Saturday small hours belong to Friday's shift
    assert not hours.is_open(at(28, 2, 0))
    assert hours.next_opening(at(28, 2, 0)) == at(28, 9, 0)
    assert hours.next_closing(at(27, 23, 0)) == at(28, 2, 0)
    # Friday 12-04 is a holiday: its night shift does not happen, not even after midnight.
    assert not hours.is_open(at(5, 1, 0, month=12))
    assert hours.next_opening(at(4, 21, 0, month=12)) == at(5, 9, 0, month=12)
    assert "22:00-次日02:00" in hours.describe()


def test_shifts_meeting_at_midnight_make_one_opening() -> None:
    hours = from_config({"weekly": {"mon": "18:00-24:00", "tue": "00:00-06:00"}})
    assert hours.next_closing(at(23, 20, 0)) == at(24, 6, 0)
    assert hours.open_time_between(at(23, 17, 0), at(24, 7, 0)) == timedelta(hours=12)


def test_always_open_and_never_open() -> None:
    always = BusinessHours.always_open()
    assert always.is_open(at(29, 3, 0)) and always.next_opening(at(29, 3, 0)) == at(29, 3, 0)
    assert always.describe() == "每天 24 小时"  # said the way people say it, not 00:00-24:00
    never = from_config({"weekly": {"daily": "closed"}})
    assert never.next_opening(at(24, 9, 0)) is None
    assert never.describe() == "暂无人工服务时间"


def test_open_time_between_and_add_open_time(hours: BusinessHours) -> None:
    assert hours.open_time_between(at(24, 11, 0), at(24, 14, 0)) == timedelta(hours=2)  # lunch not counted
    assert hours.open_time_between(at(28, 17, 0), at(30, 9, 0)) == timedelta(hours=1)
    assert hours.open_time_between(at(24, 14, 0), at(24, 11, 0)) == timedelta(0)
    assert hours.add_open_time(at(28, 17, 0), timedelta(hours=1)) == at(30, 9, 0)
    assert hours.add_open_time(at(24, 11, 30), timedelta(hours=1)) == at(24, 13, 30)
    assert hours.add_open_time(at(24, 18, 0), timedelta(0)) == at(25, 8, 30)


def test_describe_groups_days_with_the_same_hours() -> None:
    hours = from_config({"weekly": {"mon-fri": ["08:30-12:00", "13:00-17:30"], "sat": "8:30-12:00"}})
    assert hours.describe() == "周一至周五 08:30-12:00、13:00-17:30；周六 08:30-12:00"


def test_per_group_hours_inherit_what_they_do_not_set() -> None:
    config = {
        **SIX_BY_EIGHT,
        "timezone": "Asia/Shanghai",
        "holidays": ["2026-11-30"],
        "groups": {"售后": {"weekly": {"daily": "09:00-21:00"}}},
    }
    groups = group_hours_from_config(config)
    assert groups.for_group("售前") is groups.default
    after_sales = groups.for_group("售后")
    assert after_sales.is_open(at(29, 20, 0)) and not after_sales.is_open(
        at(30, 10, 0)
    )  # inherits the holiday
    assert group_hours_from_config(None).default.is_open(at(29, 3, 0))  # no section: always open


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, r"business_hours\.weekly: required"),
        ({"weekly": {"monday-ish": "09:00-17:00"}}, r"business_hours\.weekly\.monday-ish: unknown day"),
        ({"weekly": {"fri-mon": "09:00-17:00"}}, "runs backwards"),
        ({"weekly": {"mon": "9-17"}}, r"weekly\.mon: '9-17' is not a shift"),
        ({"weekly": {"mon": "25:00-26:00"}}, "impossible time"),
        ({"weekly": {"mon": "09:00-09:00"}}, "same time"),
        ({"weekly": {"mon": ["08:00-12:00", "11:00-13:00"]}}, "overlap"),
        ({"weekly": {"mon": ["20:00-10:00", "09:00-12:00"]}}, "overlap|runs into"),
        ({"weekly": {"mon": [510]}}, "is not a shift"),
        ({"weekly": {"mon-fri": "09:00-17:00", "fri": "09:00-12:00"}}, r"weekly\.fri: fri is already set"),
        ({"weekly": {"mon": "09:00-17:00"}, "timezone": "Mars/Olympus"}, r"timezone: unknown time zone"),
        ({"weekly": {"mon": "09:00-17:00"}, "holidays": ["2026-13-01"]}, r"holidays\[0\]: '2026-13-01'"),
        ({"weekly": {"mon": "09:00-17:00"}, "holidays": "2026-10-01"}, r"holidays: expected a list"),
        ({"weekly": {"mon": "09:00-17:00"}, "holidays": ["2026-10-07~2026-10-01"]}, "ends before"),
        (
            {"weekly": {"mon": "09:00-17:00"}, "holidays": ["2026-10-01"], "workdays": ["2026-10-01"]},
            "both holidays and workdays",
        ),
        ({"weekly": {"mon": "09:00-17:00"}, "chinese_holidays": True}, "chinese-calendar"),
        ({"weekly": {"mon": "09:00-17:00"}, "chinese_holidays": "yes"}, "true or false"),
        ({"weekly": {"mon": "09:00-17:00"}, "weekdays": {}}, "unknown key"),
    ],
)
def test_config_errors_name_the_field(config: dict[str, object], message: str) -> None:
    with pytest.raises(HoursConfigError, match=message):
        from_config(config)


def test_a_group_error_names_the_group() -> None:
    with pytest.raises(HoursConfigError, match=r"business_hours\.groups\.售后\.weekly\.sun"):
        group_hours_from_config({**SIX_BY_EIGHT, "groups": {"售后": {"weekly": {"sun": "bad"}}}})
