"""排班: agents' shifts per skill group, coverage against business hours, swap rules, attendance.

Pure: the gateway stores shifts and swaps and passes them here with the current time (`now` is always an
argument). A shift is one agent on duty for one skill group from `start` to `end` (aware datetimes, so a
shift across midnight is simply one that ends the next day), minus its `breaks` (a lunch break, as the gap
in `business_hours`). A weekly template (`weekly_from_config`) expands into such shifts for a given week.

Definitions (one each, used by the page, `kefu shifts check`, routing and the KPIs):
- covered: some agent of the group is on shift (inside a shift, outside its breaks);
- coverage gap: business hours of a group (handoff.hours) with nobody of the group on shift;
- a swap hands a shift to another agent; it is refused when the shift starts sooner than
  `swap_notice_days` from the request, when the requester already has `max_swaps_per_month` swaps
  (pending or approved) for shifts in the same calendar month, or when the colleague is on shift then;
- attendance compares a shift with the agent's presence (online or away): late when the first presence
  came more than `grace` after the start, early leave when the last ended more than `grace` before the
  end, absent when there was none during the shift.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

# The day and shift syntax of business_hours, so a schedule is written the same way as the hours it covers.
from handoff.hours import DEFAULT_TIMEZONE, GroupHours, HoursConfigError, _days_of, _shifts_of

__all__ = [
    "Attendance",
    "AttendanceStatus",
    "CoverageGap",
    "ShiftSpan",
    "SwapPolicy",
    "SwapRefusal",
    "SwapRequest",
    "agents_on_shift",
    "attendance",
    "check_swap",
    "coverage_gaps",
    "group_label",
    "is_on_shift",
    "next_shift_start",
    "prefer_on_shift",
    "week_start",
    "weekly_from_config",
]

_CN_DAYS = "一二三四五六日"
Interval = tuple[datetime, datetime]


def _aware(at: datetime, name: str) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got the naive datetime {at.isoformat()}")
    return at


@dataclass(frozen=True, slots=True)
class ShiftSpan:
    """One agent on duty for one group from `start` to `end`, except during `breaks`."""

    agent: str
    group: str
    start: datetime
    end: datetime
    breaks: tuple[Interval, ...] = ()
    id: str | None = None

    def __post_init__(self) -> None:
        _aware(self.start, "start")
        _aware(self.end, "end")
        if self.end <= self.start:
            raise ValueError(f"shift of {self.agent} ends ({self.end}) before it starts ({self.start})")
        if self.end - self.start > timedelta(hours=24):
            raise ValueError(f"shift of {self.agent} is longer than 24 hours")
        for b_start, b_end in self.breaks:
            _aware(b_start, "break start")
            if not (self.start <= b_start < b_end <= self.end):
                raise ValueError(f"break {b_start}–{b_end} lies outside the shift or ends before it starts")

    def working(self) -> list[Interval]:
        """The on-duty intervals: the shift with its breaks cut out."""
        return _subtract([(self.start, self.end)], list(self.breaks))

    def covers(self, at: datetime) -> bool:
        """True when the agent is on duty at `at` (inside the shift, not on a break)."""
        return any(s <= at < e for s, e in self.working())


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _subtract(base: Iterable[Interval], cut: Iterable[Interval]) -> list[Interval]:
    """The parts of `base` outside every interval of `cut`."""
    cuts = _merge(cut)
    out: list[Interval] = []
    for start, end in _merge(base):
        cursor = start
        for c_start, c_end in cuts:
            if c_end <= cursor or c_start >= end:
                continue
            if c_start > cursor:
                out.append((cursor, c_start))
            cursor = max(cursor, c_end)
        if cursor < end:
            out.append((cursor, end))
    return out


def group_label(group: str) -> str:
    """售后 → 售后组 (a name already ending in 组 stays as it is)."""
    return group if group.endswith("组") else f"{group}组"


# -- weekly template -----------------------------------------------------------------------------------


def week_start(day: date) -> date:
    """The Monday of the week holding `day`."""
    return day - timedelta(days=day.weekday())


def weekly_from_config(
    data: Mapping[str, object], monday: date, *, timezone: str = DEFAULT_TIMEZONE, path: str = "shifts"
) -> list[ShiftSpan]:
    """The shifts of the week starting `monday` from a template `{group: {agent: {mon-fri: [09:00-12:00, …]}}}`.

    The day keys and shift texts are those of `business_hours` (mon-fri, 周六, "22:00-02:00" across
    midnight); several shifts of one day with a gap between them are one shift with a break, as the
    lunch break in business hours. HoursConfigError names the field.
    """
    if monday.weekday() != 0:
        raise ValueError(f"{monday} is not a Monday")
    tz = ZoneInfo(timezone)
    if not isinstance(data, Mapping):
        raise HoursConfigError(f"{path}: expected a mapping of group → agent → days, got {data!r}")
    spans: list[ShiftSpan] = []
    for group, agents in data.items():
        if not isinstance(agents, Mapping):
            raise HoursConfigError(f"{path}.{group}: expected a mapping of agent → days, got {agents!r}")
        for agent, days in agents.items():
            where = f"{path}.{group}.{agent}"
            if not isinstance(days, Mapping):
                raise HoursConfigError(f"{where}: expected a mapping like {{mon-fri: [09:00-18:00]}}")
            for key, value in days.items():
                shifts = _shifts_of(value, f"{where}.{key}")
                if not shifts:
                    continue
                for weekday in _days_of(key, f"{where}.{key}"):
                    day = monday + timedelta(days=weekday)
                    midnight = datetime.combine(day, time(0), tzinfo=tz)

                    def at(minutes: int, midnight: datetime = midnight) -> datetime:
                        return midnight + timedelta(minutes=minutes)

                    breaks = tuple((at(a.end), at(b.start)) for a, b in zip(shifts, shifts[1:], strict=False))
                    spans.append(
                        ShiftSpan(str(agent), str(group), at(shifts[0].start), at(shifts[-1].end), breaks)
                    )
    spans.sort(key=lambda s: (s.start, s.group, s.agent))
    return spans


# -- coverage -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CoverageGap:
    """Business hours of `group` with nobody on shift, within one local day."""

    group: str
    start: datetime  # local time
    end: datetime

    def _span_text(self) -> str:
        # A gap that runs to midnight ends at 24:00 of its day, not 00:00.
        to_midnight = self.end.time() == time(0) and self.end.date() > self.start.date()
        return f"{self.start:%H:%M}–{'24:00' if to_midnight else format(self.end, '%H:%M')}"

    @property
    def text(self) -> str:
        """周六 21:00–22:00 售后组无人值班."""
        return f"周{_CN_DAYS[self.start.weekday()]} {self._span_text()} {group_label(self.group)}无人值班"

    @property
    def date_text(self) -> str:
        """The gap with its date: 12月12日（周六）21:00–22:00 售后组无人值班."""
        day = f"{self.start.month}月{self.start.day}日（周{_CN_DAYS[self.start.weekday()]}）"
        return f"{day}{self._span_text()} {group_label(self.group)}无人值班"


def _open_windows(hours: GroupHours, group: str, start: datetime, end: datetime) -> list[Interval]:
    bh = hours.for_group(group)
    windows: list[Interval] = []
    cursor = start
    while cursor < end:
        opening = bh.next_opening(cursor)
        if opening is None or opening >= end:
            break
        closing = bh.next_closing(opening) or end
        windows.append((opening, min(closing, end)))
        if closing <= opening:  # defensive: never loop on a zero-length window
            break
        cursor = closing
    return windows


def coverage_gaps(
    shifts: Iterable[ShiftSpan],
    hours: GroupHours,
    groups: Sequence[str],
    start: datetime,
    end: datetime,
    *,
    min_gap: timedelta = timedelta(minutes=1),
) -> list[CoverageGap]:
    """The coverage gaps of each group in [start, end), split at local midnight, in time then group order."""
    _aware(start, "start")
    _aware(end, "end")
    by_group: dict[str, list[Interval]] = {g: [] for g in groups}
    for span in shifts:
        if span.group in by_group:
            by_group[span.group].extend(span.working())
    gaps: list[CoverageGap] = []
    for group in groups:
        tz = hours.for_group(group).timezone
        for g_start, g_end in _subtract(_open_windows(hours, group, start, end), by_group[group]):
            local_start, local_end = g_start.astimezone(tz), g_end.astimezone(tz)
            while local_start < local_end:
                next_midnight = datetime.combine(local_start.date() + timedelta(days=1), time(0), tzinfo=tz)
                piece_end = min(local_end, next_midnight)
                if piece_end - local_start >= min_gap:
                    gaps.append(CoverageGap(group, local_start, piece_end))
                local_start = piece_end
    gaps.sort(key=lambda g: (g.start, list(groups).index(g.group)))
    return gaps


# -- who is on shift ------------------------------------------------------------------------------------


def is_on_shift(shifts: Iterable[ShiftSpan], agent: str, at: datetime, group: str | None = None) -> bool:
    """True when `agent` is on duty at `at` (for `group` when given)."""
    return any(s.agent == agent and (group is None or s.group == group) and s.covers(at) for s in shifts)


def agents_on_shift(shifts: Iterable[ShiftSpan], at: datetime, group: str | None = None) -> set[str]:
    """The agents on duty at `at` (of `group` when given)."""
    return {s.agent for s in shifts if (group is None or s.group == group) and s.covers(at)}


def prefer_on_shift(candidates: Sequence[str], on_shift: set[str]) -> list[str]:
    """`candidates` with those on shift first, each part in its original (policy) order.

    Routing asks the assignment policy for its order, then this: an online agent who is off shift still
    takes chats when nobody on shift can (better than a customer waiting), but only then.
    """
    return [c for c in candidates if c in on_shift] + [c for c in candidates if c not in on_shift]


def next_shift_start(shifts: Iterable[ShiftSpan], now: datetime, group: str | None = None) -> datetime | None:
    """When the next on-duty time of the group begins after `now` (a shift's start or a break's end).

    For the "暂无客服在线" notice: the customer is told when the next colleague is scheduled.
    """
    starts = [
        w_start
        for s in shifts
        if group is None or s.group == group
        for w_start, _w_end in s.working()
        if w_start > now
    ]
    return min(starts, default=None)


# -- swaps ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SwapPolicy:
    """The swap rules (settings `shifts.swap_notice_days`, `shifts.max_swaps_per_month`)."""

    swap_notice_days: int = 3
    max_swaps_per_month: int = 2

    def __post_init__(self) -> None:
        for name in ("swap_notice_days", "max_swaps_per_month"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"shifts.{name}: expected a whole number ≥ 0, got {value!r}")


@dataclass(frozen=True, slots=True)
class SwapRequest:
    """A swap already asked for: whose, for a shift starting when, and whether it still counts."""

    requester: str
    shift_start: datetime
    status: str = "pending"  # pending | approved | rejected; rejected ones do not count


@dataclass(frozen=True, slots=True)
class SwapRefusal:
    """Why a swap request is refused: a code and the rule in Chinese."""

    code: str
    message: str


def check_swap(
    shift: ShiftSpan,
    requester: str,
    with_agent: str,
    *,
    now: datetime,
    policy: SwapPolicy,
    earlier: Iterable[SwapRequest] = (),
    others: Iterable[ShiftSpan] = (),
    timezone: str | ZoneInfo = DEFAULT_TIMEZONE,
) -> SwapRefusal | None:
    """None when `requester` may ask `with_agent` to take `shift`, else the rule it breaks (in Chinese).

    `earlier` are the swap requests already made (any agent; only the requester's count), `others` the
    shifts of every agent (the colleague must be free then).
    """
    _aware(now, "now")
    tz = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
    if shift.agent != requester:
        return SwapRefusal("not_own_shift", "只能申请调换自己的班次")
    if with_agent == requester:
        return SwapRefusal("same_agent", "不能与自己调班，请选择其他同事")
    if shift.start <= now:
        return SwapRefusal("started", "该班次已开始或已结束，不能再调班")
    notice = timedelta(days=policy.swap_notice_days)
    if shift.start - now < notice:
        return SwapRefusal(
            "notice",
            f"调班需提前 {policy.swap_notice_days} 天申请：该班次于 "
            f"{_local_text(shift.start, tz)} 开始，距现在已不足 {policy.swap_notice_days} 天",
        )
    month = _month(shift.start, tz)
    used = sum(
        1
        for r in earlier
        if r.requester == requester and r.status != "rejected" and _month(r.shift_start, tz) == month
    )
    if used >= policy.max_swaps_per_month:
        return SwapRefusal(
            "monthly_limit",
            f"每月最多允许调班 {policy.max_swaps_per_month} 次：您 {month[0]}年{month[1]}月 已申请 {used} 次",
        )
    for other in others:
        if other.agent == with_agent and other.start < shift.end and shift.start < other.end:
            return SwapRefusal(
                "busy", f"{with_agent} 在 {_local_text(other.start, tz)} 已有班次，时间冲突，请选择其他同事"
            )
    return None


def _month(at: datetime, tz: ZoneInfo) -> tuple[int, int]:
    local = at.astimezone(tz)
    return local.year, local.month


def _local_text(at: datetime, tz: ZoneInfo) -> str:
    local = at.astimezone(tz)
    return f"{local.month}月{local.day}日（周{_CN_DAYS[local.weekday()]}）{local:%H:%M}"


# -- attendance ---------------------------------------------------------------------------------------


class AttendanceStatus(StrEnum):
    PRESENT = "正常"
    LATE = "迟到"
    EARLY_LEAVE = "早退"
    LATE_AND_EARLY = "迟到且早退"
    ABSENT = "缺勤"
    UPCOMING = "未开始"


@dataclass(frozen=True, slots=True)
class Attendance:
    """One shift compared with the agent's presence."""

    shift: ShiftSpan
    status: AttendanceStatus
    late_by: timedelta = timedelta(0)
    left_early_by: timedelta = timedelta(0)
    online: timedelta = timedelta(0)  # presence inside the on-duty intervals
    scheduled: timedelta = field(default=timedelta(0))

    @property
    def ratio(self) -> float:
        """Share of the scheduled time the agent was present, 0–1."""
        total = self.scheduled.total_seconds()
        return round(self.online.total_seconds() / total, 4) if total else 0.0


def attendance(
    shift: ShiftSpan,
    presence: Iterable[Interval],
    *,
    now: datetime,
    grace: timedelta = timedelta(minutes=5),
) -> Attendance:
    """How the agent kept `shift`, from their presence intervals (online or away; open ones end at `now`).

    A shift still running is judged up to `now` (no early leave yet); one in the future is UPCOMING.
    """
    _aware(now, "now")
    working = shift.working()
    scheduled = sum((e - s for s, e in working), timedelta(0))
    if now <= shift.start:
        return Attendance(shift, AttendanceStatus.UPCOMING, scheduled=scheduled)
    until = min(now, shift.end)
    seen = [(max(s, shift.start), min(e, until)) for s, e in _merge(presence)]
    seen = [(s, e) for s, e in seen if s < e]
    online = sum(
        (min(e, we) - max(s, ws) for s, e in seen for ws, we in working if max(s, ws) < min(e, we)),
        timedelta(0),
    )
    if not seen:
        if now < shift.start + grace:
            return Attendance(shift, AttendanceStatus.UPCOMING, scheduled=scheduled)
        return Attendance(shift, AttendanceStatus.ABSENT, scheduled=scheduled)
    late_by = seen[0][0] - shift.start
    left_early_by = shift.end - seen[-1][1] if now >= shift.end else timedelta(0)
    late = late_by > grace
    early = left_early_by > grace
    status = (
        AttendanceStatus.LATE_AND_EARLY
        if late and early
        else AttendanceStatus.LATE
        if late
        else AttendanceStatus.EARLY_LEAVE
        if early
        else AttendanceStatus.PRESENT
    )
    return Attendance(
        shift,
        status,
        late_by=late_by if late else timedelta(0),
        left_early_by=left_early_by if early else timedelta(0),
        online=online,
        scheduled=scheduled,
    )
