"""China's statutory holidays and 调休 working weekends for business hours, from `chinese_calendar`.

Kept in the gateway because `handoff` imports no third-party packages; `handoff.hours` only sees the
`PublicCalendar` callable made here.
"""

from __future__ import annotations

import logging
from datetime import date

from handoff.hours import DayKind, PublicCalendar

logger = logging.getLogger(__name__)

__all__ = ["china_public_calendar"]


def china_public_calendar() -> PublicCalendar:
    """A calendar answering HOLIDAY on 法定节假日, WORKDAY on 调休 working days, None otherwise.

    The package ships one year at a time (the State Council publishes each December): for a year it does
    not know yet the answer is None, so such days follow the weekly schedule, with one warning per year.
    """
    import chinese_calendar  # optional dependency, imported only when `chinese_holidays: true`

    warned: set[int] = set()

    def day_kind(day: date) -> DayKind | None:
        try:
            is_holiday, name = chinese_calendar.get_holiday_detail(day)
        except NotImplementedError:
            if day.year not in warned:
                warned.add(day.year)
                logger.warning(
                    "chinese_calendar has no holiday data for %s; using the weekly schedule "
                    "(upgrade chinese-calendar or list the dates under business_hours.holidays)",
                    day.year,
                )
            return None
        if name is None:
            return None  # an ordinary weekday or weekend: the weekly schedule decides
        return DayKind.HOLIDAY if is_holiday else DayKind.WORKDAY

    return day_kind
