"""Business hours of the human service: weekly shifts with lunch breaks, holidays, 调休, time zone.

Outside these hours the bot still answers FAQs, but a handoff becomes a 留言 ticket and the customer is
told honestly when agents are back (`next_opening`). Config (the `business_hours:` section of
gateway.yaml, parsed by the gateway and passed here as plain data)::

    business_hours:
      timezone: Asia/Shanghai          # the default
      weekly:                          # days not listed are closed
        mon-fri: [08:30-12:00, 13:00-17:30]   # the lunch break is the gap
        sat: 08:30-12:00
        # a shift may cross midnight: "22:00-02:00" belongs to the day it starts on
      holidays: [2026-12-31, 2027-02-05~2027-02-12]   # closed all day (ranges with ~ or ..)
      workdays: [2027-02-14]           # open although the weekly schedule says closed
      workday_hours: [09:00-12:00, 13:00-18:00]   # hours on such days; default: Monday's hours
      chinese_holidays: true           # statutory holidays closed, 调休 weekends open (chinese_calendar)
      groups:                          # per skill group; each key overrides the ones above
        售后: {weekly: {mon-sun: [09:00-21:00]}}

Precedence for one date: `holidays` > `workdays` > the public calendar (holiday closed, 调休 working
day open) > the weekly schedule. A shift that starts on a holiday does not happen, even the part after
midnight. The public calendar is any `PublicCalendar` callable; the gateway wraps `chinese_calendar` (a
third-party package `handoff` must not import) and answers None for years the package does not know yet,
so such days follow the weekly schedule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "DEFAULT_TIMEZONE",
    "BusinessHours",
    "DayKind",
    "GroupHours",
    "HoursConfigError",
    "PublicCalendar",
    "Shift",
    "from_config",
    "group_hours_from_config",
]

DEFAULT_TIMEZONE = "Asia/Shanghai"
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CN_DAYS = "一二三四五六日"
# How far next_opening looks ahead: longer than any holiday season; a schedule that never opens gives None.
_HORIZON_DAYS = 400


class HoursConfigError(ValueError):
    """A business-hours setting that cannot be used; the message names the field and the allowed form."""


class DayKind(StrEnum):
    HOLIDAY = "holiday"  # closed all day
    WORKDAY = "workday"  # open although it may be a weekend (调休, an extra working day)


# What a public calendar says about a date: a holiday, a working day, or None = nothing special.
PublicCalendar = Callable[[date], DayKind | None]


@dataclass(frozen=True, slots=True, order=True)
class Shift:
    """One opening interval of a day, in minutes after that day's midnight; `end` may pass 24:00."""

    start: int  # 0 … 1439
    end: int  # start < end <= start + 1440; above 1440 the shift continues into the next day

    def __post_init__(self) -> None:
        if not (0 <= self.start < 1440 and self.start < self.end <= self.start + 1440):
            raise ValueError(f"invalid shift {self.start}–{self.end} (minutes after midnight)")

    @classmethod
    def parse(cls, text: str) -> Shift:
        """ "08:30-12:00" (also 8:30–12:00, 00:00-24:00; "22:00-02:00" runs past midnight)."""
        m = _SHIFT_RE.fullmatch(str(text).strip())
        if not m:
            raise ValueError(f"{text!r} is not a shift like 08:30-12:00")
        start = _minutes(m.group(1), m.group(2), allow_24=False)
        end = _minutes(m.group(3), m.group(4), allow_24=True)
        if start is None or end is None:
            raise ValueError(
                f"{text!r} has an impossible time (hours 0–23, minutes 0–59, or 24:00 as an end)"
            )
        if end == start:
            raise ValueError(f"{text!r} starts and ends at the same time")
        return cls(start, end if end > start else end + 1440)

    def __str__(self) -> str:
        end = self.end
        prefix = ""
        if end > 1440:
            end -= 1440
            prefix = "次日"
        return f"{self.start // 60:02d}:{self.start % 60:02d}-{prefix}{end // 60:02d}:{end % 60:02d}"


