"""The 受理记录 (one row per conversation) and its aggregates, from plain conversation records.

Pure: the gateway builds `ConversationRecord`s from its tables (gateway/storage/report_queries.py) and
writes the files (CSV here, XLSX in gateway/report_files.py); everything counted is decided here, once.
Definitions (written down because reports are argued over):
- A conversation is counted on the local date/hour it started (`started_at` in the report time zone).
- Handled by: 人工 when an agent took it; 留言 when it was handed off as a ticket and no agent took it;
  转人工未接入 when handed off live and no agent took it; otherwise 机器人.
- Handed off, bot-resolved and their rates: `handoff/metrics.py`, the one definition the admin dashboard
  shares (bot-resolved: no handoff, an FAQ answer, no human request from the same customer within
  `recontact_window` after).
- First-response breach: a live handoff (not a 留言) whose first agent reply came after
  `sla.first_response_due` — or has not come by the conversation's end / the report time.
- Follow-up overdue: a follow-up due time that passed before the follow-up was closed (or still open).
- Text written out (customer name, questions) goes through `mask_sensitive` unless `mask=False`.
"""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import TextIO
from zoneinfo import ZoneInfo

from handoff.csat import rating_label
from handoff.hours import DEFAULT_TIMEZONE, BusinessHours
from handoff.metrics import HUMAN_REQUEST_REASONS, RECONTACT_WINDOW, bot_resolved_ids, conversation_rates
from handoff.privacy import mask_sensitive
from handoff.questions import (
    UnansweredCluster,
    cluster_questions,
    cluster_questions_capped,
    default_normalize,
)
from handoff.sla import ConversationTimes, SlaPolicy, breached, first_response_due

__all__ = [
    "CHANNEL_LABELS",
    "HANDOFF_REASON_LABELS",
    "HUMAN_REQUEST_REASONS",
    "RECORD_COLUMNS",
    "ConversationRecord",
    "FaqHit",
    "HandledBy",
    "RecordRow",
    "ReportSummary",
    "SatisfactionStats",
    "UnansweredCluster",
    "build_rows",
    "year_problem",
    "parse_bound",
    "cluster_questions",
    "default_normalize",
    "summarize",
    "spreadsheet_safe",
    "summary_table",
    "write_records_csv",
]

CHANNEL_LABELS = {"wechat": "微信公众号", "qq": "QQ", "web": "网站"}
HANDOFF_REASON_LABELS = {
    "asked_human": "客户要求转人工",
    "complaint": "投诉",
    "no_match": "机器人未能解答",
    "misses": "连续未能解答",
    "no_kb": "知识库不可用",
}
CLOSE_REASON_LABELS = {
    "agent": "客服已结束",
    "customer": "客户已结束",
    "idle": "超时自动结束",
    "back_to_bot": "转回机器人",
}


class HandledBy(StrEnum):
    BOT = "机器人"
    AGENT = "人工"
    TICKET = "留言"
    UNSERVED = "转人工未接入"


@dataclass(frozen=True, slots=True)
class FaqHit:
    """One FAQ answer the bot gave: the entry id and its standard question."""

    entry_id: str
    question: str = ""


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    """What the report needs of one conversation; times are aware datetimes (UTC from storage)."""

    conversation_id: str
    started_at: datetime
    channel: str
    customer_id: str
    customer_name: str = ""
    first_question: str = ""  # the customer's first text
    ended_at: datetime | None = None
    category: str | None = None
    faq_hits: tuple[FaqHit, ...] = ()
    unanswered: tuple[str, ...] = ()  # customer texts the bot could not answer
    handoff_reason: str | None = None
    handed_off_at: datetime | None = None
    is_ticket: bool = False  # the handoff became a 留言
    group: str | None = None
    agent_id: str | None = None
    agent_name: str | None = None
    assigned_at: datetime | None = None
    first_agent_reply_at: datetime | None = None
    human_ended_at: datetime | None = None
    close_reason: str | None = None
    rating: int | None = None
    tags: tuple[str, ...] = ()
    follow_up_due_at: datetime | None = None
    follow_up_closed_at: datetime | None = None

    @property
    def times(self) -> ConversationTimes:
        """The SLA timestamps of this conversation."""
        return ConversationTimes(
            opened_at=self.started_at,
            handed_off_at=self.handed_off_at,
            assigned_at=self.assigned_at,
            first_agent_reply_at=self.first_agent_reply_at,
            ended_at=self.human_ended_at if self.handed_off_at is not None else self.ended_at,
        )

    @property
    def handled_by(self) -> HandledBy:
        """Who served the customer (see the module doc)."""
        if self.agent_id is not None:
            return HandledBy.AGENT
        if self.handed_off_at is not None:
            return HandledBy.TICKET if self.is_ticket else HandledBy.UNSERVED
        return HandledBy.BOT


