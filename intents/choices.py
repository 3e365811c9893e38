"""What the customer picks from the bot's suggestions (猜你想问): by tapping, typing the question or its number."""

from __future__ import annotations

import re

from intents.prediction import Prediction
from intents.rules import effective_intents
from kb.model import FaqEntry, KnowledgeBase


def suggested_questions(kb: KnowledgeBase, prediction: Prediction) -> tuple[str, ...]:
    """The canonical questions of the alternatives (what the customer can tap or type back)."""
    questions: list[str] = []
    for candidate in prediction.alternatives:
        entry = kb.get(candidate.entry_id)
        question = entry.question if entry is not None else candidate.question
        if question not in questions:
            questions.append(question)
    return tuple(questions)


_NUMBER = re.compile(
    r"^\s*(?:第\s*)?([1-9]|[一二三四五六七八九]|[\u2460-\u2468])\s*(?:个|条|项)?\s*[.。!！]?\s*$"
)
_CHINESE_DIGITS = "一二三四五六七八九"


def picked_number(text: str) -> int | None:
    """1-based choice when the whole message is a number ("2", "第二个", "②"), else None."""
    match = _NUMBER.match(text)
    if match is None:
        return None
    token = match.group(1)
    if token.isascii():
        return int(token)
    if token in _CHINESE_DIGITS:
        return _CHINESE_DIGITS.index(token) + 1
    return ord(token) - 0x2460 + 1


def picked_entry(kb: KnowledgeBase, offered: tuple[str, ...], text: str) -> FaqEntry | None:
    """The FAQ entry behind the suggestion the customer picked by number, if any."""
    number = picked_number(text) if offered else None
    if number is None or number > len(offered):
        return None
    question = offered[number - 1]
    for entry in kb.enabled_entries:
        if entry.question == question:
            return entry
    return None


def intent_group(kb: KnowledgeBase, intent_name: str | None) -> str | None:
    """The skill group a kb rule intent names, if any."""
    if intent_name is None:
        return None
    for intent in effective_intents(kb):
        if intent.name == intent_name:
            return intent.group
    return None
