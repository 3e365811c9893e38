"""绩效: per-agent and per-group KPIs for a period, from plain rows the gateway reads from its tables.

Every metric reuses the one definition that already exists, so the KPI table, the 受理记录 and the
dashboard never disagree:
- a conversation is the agent's when the agent holds it in the 受理记录 (`ConversationRecord.agent_id`),
  it is counted in the period it started (handoff.reports);
- first-response and handling times are `ConversationRecord.times` (handoff.sla), the median and P90 as in
  `duration_stats` (the dashboard's definition: P90 = the sorted value at round(0.9 × (n − 1)));
- an SLA breach is a row whose `first_response_breached` is true in `reports.build_rows`;
- 留言 handled: a 留言 (`is_ticket`) that the agent took;
- CSAT average, count and 1–5 distribution over the ratings of the agent's conversations (handoff.csat);
- transfers out: the agent passed a conversation on; transfers in: one was passed to the agent;
- attendance: the shifts' `handoff.shifts.attendance` results; 质检: the scores of handoff.qa.
Groups aggregate the conversations routed to the group and the attendance and 质检 of their agents' shifts
in that group.
"""

from __future__ import annotations

import csv
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TextIO

from handoff.csat import RATING_LABELS
from handoff.hours import BusinessHours
from handoff.reports import ConversationRecord, build_rows, spreadsheet_safe
from handoff.shifts import Attendance, AttendanceStatus
from handoff.sla import SlaPolicy

__all__ = [
    "KPI_COLUMNS",
    "KpiRow",
    "QaResult",
    "Transfer",
    "agent_kpis",
    "duration_stats",
    "group_kpis",
    "kpi_table",
    "write_kpis_csv",
]


def duration_stats(values: Iterable[float]) -> dict[str, float | int | None]:
    """count, avg, p50 (median), p90 of durations in seconds (negative values dropped), rounded to 0.1."""
    data = sorted(v for v in values if v >= 0)
    if not data:
        return {"count": 0, "avg": None, "p50": None, "p90": None}
    p90 = data[min(len(data) - 1, int(round(0.9 * (len(data) - 1))))]
    return {
        "count": len(data),
        "avg": round(statistics.fmean(data), 1),
        "p50": round(statistics.median(data), 1),
        "p90": round(p90, 1),
    }


@dataclass(frozen=True, slots=True)
class Transfer:
    """A conversation passed from one agent to another agent or to a group's queue."""

    conversation_id: str
    from_agent: str | None
    to_agent: str | None = None
    to_group: str | None = None


@dataclass(frozen=True, slots=True)
class QaResult:
    """The 质检 score of one conversation of an agent."""

    conversation_id: str
    agent: str
    score: int
    flagged: bool = False
    group: str | None = None


@dataclass(frozen=True, slots=True)
class KpiRow:
    """The KPIs of one agent (or one group) for the period."""

    key: str  # agent id or group name
    name: str  # what people read: the agent's name or the group
    conversations: int = 0
    first_response: Mapping[str, float | int | None] = field(default_factory=dict)
    handling: Mapping[str, float | int | None] = field(default_factory=dict)
    messages: int = 0
    transfers_in: int = 0
    transfers_out: int = 0
    tickets_handled: int = 0
    sla_breaches: int = 0
    csat_average: float | None = None
    csat_count: int = 0
    csat_distribution: Mapping[int, int] = field(default_factory=dict)
    shifts: int = 0
    attendance: Mapping[str, int] = field(default_factory=dict)  # AttendanceStatus value → shifts
    scheduled_hours: float = 0.0
    online_hours: float = 0.0
    qa_average: float | None = None
    qa_count: int = 0
    qa_flagged: int = 0
    conversation_ids: tuple[str, ...] = ()  # for the drill-down

    def as_dict(self) -> dict[str, object]:
        """JSON-ready (durations in seconds)."""
        return {
            "key": self.key,
            "name": self.name,
            "conversations": self.conversations,
            "first_response_s": dict(self.first_response),
            "handling_s": dict(self.handling),
            "messages": self.messages,
            "transfers_in": self.transfers_in,
            "transfers_out": self.transfers_out,
            "tickets_handled": self.tickets_handled,
            "sla_breaches": self.sla_breaches,
            "csat": {
                "average": self.csat_average,
                "count": self.csat_count,
                "distribution": {str(k): v for k, v in self.csat_distribution.items()},
            },
            "attendance": {
                "shifts": self.shifts,
                **{str(k): v for k, v in self.attendance.items()},
                "scheduled_hours": self.scheduled_hours,
                "online_hours": self.online_hours,
            },
            "qa": {"average": self.qa_average, "count": self.qa_count, "flagged": self.qa_flagged},
            "conversation_ids": list(self.conversation_ids),
        }