RECORD_COLUMNS: tuple[str, ...] = (
    "会话编号",
    "受理时间",
    "结束时间",
    "渠道",
    "客户",
    "咨询内容",
    "分类",
    "FAQ条目",
    "处理方式",
    "技能组",
    "客服",
    "转人工原因",
    "等待时长(秒)",
    "首次响应时长(秒)",
    "处理时长(秒)",
    "首响超时",
    "处理结果",
    "满意度",
    "满意度评价",
    "标签",
)

Cell = str | int | datetime | None


@dataclass(frozen=True, slots=True)
class RecordRow:
    """One 受理记录 row: `values` in RECORD_COLUMNS order (datetimes local and naive, durations in seconds)."""

    conversation_id: str
    values: tuple[Cell, ...]
    bot_resolved: bool
    first_response_breached: bool | None  # None when there was no live handoff

    def as_dict(self) -> dict[str, Cell]:
        """Column header → value."""
        return dict(zip(RECORD_COLUMNS, self.values, strict=True))


def _seconds(span: timedelta | None) -> int | None:
    return None if span is None else round(span.total_seconds())


def _local(at: datetime | None, tz: ZoneInfo) -> datetime | None:
    # Spreadsheets have no time zones: the local wall clock, without tzinfo, is what people read.
    return None if at is None else at.astimezone(tz).replace(tzinfo=None, microsecond=0)


def _breached(
    r: ConversationRecord, sla: SlaPolicy, hours: BusinessHours | None, now: datetime
) -> bool | None:
    if r.handed_off_at is None or r.is_ticket:
        return None
    due = first_response_due(r.handed_off_at, sla, hours)
    # An ended conversation is judged at its end; an open one at the report time.
    until = r.human_ended_at or r.ended_at or now
    return breached(due, r.first_agent_reply_at, until)


def _result(r: ConversationRecord, bot_resolved: bool) -> str:
    if r.handed_off_at is None:
        if bot_resolved:
            return "机器人已解答"
        # Answered, yet the customer asked for a human soon after: not counted as resolved.
        return "未解答" if not r.faq_hits else "解答后仍转人工"
    if r.close_reason in CLOSE_REASON_LABELS:
        return CLOSE_REASON_LABELS[r.close_reason]
    if r.is_ticket and r.agent_id is None:
        return "留言待处理"
    if r.agent_id is None:
        return "排队中" if r.ended_at is None else "客户已离开"
    return "处理中" if r.human_ended_at is None else "已结束"


def build_rows(
    records: Iterable[ConversationRecord],
    *,
    tz: ZoneInfo | str = DEFAULT_TIMEZONE,
    sla: SlaPolicy | None = None,
    hours: BusinessHours | None = None,
    now: datetime,
    recontact_window: timedelta = RECONTACT_WINDOW,
    mask: bool = True,
) -> list[RecordRow]:
    """The 受理记录, one row per conversation in start order; text masked unless `mask=False`."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    policy = sla or SlaPolicy()
    ordered = sorted(records, key=lambda r: (r.started_at, r.conversation_id))
    resolved = bot_resolved_ids(ordered, recontact_window)
    clean = mask_sensitive if mask else (lambda s: s)
    rows: list[RecordRow] = []
    for r in ordered:
        times = r.times
        late = _breached(r, policy, hours, now)
        bot_ok = r.conversation_id in resolved
        faq = "；".join(dict.fromkeys(h.question or h.entry_id for h in r.faq_hits))
        values: tuple[Cell, ...] = (
            r.conversation_id,
            _local(r.started_at, zone),
            _local(r.ended_at, zone),
            CHANNEL_LABELS.get(r.channel, r.channel),
            clean(r.customer_name or r.customer_id),
            clean(r.first_question),
            r.category or "",
            faq,
            r.handled_by.value,
            r.group or "",
            r.agent_name or r.agent_id or "",
            HANDOFF_REASON_LABELS.get(r.handoff_reason or "", r.handoff_reason or ""),
            _seconds(times.waiting),
            _seconds(times.first_response),
            _seconds(times.handling),
            "" if late is None else ("是" if late else "否"),
            _result(r, bot_ok),
            r.rating,
            rating_label(r.rating) if r.rating is not None else "",
            "、".join(r.tags),
        )
        rows.append(RecordRow(r.conversation_id, values, bot_ok, late))
    return rows


# -- report range ---------------------------------------------------------------------------------------


# The years a report, schedule or 质检 range may name. Outside them the datetime arithmetic that follows
# overflows (0001-01-01 in UTC+8 is before year 1 in UTC, 9999-12-31 has no next day), and no record of
# a customer-service system lies there anyway.
EARLIEST_YEAR, LATEST_YEAR = 1970, 2999


def year_problem(moment: datetime | date, name: str) -> str | None:
    """What is wrong with `moment` for `name` when it lies outside EARLIEST_YEAR…LATEST_YEAR, else None."""
    if EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        return None
    return f"{name}: the year {moment.year} is outside {EARLIEST_YEAR}-{LATEST_YEAR}"


def parse_bound(value: str | None, tz: ZoneInfo, *, end: bool) -> datetime | None:
    """A --from/--to value in the report time zone; a bare date as --to means the end of that day."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    name = "--to" if end else "--from"
    bare_date = len(text) == 10
    try:
        moment = (
            datetime.combine(date.fromisoformat(text), time(0)) if bare_date else datetime.fromisoformat(text)
        )
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not a date (2026-11-24) or time (2026-11-24T09:00)") from None
    if problem := year_problem(moment, name):  # before any arithmetic: it would overflow out there
        raise ValueError(problem)
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)
    return moment + timedelta(days=1) if bare_date and end else moment


