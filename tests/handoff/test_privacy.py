"""What leaves the database masked: phones, ID numbers and bank cards; order numbers stay readable."""

from __future__ import annotations

import pytest

from handoff.privacy import mask_sensitive


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("我的手机号是13812345678，请回电", "我的手机号是138****5678，请回电"),
        ("电话 138 1234 5678", "电话 138 **** 5678"),
        ("电话138-1234-5678", "电话138-****-5678"),
        ("+8613812345678", "+86138****5678"),
        ("+86 138 1234 5678", "+86 138 **** 5678"),
        ("86-13812345678", "86-138****5678"),
        ("全角１３８１２３４５６７８", "全角138****5678"),
        ("两个号码13812345678/15900001111", "两个号码138****5678/159****1111"),
        ("tel13812345670", "tel138****5670"),
        ("手机138.1234.5672", "手机138.****.5672"),
        ("call me at 13812345678now", "call me at 138****5678now"),
    ],
)
def test_mobile_numbers_keep_the_first_three_and_last_four(text: str, masked: str) -> None:
    assert mask_sensitive(text) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("身份证11010519491231002X", "身份证110105********002X"),
        ("身份证号：11010519491231002x。", "身份证号：110105********002x。"),
        ("110105 19491231 002X", "110105 ******** 002X"),
        ("440301200002290013", "440301********0013"),
        ("老身份证110105491231001", "老身份证110105******001"),
        ("15位 440301000229001 号", "15位 440301******001 号"),
    ],
)
def test_id_numbers_hide_the_birth_date(text: str, masked: str) -> None:
    assert mask_sensitive(text) == masked


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("卡号 6222 0212 3456 7890 123", "卡号 **** **** **** ***0 123"),
        ("卡号6222021234567890123", "卡号***************0123"),
        ("6222-0212-3456-7890", "****-****-****-7890"),
        ("visa 4111111111111111", "visa ************1111"),  # passes Luhn
    ],
)
def test_bank_cards_keep_only_the_last_four_digits(text: str, masked: str) -> None:
    assert mask_sensitive(text) == masked


@pytest.mark.parametrize(
    "text",
    [
        "订单号 3456789012345678901 还没发货",  # an order number named as such stays readable
        "运单号：7788990011223344",
        "order #6222021234567890123",
        "msgid=6222021234567890123",  # a platform message id in a log line
        "MsgId 4363689963896700987",
        "流水 4111111111111112",  # 16 digits, not 62, fails Luhn: not a card
        "我买了12345678901件",  # 11 digits but not a mobile prefix
        "msgid 23812345678901234567890",  # a longer run is never cut into a phone
        "单号 213812345678",  # 12 digits: a phone only stands alone
        "订单号 110105491231001",  # a 15-digit order number named as such
        "MsgId=110105491231001",
        "价格 138 元，数量 2",
        "",
    ],
)
def test_what_is_clearly_something_else_is_left_alone(text: str) -> None:
    assert mask_sensitive(text) == text


def test_the_three_numbers_of_the_issue_in_one_message() -> None:
    text = "手机13812345678，身份证11010519491231002X，卡号6222 0212 3456 7890 123"
    assert mask_sensitive(text) == "手机138****5678，身份证110105********002X，卡号**** **** **** ***0 123"


def test_masking_twice_changes_nothing_more() -> None:
    once = mask_sensitive("13812345678 11010519491231002X 6222021234567890123")
    assert mask_sensitive(once) == once
    assert "1234" not in once.replace("0123", "")
