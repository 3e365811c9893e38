"""Parsing the customer's answer to the satisfaction question."""

from __future__ import annotations

import pytest

from handoff.csat import CSAT_QUESTION, RATING_LABELS, parse_rating, rating_label

RATINGS = [
    # digits, full-width, circled, with units and filler
    ("5", 5),
    ("1", 1),
    ("５", 5),
    ("⑤", 5),
    (" 3 ", 3),
    ("4。", 4),
    ("5！", 5),
    ("5分", 5),
    ("5 分", 5),
    ("给5分吧", 5),
    ("我选 3", 3),
    ("就4了", 4),
    ("1星", 1),
    ("4颗星", 4),
    # Chinese numerals
    ("五星", 5),
    ("五分", 5),
    ("三", 3),
    ("两星", 2),
    ("五星好评", 5),
    ("打五星", 5),
    # stars
    ("⭐⭐⭐⭐⭐", 5),
    ("⭐️⭐️⭐️⭐️", 4),
    ("★★★☆☆", 3),
    ("★", 1),
    # words
    ("非常满意", 5),
    ("很满意", 5),
    ("满意", 4),
    ("比较满意", 4),
    ("还不错", 4),
    ("一般", 3),
    ("一般般吧", 3),
    ("还行", 3),
    ("不满意", 2),
    ("不太满意", 2),
    ("不是很满意", 2),
    ("很不满意", 1),
    ("非常不满意", 1),
    ("差评", 1),
    ("好评", 5),
    ("滿意", 4),
    ("非常滿意！", 5),
    # the option the question offers, echoed back
    ("5 非常满意", 5),
    ("2 不满意", 2),
    # decided: a short sentence around one rating phrase is that rating
    ("我不满意你们的服务态度", 2),
    ("客服态度很好", 4),
    ("服务太差了", 1),
]

NOT_RATINGS = [
    "",
    "   ",
    "12345",
    "6",
    "0",
    "10分",
    "15分",
    "5.5分",
    "-1",
    "55",
    "好的",
    "谢谢",
    "ok",
    "嗯",
    "我想退货",
    "订单12345还没到",
    "我买了3件",
    "等了5分钟",  # a duration, not a score
    "满意吗",
    "满意？",  # a question to answer, not an answer
    "满意 但 很差",
    "5分 一般",  # contradictions
    "⭐⭐⭐⭐⭐⭐",  # six stars: not a 1–5 scale
    "两",
    "我上周买的那件衣服到现在还没发货你们到底什么时候发啊不满意",  # long: a new message
]


@pytest.mark.parametrize(("text", "rating"), RATINGS)
def test_answers_that_are_ratings(text: str, rating: int) -> None:
    assert parse_rating(text) == rating


@pytest.mark.parametrize("text", NOT_RATINGS)
def test_answers_that_are_not_ratings(text: str) -> None:
    assert parse_rating(text) is None


def test_non_text_is_not_a_rating() -> None:
    assert parse_rating(None) is None  # type: ignore[arg-type]


def test_the_question_offers_every_label_and_they_parse_back() -> None:
    for rating, label in RATING_LABELS.items():
        assert f"{rating} {label}" in CSAT_QUESTION
        assert parse_rating(label) == rating
        assert rating_label(rating) == label
    with pytest.raises(ValueError, match="1–5"):
        rating_label(6)