_COUNTED_STATUSES = (
    AttendanceStatus.PRESENT,
    AttendanceStatus.LATE,
    AttendanceStatus.EARLY_LEAVE,
    AttendanceStatus.LATE_AND_EARLY,
    AttendanceStatus.ABSENT,
)


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def _build(
    key: str,
    name: str,
    recs: Sequence[ConversationRecord],
    breached: Mapping[str, bool | None],
    messages: int,
    t_in: int,
    t_out: int,
    shifts: Sequence[Attendance],
    qa: Sequence[QaResult],
) -> KpiRow:
    ratings = [r.rating for r in recs if r.rating is not None]
    statuses = Counter(a.status for a in shifts)
    return KpiRow(
        key=key,
        name=name,
        conversations=len(recs),
        first_response=duration_stats(
            s.total_seconds() for r in recs if (s := r.times.first_response) is not None
        ),
        handling=duration_stats(s.total_seconds() for r in recs if (s := r.times.handling) is not None),
        messages=messages,
        transfers_in=t_in,
        transfers_out=t_out,
        tickets_handled=sum(1 for r in recs if r.is_ticket),
        sla_breaches=sum(1 for r in recs if breached.get(r.conversation_id)),
        csat_average=_mean(ratings),
        csat_count=len(ratings),
        csat_distribution={n: ratings.count(n) for n in sorted(RATING_LABELS, reverse=True)},
        shifts=sum(statuses[s] for s in _COUNTED_STATUSES),
        attendance={s.value: statuses[s] for s in _COUNTED_STATUSES},
        scheduled_hours=round(
            sum(a.scheduled.total_seconds() for a in shifts if a.status in _COUNTED_STATUSES) / 3600, 2
        ),
        online_hours=round(sum(a.online.total_seconds() for a in shifts) / 3600, 2),
        qa_average=_mean([q.score for q in qa]),
        qa_count=len(qa),
        qa_flagged=sum(1 for q in qa if q.flagged),
        conversation_ids=tuple(r.conversation_id for r in recs),
    )


def _breaches(
    records: Sequence[ConversationRecord], sla: SlaPolicy | None, hours: BusinessHours | None, now: datetime
) -> dict[str, bool | None]:
    rows = build_rows(records, sla=sla, hours=hours, now=now, mask=False)
    return {row.conversation_id: row.first_response_breached for row in rows}


def agent_kpis(
    records: Iterable[ConversationRecord],
    *,
    now: datetime,
    agents: Mapping[str, str] | None = None,
    agent_messages: Mapping[str, int] | None = None,
    transfers: Iterable[Transfer] = (),
    attendance: Iterable[Attendance] = (),
    qa: Iterable[QaResult] = (),
    sla: SlaPolicy | None = None,
    hours: BusinessHours | None = None,
) -> list[KpiRow]:
    """One row per agent (those in `agents` id → name, and any who appear in the data), sorted by name.

    `agent_messages` counts the messages each agent wrote in the period; attendance is keyed by the
    shift's agent (the name or id the schedule uses; pass the same as `agents`' keys).
    """
    recs = [r for r in records if r.agent_id is not None]
    breached = _breaches(recs, sla, hours, now)
    names = dict(agents or {})
    for r in recs:
        names.setdefault(r.agent_id or "", r.agent_name or r.agent_id or "")
    by_agent: dict[str, list[ConversationRecord]] = defaultdict(list)
    for r in recs:
        by_agent[r.agent_id or ""].append(r)
    t_in: Counter[str] = Counter()
    t_out: Counter[str] = Counter()
    for t in transfers:
        if t.from_agent:
            t_out[t.from_agent] += 1
            names.setdefault(t.from_agent, t.from_agent)
        if t.to_agent:
            t_in[t.to_agent] += 1
            names.setdefault(t.to_agent, t.to_agent)
    shifts: dict[str, list[Attendance]] = defaultdict(list)
    for a in attendance:
        shifts[a.shift.agent].append(a)
        names.setdefault(a.shift.agent, a.shift.agent)
    scores: dict[str, list[QaResult]] = defaultdict(list)
    for q in qa:
        scores[q.agent].append(q)
        names.setdefault(q.agent, q.agent)
    msgs = agent_messages or {}
    rows = [
        _build(
            key,
            name,
            by_agent[key],
            breached,
            msgs.get(key, 0),
            t_in[key],
            t_out[key],
            shifts[key],
            scores[key],
        )
        for key, name in names.items()
    ]
    rows.sort(key=lambda row: (row.name, row.key))
    return rows