_SHIFT_RE = re.compile(r"(\d{1,2})[:：](\d{2})\s*[-–—~～至到]\s*(\d{1,2})[:：](\d{2})")


def _minutes(hours: str, minutes: str, *, allow_24: bool) -> int | None:
    h, m = int(hours), int(minutes)
    if allow_24 and h == 24 and m == 0:
        return 1440
    if 0 <= h <= 23 and 0 <= m <= 59:
        return h * 60 + m
    return None


def _aware(at: datetime, name: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got the naive datetime {at.isoformat()}")
    return at


@dataclass(frozen=True, slots=True)
class BusinessHours:
    """When agents serve: a weekly schedule in a time zone, with holidays and extra working days."""

    weekly: tuple[tuple[Shift, ...], ...]  # 7 entries, Monday first; () = closed that weekday
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_TIMEZONE))
    holidays: frozenset[date] = frozenset()
    workdays: frozenset[date] = frozenset()
    workday_hours: tuple[Shift, ...] | None = None  # hours on a workday the schedule leaves closed
    public_calendar: PublicCalendar | None = None

    def __post_init__(self) -> None:
        if len(self.weekly) != 7:
            raise ValueError(f"weekly must have 7 days (Monday first), got {len(self.weekly)}")
        object.__setattr__(self, "weekly", tuple(tuple(sorted(day)) for day in self.weekly))

    @classmethod
    def always_open(cls, timezone: str = DEFAULT_TIMEZONE) -> BusinessHours:
        """24 × 7 service (the behaviour without a `business_hours` section)."""
        return cls(weekly=((Shift(0, 1440),),) * 7, timezone=ZoneInfo(timezone))

    # -- one day -------------------------------------------------------------------------------------

    def day_kind(self, day: date) -> DayKind | None:
        """What is special about `day`: a holiday, a working day, or None (the weekly schedule applies)."""
        if day in self.holidays:
            return DayKind.HOLIDAY
        if day in self.workdays:
            return DayKind.WORKDAY
        if self.public_calendar is not None:
            return self.public_calendar(day)
        return None

    def shifts_on(self, day: date) -> tuple[Shift, ...]:
        """The shifts that start on `day` (local date)."""
        kind = self.day_kind(day)
        usual = self.weekly[day.weekday()]
        if kind is DayKind.HOLIDAY:
            return ()
        if kind is DayKind.WORKDAY and not usual:
            # A 调休 Sunday in a Monday–Friday team: worked like a normal working day.
            return self._workday_template()
        return usual

    def _workday_template(self) -> tuple[Shift, ...]:
        if self.workday_hours is not None:
            return self.workday_hours
        return next((day for day in self.weekly if day), ())

    # -- windows in time ---------------------------------------------------------------------------

    def _day_windows(self, day: date) -> Iterator[tuple[datetime, datetime]]:
        midnight = datetime(day.year, day.month, day.day, tzinfo=self.timezone)
        for shift in self.shifts_on(day):
            # Wall-clock arithmetic on the local midnight, then UTC: comparisons are then exact even
            # for zones with daylight saving (aware datetimes sharing a tzinfo compare by wall clock).
            start = (midnight + timedelta(minutes=shift.start)).astimezone(UTC)
            end = (midnight + timedelta(minutes=shift.end)).astimezone(UTC)
            yield start, end

    def _windows_from(self, at: datetime, days: int = _HORIZON_DAYS) -> Iterator[tuple[datetime, datetime]]:
        """Merged open windows (UTC) in start order, beginning with any that is open at or after `at`."""
        first_day = at.astimezone(self.timezone).date() - timedelta(days=1)  # yesterday's late shift
        pending: tuple[datetime, datetime] | None = None
        for offset in range(days + 2):
            for start, end in self._day_windows(first_day + timedelta(days=offset)):
                if pending is not None and start <= pending[1]:
                    pending = (pending[0], max(pending[1], end))
                    continue
                if pending is not None and pending[1] > at:
                    yield pending
                pending = (start, end)
        if pending is not None and pending[1] > at:
            yield pending

    def is_open(self, at: datetime) -> bool:
        """True when agents are on duty at `at` (an aware datetime)."""
        at = _aware(at, "at").astimezone(UTC)
        for start, _end in self._windows_from(at, days=1):
            return start <= at
        return False

    def next_opening(self, after: datetime) -> datetime | None:
        """The first moment at or after `after` when service is open (`after` itself while open), local time.

        None only when the schedule does not open within the next 400 days (e.g. every day closed).
        """
        after = _aware(after, "after").astimezone(UTC)
        for start, _end in self._windows_from(after):
            return max(start, after).astimezone(self.timezone)
        return None

    def next_closing(self, at: datetime) -> datetime | None:
        """When the current opening ends (local time), or None when closed at `at`."""
        at = _aware(at, "at").astimezone(UTC)
        for start, end in self._windows_from(at):
            return end.astimezone(self.timezone) if start <= at else None
        return None

    def open_time_between(self, start: datetime, end: datetime) -> timedelta:
        """How much of [start, end) falls inside business hours (SLA clocks that stop at night)."""
        start = _aware(start, "start").astimezone(UTC)
        end = _aware(end, "end").astimezone(UTC)
        total = timedelta(0)
        if end <= start:
            return total
        days = (end - start).days + 2
        for w_start, w_end in self._windows_from(start, days=days):
            if w_start >= end:
                break
            total += min(w_end, end) - max(w_start, start)
        return total

    def add_open_time(self, start: datetime, duration: timedelta) -> datetime | None:
        """The moment `duration` of business hours after `start` (local time); None beyond the horizon."""
        start = _aware(start, "start").astimezone(UTC)
        left = duration
        for w_start, w_end in self._windows_from(start):
            begin = max(w_start, start)
            if begin + left <= w_end:
                return (begin + left).astimezone(self.timezone)
            left -= w_end - begin
        return None

    @property
    def round_the_clock(self) -> bool:
        """True for 24 × 7 without holidays: there is no "outside the service hours" to speak of."""
        whole_days = all(day == (Shift(0, 1440),) for day in self.weekly)
        return whole_days and self.public_calendar is None and not self.holidays

    def describe(self) -> str:
        """The schedule as customers read it: 周一至周五 08:30-12:00、13:00-17:30；周六 08:30-12:00（法定节假日除外）."""
        if self.round_the_clock:
            return "每天 24 小时"
        parts: list[str] = []
        day = 0
        while day < 7:
            shifts = self.weekly[day]
            last = day
            while last + 1 < 7 and self.weekly[last + 1] == shifts:
                last += 1
            if shifts:
                days = f"周{_CN_DAYS[day]}" if day == last else f"周{_CN_DAYS[day]}至周{_CN_DAYS[last]}"
                if day == 0 and last == 6:
                    days = "每天"
                parts.append(f"{days} {'、'.join(str(s) for s in shifts)}")
            day = last + 1
        if not parts:
            return "暂无人工服务时间"
        text = "；".join(parts)
        if self.public_calendar is not None:
            text += "（法定节假日除外）"
        return text


