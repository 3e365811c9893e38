"""Courtesy around a question (greetings, addressing the shop, thanks) is taken off before matching."""

from __future__ import annotations

import pytest

from intents.courtesy import strip_courtesy
from intents.normalize import normalize


@pytest.mark.parametrize(
    ("text", "core"),
    [
        ("你好，在吗？我想问下怎么退货，谢谢！", "怎么退货"),
        ("老板在吗怎么退货", "怎么退货"),
        ("Hi 亲亲，能开发票吗？谢谢啦😊", "能开发票吗"),
        ("客服您好，地址填错了怎么办？麻烦您了", "地址填错了怎么办"),
        ("晚上好，退款多久到账？在线等，急急急", "退款多久到账"),
        ("嗯嗯，那个，运费谁出？多谢啦", "运费谁出"),
        ("对了，发票怎么开", "发票怎么开"),
        ("不好意思打扰一下，请问包邮吗", "包邮吗"),
        ("能开发票吗？谢谢亲", "能开发票吗"),
        ("多久发货 多谢老板啦", "多久发货"),
    ],
)
def test_greetings_and_thanks_around_a_question_are_taken_off(text: str, core: str) -> None:
    assert strip_courtesy(normalize(text)) == core


@pytest.mark.parametrize(
    "text",
    [
        "客服电话是多少",  # 客服 begins the question's own words
        "亲子装有吗",
        "老板椅多少钱",
        "还有货吗",
        "额度怎么提升",
        "那个订单怎么取消",  # a demonstrative, not a filler: kept (it costs nothing)
        "对了吗",
        "hifi耳机有货吗",
        "我很着急",  # urgency can be what the message says
        "可以货到付款吗",  # 可以吗 ends questions: never taken off
    ],
)
def test_words_that_only_look_like_courtesy_stay(text: str) -> None:
    assert strip_courtesy(normalize(text)) == normalize(text)


@pytest.mark.parametrize("text", ["谢谢", "你好", "您好，在吗？", "哈哈哈哈", "亲", "请问"])
def test_a_message_of_courtesy_alone_keeps_its_words(text: str) -> None:
    """Small talk: the rule intents answer it from its words, so nothing is taken away."""
    assert strip_courtesy(normalize(text)) == normalize(text)


def test_long_runs_of_courtesy_are_taken_off_in_one_pass() -> None:
    """Hostile input: overlapping phrases repeated (感谢感谢 is one phrase or two). A regex anchored at the
    end tried every split of such a run that fails at the last character: at 22 repetitions it took 30 ms,
    each 4 more ×8, so a 200-character message would never have finished."""
    assert strip_courtesy("感谢" * 100 + "吗") == "感谢" * 100 + "吗"  # not a closing: kept
    assert strip_courtesy("怎么退货" + "感谢" * 98) == "怎么退货"
    assert strip_courtesy("怎么退货" + "谢谢 " * 60) == "怎么退货"
    assert strip_courtesy("你好" * 100 + "怎么退货") == "怎么退货"
    assert strip_courtesy("哈" * 200) == "哈" * 200  # nothing but courtesy
