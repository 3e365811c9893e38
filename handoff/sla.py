"""Service-level timers: waiting, first-response, handling and resolution times, deadlines and breaches.

The norms written down once (the 受理记录 and the supervisor's view both read them from here):
- waiting time (等待时长): handoff → an agent takes the conversation;
- first-response time (首次响应时长): handoff → the agent's first message to the customer;
- handling time (处理时长): taken → the human part ends;
- resolution time (解决时长): handoff → the human part ends (bot-only: first message → end).
The first-response clock starts at the handoff, or at the next opening when the handoff came outside
business hours (a 留言 left at night is not late at 08:31). If no agent has replied when it runs out, the
customer gets `BUSY_NOTICE` once and the supervisor sees a breach; "once" is the store's job (a
compare-and-set on the conversation's notice time), this module only says whether it is due.
Complaints get a follow-up ticket due `follow_up` after it is opened (optionally counting only business
hours); an open ticket past its due time is overdue (shown red).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from handoff.hours import BusinessHours

__all__ = [
    "BUSY_NOTICE",
    "ConversationTimes",
    "Deadlined",
    "SlaPolicy",
    "TicketKind",
    "breached",
    "first_response_due",
    "follow_up_due",
    "is_overdue",
    "overdue_by",
    "should_send_busy_notice",
]

# Said once when the first-response time runs out (客服正忙，请稍候), with an apology and a promise.
BUSY_NOTICE = "您好，客服正忙，请稍候，我们会尽快回复您，感谢您的耐心等待。"


class TicketKind(StrEnum):
    MESSAGE = "message"  # 留言: a handoff outside business hours or while nobody was online
    FOLLOW_UP = "follow_up"  # 回访: a complaint that must be followed up before a deadline


@dataclass(frozen=True, slots=True)
class SlaPolicy:
    """The timers of the service norms (config `sla:` in gateway.yaml)."""

    first_response: timedelta = timedelta(seconds=60)
    follow_up: timedelta = timedelta(hours=24)
    follow_up_business_time: bool = False  # count the follow-up deadline in business hours only

    def __post_init__(self) -> None:
        if self.first_response <= timedelta(0):
            raise ValueError(f"sla.first_response_s must be positive, got {self.first_response}")
        if self.follow_up <= timedelta(0):
            raise ValueError(f"sla.follow_up_hours must be positive, got {self.follow_up}")

    @classmethod
    def from_config(cls, data: Mapping[str, object] | None, *, path: str = "sla") -> SlaPolicy:
        """From `{first_response_s: 60, follow_up_hours: 24, follow_up_business_time: false}`."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ValueError(f"{path}: expected a mapping, got {data!r}")
        allowed = {"first_response_s", "follow_up_hours", "follow_up_business_time"}
        unknown = sorted(str(k) for k in data if k not in allowed)
        if unknown:
            raise ValueError(
                f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
            )

        def number(key: str, default: float) -> float:
            value = data.get(key, default)
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ValueError(f"{path}.{key}: expected a positive number, got {value!r}")
            return float(value)

        business = data.get("follow_up_business_time", False)
        if not isinstance(business, bool):
            raise ValueError(f"{path}.follow_up_business_time: expected true or false, got {business!r}")
        return cls(
            first_response=timedelta(seconds=number("first_response_s", 60)),
            follow_up=timedelta(hours=number("follow_up_hours", 24)),
            follow_up_business_time=business,
        )


def _span(start: datetime | None, end: datetime | None) -> timedelta | None:
    if start is None or end is None:
        return None
    # Clocks of two processes can disagree by a little; a negative span would only confuse the report.
    return max(end - start, timedelta(0))


@dataclass(frozen=True, slots=True)
class ConversationTimes:
    """The timestamps of one conversation the SLA times are computed from (aware datetimes)."""

    opened_at: datetime
    handed_off_at: datetime | None = None
    assigned_at: datetime | None = None
    first_agent_reply_at: datetime | None = None
    ended_at: datetime | None = None  # end of the human part, or of the conversation when bot-only

    @property
    def waiting(self) -> timedelta | None:
        """Handoff → taken by an agent (None when never taken)."""
        return _span(self.handed_off_at, self.assigned_at)

    @property
    def first_response(self) -> timedelta | None:
        """Handoff → the agent's first message (None when no agent wrote)."""
        return _span(self.handed_off_at, self.first_agent_reply_at)

    @property
    def handling(self) -> timedelta | None:
        """Taken → the human part ended."""
        return _span(self.assigned_at, self.ended_at)

    @property
    def resolution(self) -> timedelta | None:
        """Handoff → end; for a bot-only conversation first message → end."""
        return _span(self.handed_off_at or self.opened_at, self.ended_at)


def first_response_due(
    handed_off_at: datetime, policy: SlaPolicy, hours: BusinessHours | None = None
) -> datetime:
    """When the first agent reply is due: `policy.first_response` after the handoff or the next opening."""
    start = handed_off_at
    if hours is not None:
        # A schedule that never opens again has no due time worth measuring; keep the plain clock.
        start = hours.next_opening(handed_off_at) or handed_off_at
    return start + policy.first_response


def breached(due: datetime, responded_at: datetime | None, now: datetime) -> bool:
    """True when the response came after `due`, or has not come and `now` is past it."""
    return (responded_at if responded_at is not None else now) > due


def should_send_busy_notice(
    times: ConversationTimes,
    *,
    notice_sent_at: datetime | None,
    now: datetime,
    policy: SlaPolicy,
    is_ticket: bool = False,
    hours: BusinessHours | None = None,
) -> bool:
    """Whether the first-response job sends BUSY_NOTICE now: handed off, no agent reply, due, not sent yet.

    Never for a 留言 ticket: its customer was already told when service resumes.
    """
    if is_ticket or notice_sent_at is not None or times.handed_off_at is None:
        return False
    if times.first_agent_reply_at is not None or times.ended_at is not None:
        return False
    return now >= first_response_due(times.handed_off_at, policy, hours)


def follow_up_due(created_at: datetime, policy: SlaPolicy, hours: BusinessHours | None = None) -> datetime:
    """The deadline of a complaint's follow-up ticket opened at `created_at`."""
    if policy.follow_up_business_time and hours is not None:
        due = hours.add_open_time(created_at, policy.follow_up)
        if due is not None:
            return due
    return created_at + policy.follow_up


class Deadlined(Protocol):
    """Anything with a deadline and an end (a ticket row, a dataclass)."""

    @property
    def due_at(self) -> datetime | None: ...

    @property
    def closed_at(self) -> datetime | None: ...


def overdue_by(ticket: Deadlined, now: datetime) -> timedelta | None:
    """How long an open ticket is past its deadline; None when it is closed, has none, or is not late."""
    if ticket.closed_at is not None or ticket.due_at is None or now <= ticket.due_at:
        return None
    return now - ticket.due_at


def is_overdue(ticket: Deadlined, now: datetime) -> bool:
    """True when the ticket is still open after its deadline (the console shows it red)."""
    return overdue_by(ticket, now) is not None
