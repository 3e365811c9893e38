"""Log lines go through handoff.privacy too: ID and bank-card numbers, not only phones."""

from __future__ import annotations

from gateway.logs import mask


def test_log_lines_mask_the_three_kinds_of_numbers() -> None:
    line = "inbound text='手机13812345678 身份证11010519491231002X 卡号6222 0212 3456 7890 123' token=abc"
    assert mask(line) == (
        "inbound text='手机138****5678 身份证110105********002X 卡号**** **** **** ***0 123' token=***"
    )


def test_platform_ids_in_logs_stay_readable() -> None:
    for line in ("dedupe msgid=6222021234567890123", "MsgId 4363689963896700987", "订单 2026112413812345678"):
        assert mask(line) == line
