"""Greetings, ways of addressing the shop and thanks around a question, taken off before it is matched.

Customers wrap questions in courtesy: "老板在吗，请问怎么退货，谢谢" asks exactly "怎么退货". The wrapping is
not the question: its words made the lexical vector and the sentence embedding drift from the FAQ's (on the
demo FAQ a third of clear questions wrapped that way fell from an answer to 猜你想问), and a greeting or a
thanks could even outscore the FAQ entry and be answered as small talk. The matcher matches what is left
when these are taken off both ends of the normalised text (`strip_courtesy`); rule intents still see the
whole text ("谢谢，转人工" hands over), and a text that is nothing but courtesy keeps its words (it is
small talk, which the rule intents answer).

The phrases are general Chinese customer-service courtesy, not any FAQ's or evaluation set's wording; only
phrases that never carry the question are listed ("可以吗", "能不能" stay: they are how questions end).
"""

from __future__ import annotations

import re

__all__ = ["ADDRESSING", "LEADING", "TRAILING", "strip_courtesy"]

# Openings that never begin a question's own words: greetings and "may I ask" formulas.
LEADING = (
    "您好",
    "你好",
    "你好呀",
    "你好啊",
    "嗨",
    "哈喽",
    "哈罗",
    "在吗",
    "在不在",
    "有人吗",
    "有人在吗",
    "亲亲",
    "客服你好",
    "客服您好",
    "小姐姐",
    "小哥哥",
    "早上好",
    "上午好",
    "中午好",
    "下午好",
    "晚上好",
    "打扰一下",
    "打扰了",
    "打扰下",
    "不好意思",
    "请问",
    "请问一下",
    "请问下",
    "麻烦问一下",
    "麻烦问下",
    "麻烦请问",
    "问一下",
    "问个事",
    "问个问题",
    "请教一下",
    "请教下",
    "咨询一下",
    "咨询下",
    "想咨询一下",
    "我想咨询一下",
    "我想问一下",
    "我想问下",
    "想问一下",
    "想问下",
    "嗯嗯",
    "emm",
    "emmm",
    "还有个问题",
    "顺便问一下",
    "顺便问下",
)

# Ways of addressing and fillers that may also begin a word ("客服电话", "亲子", "那个订单", "对了吗"):
# taken off only when a space (punctuation in the original) or another opening follows.
ADDRESSING = (
    "hi",
    "hello",
    "亲",
    "亲爱的",
    "老板",
    "掌柜",
    "店家",
    "商家",
    "客服",
    "美女",
    "喂",
    "那个",
    "嗯",
    "呃",
    "对了",
    "另外",
)

# Closings: thanks, urgency and pleas to answer.
TRAILING = (
    "谢谢",
    "谢谢你",
    "谢谢您",
    "谢谢啦",
    "谢谢了",
    "谢啦",
    "谢了",
    "多谢",
    "多谢了",
    "感谢",
    "感谢感谢",
    "非常感谢",
    "万分感谢",
    "十分感谢",
    "蟹蟹",
    "3q",
    "thx",
    "thanks",
    "thank you",
    "辛苦了",
    "辛苦啦",
    "辛苦",
    "麻烦了",
    "麻烦你了",
    "麻烦您了",
    "拜托了",
    "拜托",
    "在线等",
    "急急急",
    "求回复",
    "求解答",
    "速回",
    "尽快回复",
    "请尽快回复",
    "等回复",
    "哈",
    "哈哈",
)


def _longest_first(phrases: tuple[str, ...]) -> tuple[str, ...]:
    # "你好呀" before "你好", "谢谢你" before "谢谢": the longer phrase is the one said.
    return tuple(sorted(set(phrases), key=lambda p: (-len(p), p)))


def _alternation(phrases: tuple[str, ...]) -> str:
    return "|".join(re.escape(p) for p in _longest_first(phrases))


# An interjection may follow a phrase: "谢谢啊", "在吗哦" are the same courtesy (and "谢谢呢" at the end).
_INTERJECTIONS = "呀啊哦哈啦"
_PARTICLES = _INTERJECTIONS + "呢"
# Openings at the start, with the spaces normalize() left where punctuation was. Possessive (`++`, `?+`)
# and atomic (`(?>…)`): what a repetition took is never given back. Phrases overlap ("你好你好" is one
# phrase twice, "嗯嗯" one or two), and with backtracking a long run of them would be tried in every split.
_OPENING = rf"(?>{_alternation(LEADING)})[{_INTERJECTIONS}]?+"
_ADDRESS = rf"(?>{_alternation(ADDRESSING)})[{_INTERJECTIONS}]?+"
_HEAD = re.compile(rf"^(?:{_OPENING}\s*+|{_ADDRESS}(?:\s++|(?={_OPENING}|{_ADDRESS})))++")
# Closings are taken off the end one at a time with str.endswith, longest phrase first: a regex anchored
# at the end tries every start, and overlapping phrases ("感谢感谢" × 100 + "吗") made that exponential.
_CLOSINGS = _longest_first(TRAILING)
_WHOM = (*_longest_first(ADDRESSING), "")  # a thanks may name whom it thanks: 谢谢亲, 谢谢老板
_NAMED = _WHOM[:-1]  # one endswith tells whether anyone is named at all
# What must be left for the stripped text to be matched instead: at least this many characters.
MIN_LEFT = 2


def _without_closing(text: str) -> str | None:
    """`text` without the one closing it ends with (a thanks, the one thanked, a particle), else None."""
    bodies = (text[:-1], text) if text and text[-1] in _PARTICLES else (text,)
    for body in bodies:
        for whom in _WHOM if body.endswith(_NAMED) else ("",):
            if not body.endswith(whom):
                continue
            rest = body[: len(body) - len(whom)]
            # One C call tells whether any closing ends it (most texts: none); only then which, longest first.
            if rest.endswith(_CLOSINGS):
                for phrase in _CLOSINGS:
                    if rest.endswith(phrase):
                        return rest[: len(rest) - len(phrase)]
    return None


def strip_courtesy(normalized: str) -> str:
    """`normalized` (intents.normalize's form) without courtesy at either end; unchanged when that
    would leave fewer than MIN_LEFT characters (the message is courtesy itself)."""
    core = _HEAD.sub("", normalized).rstrip()
    while (shorter := _without_closing(core)) is not None:
        core = shorter.rstrip()
    core = core.strip()
    return core if len(core.replace(" ", "")) >= MIN_LEFT else normalized