@dataclass(frozen=True, slots=True)
class GroupHours:
    """Business hours per skill group, with the default for groups that have none of their own."""

    default: BusinessHours
    groups: Mapping[str, BusinessHours] = field(default_factory=dict)

    def for_group(self, group: str | None) -> BusinessHours:
        """The hours of `group` (the default when it has none)."""
        if group is not None and group in self.groups:
            return self.groups[group]
        return self.default


# -- config -------------------------------------------------------------------------------------------

_DAY_ALIASES: dict[str, int] = {}
for _i, _name in enumerate(DAY_NAMES):
    _DAY_ALIASES[_name] = _i
    _DAY_ALIASES[("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")[_i]] = _i
    for _prefix in ("周", "星期", "礼拜"):
        _DAY_ALIASES[f"{_prefix}{_CN_DAYS[_i]}"] = _i
    if _i == 6:
        for _prefix in ("周", "星期", "礼拜"):
            _DAY_ALIASES[f"{_prefix}天"] = 6
_EVERY_DAY = {"daily", "everyday", "every day", "每天", "每日", "all"}
_RANGE_SEP = re.compile(r"\s*(?:-|–|~|～|至|到)\s*")
_DATE_RANGE_SEP = re.compile(r"\s*(?:~|～|\.\.|至)\s*")
_CLOSED_WORDS = {"closed", "off", "休息", "不营业", "none"}
_KNOWN_KEYS = {"timezone", "weekly", "holidays", "workdays", "workday_hours", "chinese_holidays", "groups"}