def group_kpis(
    records: Iterable[ConversationRecord],
    *,
    now: datetime,
    groups: Sequence[str] = (),
    agent_messages_by_group: Mapping[str, int] | None = None,
    transfers: Iterable[Transfer] = (),
    attendance: Iterable[Attendance] = (),
    qa: Iterable[QaResult] = (),
    sla: SlaPolicy | None = None,
    hours: BusinessHours | None = None,
) -> list[KpiRow]:
    """One row per skill group: its handed-off conversations, its shifts' attendance, its 质检 scores."""
    recs = [r for r in records if r.group is not None and r.handed_off_at is not None]
    breached = _breaches(recs, sla, hours, now)
    names = list(dict.fromkeys([*groups, *(r.group or "" for r in recs)]))
    transfers = list(transfers)
    rows = []
    for g in names:
        mine = [r for r in recs if r.group == g and r.agent_id is not None]
        rows.append(
            _build(
                g,
                g,
                mine,
                breached,
                (agent_messages_by_group or {}).get(g, 0),
                sum(1 for t in transfers if t.to_group == g),
                0,
                [a for a in attendance if a.shift.group == g],
                [q for q in qa if q.group == g],
            )
        )
    return rows


KPI_COLUMNS: tuple[str, ...] = (
    "客服",
    "接待会话数",
    "首次响应中位数(秒)",
    "首次响应P90(秒)",
    "平均处理时长(秒)",
    "消息数",
    "转入",
    "转出",
    "处理留言",
    "首响超时",
    "满意度均分",
    "评价数",
    "非常满意",
    "满意",
    "一般",
    "不满意",
    "非常不满意",
    "排班数",
    "迟到",
    "早退",
    "缺勤",
    "在线时长(小时)",
    "质检均分",
    "质检待复核",
)


def kpi_table(rows: Iterable[KpiRow]) -> list[tuple[str | int | float, ...]]:
    """The rows as KPI_COLUMNS values (for CSV and XLSX); empty cells are ""."""

    def cell(value: float | int | None) -> str | int | float:
        return "" if value is None else value

    out: list[tuple[str | int | float, ...]] = []
    for r in rows:
        out.append(
            (
                spreadsheet_safe(r.name),
                r.conversations,
                cell(r.first_response.get("p50")),
                cell(r.first_response.get("p90")),
                cell(r.handling.get("avg")),
                r.messages,
                r.transfers_in,
                r.transfers_out,
                r.tickets_handled,
                r.sla_breaches,
                cell(r.csat_average),
                r.csat_count,
                *(r.csat_distribution.get(n, 0) for n in (5, 4, 3, 2, 1)),
                r.shifts,
                r.attendance.get(AttendanceStatus.LATE.value, 0)
                + r.attendance.get(AttendanceStatus.LATE_AND_EARLY.value, 0),
                r.attendance.get(AttendanceStatus.EARLY_LEAVE.value, 0)
                + r.attendance.get(AttendanceStatus.LATE_AND_EARLY.value, 0),
                r.attendance.get(AttendanceStatus.ABSENT.value, 0),
                r.online_hours,
                cell(r.qa_average),
                r.qa_flagged,
            )
        )
    return out


def write_kpis_csv(rows: Iterable[KpiRow], out: TextIO, *, bom: bool = False) -> None:
    """The KPI table as CSV with Chinese headers; `bom` for Excel on Windows."""
    if bom:
        out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(KPI_COLUMNS)
    writer.writerows(kpi_table(rows))