# -- aggregates -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SatisfactionStats:
    """Average rating and number of ratings, overall and per agent and group, with the 1–5 distribution."""

    average: float | None
    count: int
    by_agent: dict[str, tuple[float, int]] = field(default_factory=dict)
    by_group: dict[str, tuple[float, int]] = field(default_factory=dict)
    distribution: dict[int, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ReportSummary:
    """The aggregates of a report period (see the module doc for each definition)."""

    total: int
    by_hour: tuple[int, ...]  # 24 counts, local hour the conversation started
    by_channel: dict[str, int]
    by_hour_channel: dict[tuple[int, str], int]
    bot_resolved: int
    bot_resolution_rate: float
    handed_off: int
    tickets: int
    handoff_reasons: dict[str, int]
    top_faq: list[tuple[str, str, int]]  # (entry id, question, answers)
    top_unanswered: list[UnansweredCluster]
    first_response_breaches: list[str]  # conversation ids
    follow_up_overdue: list[str]
    avg_waiting_s: float | None
    avg_first_response_s: float | None
    avg_handling_s: float | None
    satisfaction: SatisfactionStats
    unanswered_truncated: bool = False  # the clustering cap (questions.MAX_WORDINGS) dropped rare wordings


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def _rating_stats(pairs: Iterable[tuple[str, int]]) -> dict[str, tuple[float, int]]:
    grouped: dict[str, list[int]] = defaultdict(list)
    for key, rating in pairs:
        grouped[key].append(rating)
    return {k: (round(sum(v) / len(v), 2), len(v)) for k, v in sorted(grouped.items())}


def summarize(
    records: Iterable[ConversationRecord],
    *,
    tz: ZoneInfo | str = DEFAULT_TIMEZONE,
    sla: SlaPolicy | None = None,
    hours: BusinessHours | None = None,
    now: datetime,
    recontact_window: timedelta = RECONTACT_WINDOW,
    normalize: Callable[[str], str] = default_normalize,
    top: int = 10,
    mask: bool = True,
) -> ReportSummary:
    """Volume, bot resolution, handoffs, top FAQ and unanswered questions, SLA breaches, satisfaction."""
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    recs = sorted(records, key=lambda r: (r.started_at, r.conversation_id))
    rows = build_rows(
        recs, tz=zone, sla=sla, hours=hours, now=now, recontact_window=recontact_window, mask=mask
    )
    by_hour = [0] * 24
    by_channel: Counter[str] = Counter()
    by_hour_channel: Counter[tuple[int, str]] = Counter()
    reasons: Counter[str] = Counter()
    faq: Counter[str] = Counter()
    faq_question: dict[str, str] = {}
    unanswered: list[str] = []
    waiting: list[float] = []
    first: list[float] = []
    handling: list[float] = []
    for r in recs:
        hour = r.started_at.astimezone(zone).hour
        by_hour[hour] += 1
        by_channel[r.channel] += 1
        by_hour_channel[(hour, r.channel)] += 1
        if r.handed_off_at is not None:
            reasons[r.handoff_reason or "other"] += 1
        for hit in r.faq_hits:
            faq[hit.entry_id] += 1
            if hit.question:
                faq_question.setdefault(hit.entry_id, hit.question)
        unanswered.extend(mask_sensitive(t) if mask else t for t in r.unanswered)
        times = r.times
        for bucket, span in (
            (waiting, times.waiting),
            (first, times.first_response),
            (handling, times.handling),
        ):
            if span is not None:
                bucket.append(span.total_seconds())
    overdue = [
        r.conversation_id
        for r in recs
        if r.follow_up_due_at is not None and (r.follow_up_closed_at or now) > r.follow_up_due_at
    ]
    rated = [r for r in recs if r.rating is not None]
    ratings = [r.rating for r in rated if r.rating is not None]
    satisfaction = SatisfactionStats(
        average=_mean(ratings),
        count=len(ratings),
        by_agent=_rating_stats(
            (r.agent_name or r.agent_id or "", r.rating) for r in rated if r.agent_id and r.rating
        ),
        by_group=_rating_stats((r.group, r.rating) for r in rated if r.group and r.rating),
        distribution={n: ratings.count(n) for n in range(5, 0, -1)},
    )
    rates = conversation_rates(recs, recontact_window)  # the dashboard's figures too (handoff/metrics.py)
    top_unanswered, truncated = cluster_questions_capped(unanswered, normalize=normalize, limit=top)
    return ReportSummary(
        total=rates.total,
        by_hour=tuple(by_hour),
        by_channel=dict(sorted(by_channel.items(), key=lambda kv: (-kv[1], kv[0]))),
        by_hour_channel=dict(sorted(by_hour_channel.items())),
        bot_resolved=rates.bot_resolved,
        bot_resolution_rate=rates.bot_resolution_rate or 0.0,
        handed_off=rates.handed_off,
        tickets=sum(1 for r in recs if r.is_ticket),
        handoff_reasons=dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        top_faq=[
            (eid, faq_question.get(eid, ""), n)
            for eid, n in sorted(faq.items(), key=lambda kv: (-kv[1], kv[0]))
        ][:top],
        top_unanswered=top_unanswered,
        unanswered_truncated=truncated,
        first_response_breaches=[row.conversation_id for row in rows if row.first_response_breached],
        follow_up_overdue=overdue,
        avg_waiting_s=_mean(waiting),
        avg_first_response_s=_mean(first),
        avg_handling_s=_mean(handling),
        satisfaction=satisfaction,
    )


def summary_table(summary: ReportSummary) -> list[tuple[str, str, str | int | float]]:
    """The summary as (section, item, value) rows, for the XLSX 汇总 sheet or a CSV."""
    out: list[tuple[str, str, str | int | float]] = [
        ("总量", "会话数", summary.total),
        ("总量", "转人工", summary.handed_off),
        ("总量", "留言", summary.tickets),
        ("机器人", "机器人解决数", summary.bot_resolved),
        ("机器人", "机器人解决率", summary.bot_resolution_rate),
    ]
    out += [("渠道", CHANNEL_LABELS.get(ch, ch), n) for ch, n in summary.by_channel.items()]
    out += [("时段", f"{h:02d}:00-{h:02d}:59", n) for h, n in enumerate(summary.by_hour) if n]
    out += [("转人工原因", HANDOFF_REASON_LABELS.get(k, k), n) for k, n in summary.handoff_reasons.items()]
    out += [("热门FAQ", q or eid, n) for eid, q, n in summary.top_faq]
    out += [("未解答问题", c.text, c.count) for c in summary.top_unanswered]
    out += [
        ("时效", "平均等待时长(秒)", summary.avg_waiting_s if summary.avg_waiting_s is not None else ""),
        (
            "时效",
            "平均首次响应时长(秒)",
            summary.avg_first_response_s if summary.avg_first_response_s is not None else "",
        ),
        ("时效", "平均处理时长(秒)", summary.avg_handling_s if summary.avg_handling_s is not None else ""),
        ("时效", "首响超时", len(summary.first_response_breaches)),
        ("时效", "回访逾期", len(summary.follow_up_overdue)),
    ]
    sat = summary.satisfaction
    out.append(("满意度", "平均分", sat.average if sat.average is not None else ""))
    out.append(("满意度", "评价数", sat.count))
    out += [("满意度", f"{n}分 {rating_label(n)}", c) for n, c in sat.distribution.items()]
    out += [("客服满意度", agent, avg) for agent, (avg, _n) in sat.by_agent.items()]
    out += [("技能组满意度", group, avg) for group, (avg, _n) in sat.by_group.items()]
    return out


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """Customer text that a spreadsheet would run as a formula ("=HYPERLINK(…)") gets a leading apostrophe."""
    return "'" + text if text.startswith(_FORMULA_START) else text


def _csv_cell(value: Cell) -> str | int:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, str):
        return spreadsheet_safe(value)
    return value


def write_records_csv(rows: Iterable[RecordRow], out: TextIO, *, bom: bool = False) -> None:
    """Write the 受理记录 as CSV with Chinese headers; `bom` for files opened by Excel on Windows."""
    if bom:
        out.write("\ufeff")
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(RECORD_COLUMNS)
    for row in rows:
        writer.writerow([_csv_cell(v) for v in row.values])
