"""The service norms of a deployment, built from its settings: business hours per group, SLA timers.

One place that turns `business_hours:` and `sla:` of gateway.yaml into `handoff.hours.GroupHours` and
`handoff.sla.SlaPolicy` (with China's public holidays when `chinese_holidays: true`), for the handoff
service, `kefu report` and the reports API alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from handoff.hours import DEFAULT_TIMEZONE, GroupHours, PublicCalendar, group_hours_from_config
from handoff.sla import SlaPolicy

if TYPE_CHECKING:  # pragma: no cover
    from gateway.settings import Settings
    from gateway.storage.report_queries import EntryLookup
    from kb.model import KnowledgeBase

__all__ = ["answer_placeholders", "entry_lookup", "group_hours", "parse_business_hours", "sla_policy"]

# Reading a zone file is blocking I/O; ZoneInfo caches it, so load the default at import, not on the loop
# (create_app runs inside the event loop under aiohttp's test client and the app runner).
ZoneInfo(DEFAULT_TIMEZONE)


def _wants_public_calendar(data: Mapping[str, Any]) -> bool:
    groups = data.get("groups")
    nested = groups.values() if isinstance(groups, Mapping) else ()
    return data.get("chinese_holidays") is True or any(
        isinstance(g, Mapping) and g.get("chinese_holidays") is True for g in nested
    )


def parse_business_hours(data: Mapping[str, Any] | None) -> GroupHours:
    """`business_hours:` as GroupHours (always open when absent); HoursConfigError names the field."""
    calendar: PublicCalendar | None = None
    if isinstance(data, Mapping) and _wants_public_calendar(data):
        try:
            from gateway.holidays import china_public_calendar

            calendar = china_public_calendar()
        except ImportError:
            calendar = None  # from_config then says to install chinese-calendar
    return group_hours_from_config(data, public_calendar=calendar)


def group_hours(settings: Settings) -> GroupHours:
    """The deployment's business hours per skill group."""
    return parse_business_hours(getattr(settings, "business_hours", None))


def answer_placeholders(settings: Settings) -> dict[str, str]:
    """What the bot fills into FAQ answers at answer time: `{service_hours}` from `business_hours` (the one
    source of service hours; `handoff.service_hours` only overrides its wording, for the notices too)."""
    handoff = getattr(settings, "handoff", None)
    wording = getattr(handoff, "service_hours", None)
    return {"service_hours": (wording or group_hours(settings).default.describe()).strip()}


def sla_policy(settings: Settings) -> SlaPolicy:
    """The deployment's SLA timers (first response 60 s and follow-up 24 h by default)."""
    return SlaPolicy.from_config(getattr(settings, "sla", None))


def entry_lookup(kb: KnowledgeBase | None) -> EntryLookup:
    """FAQ entry id → its standard question and category, from the loaded knowledge base."""
    from gateway.storage.report_queries import EntryInfo

    def lookup(entry_id: str) -> EntryInfo | None:
        entry = kb.get(entry_id) if kb is not None else None
        return EntryInfo(entry.question, entry.category) if entry is not None else None

    return lookup
