"""Customer satisfaction (CSAT): the question asked after a close and parsing the customer's answer.

`parse_rating` is only called while a conversation awaits a rating, so it may read "不满意" in a short
sentence as a rating. It still refuses what is likely a new question: long texts, digits that are part of
something else ("12345", "10分", "3件"), and answers that contradict themselves ("满意 但 很差").
Decided on purpose:
- "我不满意你们的服务态度" → 2: a short sentence around one rating phrase is that rating.
- "差评" → 1, "好评" → 5 (the gateway must check for a pending CSAT before the complaint rule sees 差评).
- A bare "一"…"五" counts, "两" only with 分/星 ("两星"), since a bare 两 is rarely meant as a score.
- Questions ("满意吗？") are never ratings; "三星手机" still reads as 3 — the length cap keeps such cases rare.
- Double negatives ("没有不满意") are not understood and read as 不满意; rare enough to accept.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["CSAT_QUESTION", "MAX_RATING_TEXT", "RATING_LABELS", "parse_rating", "rating_label"]

RATING_LABELS: dict[int, str] = {5: "非常满意", 4: "满意", 3: "一般", 2: "不满意", 1: "非常不满意"}

CSAT_QUESTION = (
    "为了给您提供更好的服务，请您为本次服务打分（直接回复数字即可）："
    "5 非常满意、4 满意、3 一般、2 不满意、1 非常不满意。"
)

# Longer than this, a message after the close is treated as a new question, not as an answer to the survey.
MAX_RATING_TEXT = 20

# Phrases, matched longest first and removed, so "不满意" is never also read as "满意".
_PHRASES: dict[str, int] = {
    # 5
    "非常满意": 5,
    "很满意": 5,
    "十分满意": 5,
    "特别满意": 5,
    "超级满意": 5,
    "太满意": 5,
    "相当满意": 5,
    "非常好": 5,
    "特别好": 5,
    "好评": 5,
    "满分": 5,
    "完美": 5,
    "超赞": 5,
    "非常棒": 5,
    "很棒": 5,
    "很不错": 5,
    "非常不错": 5,
    # 4
    "满意": 4,
    "比较满意": 4,
    "还算满意": 4,
    "基本满意": 4,
    "不错": 4,
    "挺好": 4,
    "还不错": 4,
    "很好": 4,
    # 3
    "一般": 3,
    "一般般": 3,
    "还行": 3,
    "还可以": 3,
    "凑合": 3,
    "马马虎虎": 3,
    "中评": 3,
    # 2
    "不满意": 2,
    "不太满意": 2,
    "不大满意": 2,
    "不怎么满意": 2,
    "不够满意": 2,
    "不是很满意": 2,
    "不是太满意": 2,
    "不好": 2,
    "不太好": 2,
    "不是很好": 2,
    "不怎么好": 2,
    "较差": 2,
    "比较差": 2,
    # 1
    "很不满意": 1,
    "非常不满意": 1,
    "特别不满意": 1,
    "十分不满意": 1,
    "极不满意": 1,
    "太不满意": 1,
    "极其不满意": 1,
    "超级不满意": 1,
    "很差": 1,
    "非常差": 1,
    "太差": 1,
    "差评": 1,
    "极差": 1,
    "很糟糕": 1,
    "糟糕": 1,
    "垃圾": 1,
}
_PHRASE_RE = re.compile("|".join(re.escape(p) for p in sorted(_PHRASES, key=len, reverse=True)))

_NUMERALS = {"1": 1, "2": 2, "3": 3, "4": 4, "5": 5, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5}
# A score with its unit ("5分", "五星", "4 颗星") anywhere in the text; "15分"/"5.5分"/"10分" are not 1–5.
# "5分钟" and "3星期" are durations, not scores.
_SCORED_RE = re.compile(r"(?<![0-9.])([1-5一二两三四五])(?:分|颗星|个星|星)(?![0-9钟期])")
# A question ("满意吗？") is a new message to answer, not an answer to ours.
_QUESTION_RE = re.compile(r"[?？]|吗")
_STARS_RE = re.compile(r"[★⭐☆]+")
_FILLED_STARS = frozenset("★⭐")
# What may surround a bare score: "给5吧", "我选 3", "就4了".
_FILLER_RE = re.compile(r"[我给打选就是吧啦了呀啊哦嗯哈的呢哟喔评价]")
# Spaces and sentence punctuation may surround a bare score; a sign may not ("-1", "+5").
_NOISE_RE = re.compile(r"[\s。！!.~～,，、…]+")

# Traditional forms of the characters the table uses (a pure-stdlib stand-in for OpenCC here).
_TRADITIONAL = str.maketrans(
    "滿極給顆評錯還較別麼馬湊讚夠兩個這對棒", "满极给颗评错还较别么马凑赞够两个这对棒"
)


def _normalize(text: str) -> str:
    # NFKC folds full-width digits ("５"), circled ones ("⑤") and full-width punctuation; the variation
    # selector after an emoji star ("⭐️") is dropped so stars compare equal.
    text = unicodedata.normalize("NFKC", text).translate(_TRADITIONAL)
    return text.replace("\ufe0f", "").strip().lower()


def parse_rating(text: str) -> int | None:
    """The 1–5 rating in a customer's answer to the CSAT question, or None when it is not a rating."""
    if not isinstance(text, str):
        return None
    t = _normalize(text)
    if not t or len(t) > MAX_RATING_TEXT or _QUESTION_RE.search(t):
        return None
    found: list[int] = []

    def stars(match: re.Match[str]) -> str:
        filled = sum(ch in _FILLED_STARS for ch in match.group(0))
        found.append(filled if 1 <= filled <= 5 else 0)  # 0 marks an impossible star count
        return " "

    def phrase(match: re.Match[str]) -> str:
        found.append(_PHRASES[match.group(0)])
        return " "

    def scored(match: re.Match[str]) -> str:
        found.append(_NUMERALS[match.group(1)])
        return " "

    rest = _STARS_RE.sub(stars, t)
    rest = _PHRASE_RE.sub(phrase, rest)
    rest = re.sub(r"\s+", "", rest)  # "5 分" is still 5分
    rest = _SCORED_RE.sub(scored, rest)
    bare = _NOISE_RE.sub("", _FILLER_RE.sub("", rest))
    if bare in _NUMERALS and bare != "两":
        found.append(_NUMERALS[bare])
    if not found or 0 in found or len(set(found)) != 1:
        return None  # nothing, an impossible star count, or a contradiction
    return found[0]


def rating_label(rating: int) -> str:
    """The words for a rating: 5 → 非常满意 … 1 → 非常不满意."""
    try:
        return RATING_LABELS[rating]
    except KeyError:
        raise ValueError(f"rating must be 1–5, got {rating!r}") from None