def _days_of(key: object, path: str) -> list[int]:
    text = str(key).strip().lower()
    if text in _EVERY_DAY:
        return list(range(7))
    if text in _DAY_ALIASES:
        return [_DAY_ALIASES[text]]
    ends = _RANGE_SEP.split(text)
    if len(ends) == 2 and all(e in _DAY_ALIASES for e in ends):
        a, b = _DAY_ALIASES[ends[0]], _DAY_ALIASES[ends[1]]
        if a > b:
            raise HoursConfigError(
                f"{path}: day range {key!r} runs backwards; write it Monday first (mon-fri)"
            )
        return list(range(a, b + 1))
    raise HoursConfigError(
        f"{path}: unknown day {key!r}; use mon…sun, 周一…周日, a range like mon-fri / 周一至周五, or daily"
    )


def _shifts_of(value: object, path: str) -> tuple[Shift, ...]:
    if value is None or value is False:
        return ()
    if isinstance(value, str):
        if value.strip().lower() in _CLOSED_WORDS:
            return ()
        items: list[object] = [v for v in re.split(r"[,，、;；\s]+", value.strip()) if v]
    elif isinstance(value, Sequence):
        items = list(value)
    else:
        raise HoursConfigError(f"{path}: expected shifts like [08:30-12:00, 13:00-17:30], got {value!r}")
    shifts: list[Shift] = []
    for item in items:
        if isinstance(item, int):
            # YAML 1.1 reads an unquoted 8:30 as the base-60 number 510: a half shift, not a typo to guess at.
            raise HoursConfigError(f"{path}: {item!r} is not a shift; write start-end, e.g. 08:30-12:00")
        try:
            shifts.append(Shift.parse(str(item)))
        except ValueError as exc:
            raise HoursConfigError(f"{path}: {exc}") from None
    shifts.sort()
    for a, b in zip(shifts, shifts[1:], strict=False):
        if b.start < a.end:
            raise HoursConfigError(f"{path}: shifts {a} and {b} overlap")
    if shifts and shifts[-1].end - 1440 > shifts[0].start:
        raise HoursConfigError(f"{path}: shift {shifts[-1]} runs into the same day's {shifts[0]}")
    return tuple(shifts)


def _date_of(value: object, path: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise HoursConfigError(f"{path}: {value!r} is not a date like 2026-10-01") from None


def _dates_of(value: object, path: str) -> frozenset[date]:
    if value is None:
        return frozenset()
    if isinstance(value, str | date) or not isinstance(value, Sequence):
        raise HoursConfigError(f"{path}: expected a list of dates like [2026-10-01, 2026-10-02~2026-10-07]")
    days: set[date] = set()
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        if isinstance(item, str) and _DATE_RANGE_SEP.search(item.strip()):
            ends = _DATE_RANGE_SEP.split(item.strip())
            if len(ends) != 2:
                raise HoursConfigError(f"{where}: {item!r} is not a date range like 2026-10-01~2026-10-07")
            first_day, last_day = _date_of(ends[0], where), _date_of(ends[1], where)
            if last_day < first_day:
                raise HoursConfigError(f"{where}: date range {item!r} ends before it starts")
            if (last_day - first_day).days > 366:
                raise HoursConfigError(f"{where}: date range {item!r} is longer than a year")
            days.update(first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1))
        else:
            days.add(_date_of(item, where))
    return frozenset(days)


def from_config(
    data: Mapping[str, object],
    *,
    path: str = "business_hours",
    public_calendar: PublicCalendar | None = None,
) -> BusinessHours:
    """Business hours from the config mapping (see the module doc); HoursConfigError names the field."""
    if not isinstance(data, Mapping):
        raise HoursConfigError(f"{path}: expected a mapping with weekly/timezone/holidays, got {data!r}")
    unknown = sorted(str(k) for k in data if k not in _KNOWN_KEYS)
    if unknown:
        raise HoursConfigError(
            f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_KNOWN_KEYS))}"
        )
    tz_name = str(data.get("timezone") or DEFAULT_TIMEZONE)
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise HoursConfigError(
            f"{path}.timezone: unknown time zone {tz_name!r} (e.g. Asia/Shanghai)"
        ) from None
    weekly_raw = data.get("weekly")
    if not isinstance(weekly_raw, Mapping) or not weekly_raw:
        raise HoursConfigError(
            f"{path}.weekly: required, a mapping like {{mon-fri: [08:30-12:00, 13:00-17:30]}}"
        )
    weekly: list[tuple[Shift, ...] | None] = [None] * 7
    for key, value in weekly_raw.items():
        where = f"{path}.weekly.{key}"
        shifts = _shifts_of(value, where)
        for day in _days_of(key, where):
            if weekly[day] is not None:
                raise HoursConfigError(f"{where}: {DAY_NAMES[day]} is already set by another key")
            weekly[day] = shifts
    workday_hours = None
    if data.get("workday_hours") is not None:
        workday_hours = _shifts_of(data["workday_hours"], f"{path}.workday_hours")
    use_cn = data.get("chinese_holidays", False)
    if not isinstance(use_cn, bool):
        raise HoursConfigError(f"{path}.chinese_holidays: expected true or false, got {use_cn!r}")
    if use_cn and public_calendar is None:
        raise HoursConfigError(
            f"{path}.chinese_holidays: true needs the chinese-calendar package (pip install chinese-calendar)"
        )
    holidays = _dates_of(data.get("holidays"), f"{path}.holidays")
    workdays = _dates_of(data.get("workdays"), f"{path}.workdays")
    both = sorted(holidays & workdays)
    if both:
        raise HoursConfigError(f"{path}: {both[0].isoformat()} is listed in both holidays and workdays")
    return BusinessHours(
        weekly=tuple(day or () for day in weekly),
        timezone=tz,
        holidays=holidays,
        workdays=workdays,
        workday_hours=workday_hours,
        public_calendar=public_calendar if use_cn else None,
    )


def group_hours_from_config(
    data: Mapping[str, object] | None,
    *,
    path: str = "business_hours",
    public_calendar: PublicCalendar | None = None,
) -> GroupHours:
    """The default and per-group hours; no section at all means always open (24 × 7)."""
    if data is None:
        return GroupHours(default=BusinessHours.always_open())
    if not isinstance(data, Mapping):
        raise HoursConfigError(
            f"{path}: expected a mapping with weekly/timezone/holidays/groups, got {data!r}"
        )
    base = {k: v for k, v in data.items() if k != "groups"}
    default = from_config(base, path=path, public_calendar=public_calendar)
    groups_raw = data.get("groups") or {}
    if not isinstance(groups_raw, Mapping):
        raise HoursConfigError(f"{path}.groups: expected a mapping of group name → hours, got {groups_raw!r}")
    groups: dict[str, BusinessHours] = {}
    for name, override in groups_raw.items():
        where = f"{path}.groups.{name}"
        if not isinstance(override, Mapping):
            raise HoursConfigError(f"{where}: expected a mapping like {{weekly: {{mon-sun: [09:00-21:00]}}}}")
        if "groups" in override:
            raise HoursConfigError(f"{where}: groups cannot be nested")
        # A group inherits the time zone, holidays and calendar it does not set itself.
        groups[str(name)] = from_config({**base, **override}, path=where, public_calendar=public_calendar)
    return GroupHours(default=default, groups=groups)
