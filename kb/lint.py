"""Style warnings for a loaded knowledge base: replies a customer would find unhelpful or rude.

These are norms of Chinese customer service, not errors: the bot still works, but a reply like a bare
"好的" or "不清楚" reads as dismissive, and a 600-character answer becomes a wall of text in WeChat.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from kb.model import FaqEntry, KnowledgeBase, Problem, SourceRef
from kb.text import fold_question

__all__ = [
    "ANSWER_PLACEHOLDERS",
    "BARE_REPLY_MAX_CHARS",
    "MAX_ANSWER_CHARS",
    "MIN_SIMILAR",
    "VAGUE_PHRASES",
    "lint_kb",
]

# One WeChat/QQ chat bubble stays readable up to about this many characters; beyond it, split the
# answer or link to a help page.
MAX_ANSWER_CHARS = 300
# A reply this short ("好的", "嗯", "OK") answers nothing.
BARE_REPLY_MAX_CHARS = 3
# Fewer ways of asking than this and the matcher misses most real phrasings of the question.
MIN_SIMILAR = 3
# The bot admitting it does not know, as the reply itself, rather than offering a next step.
VAGUE_PHRASES = ("不太清楚", "不清楚", "不知道", "不晓得")

_VAGUE_RE = re.compile("|".join(VAGUE_PHRASES))
# Clauses split on sentence and comma punctuation, ASCII and full-width.
_CLAUSE_SPLIT = re.compile(r"[。！？!?；;，,\n]+")
# "如果您不清楚订单号，可以…" talks about the customer not knowing, which is fine.
_ABOUT_CUSTOMER = re.compile(r"您|你|如果|若|假如|要是|万一")
# Placeholders the gateway fills in a bot answer at answer time (from its config: `business_hours`).
ANSWER_PLACEHOLDERS = frozenset({"service_hours"})
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Hours written into a text ("9:00–22:00", "9点至21点"): service hours belong in `business_hours`. A
# single time ("16:00前付款当天发货") is a cut-off, not opening hours, and stays allowed.
_TIME = r"(?:[01]?\d|2[0-4])(?:[:：][0-5]\d|点(?:半|[0-5]?\d分?)?)"
_CLOCK_TIME = re.compile(rf"(?<![\d.]){_TIME}\s*(?:-|–|—|~|～|至|到)\s*(?:次日)?{_TIME}")
# Entries built by hand (tests, tools) may have no source; their warnings still print.
_UNKNOWN = SourceRef("<unknown>", 0)


def lint_kb(kb: KnowledgeBase) -> list[Problem]:
    """Warnings (severity "warning") about replies that break customer-service norms, in file order."""
    problems: list[Problem] = []
    for entry in kb.entries:
        problems.extend(_lint_entry(entry))
    for intent in kb.intents:
        if intent.reply is not None:
            where = intent.source or _UNKNOWN
            for message in _reply_warnings(intent.reply, "reply"):
                problems.append(_warning(where, f"intent {intent.name}: {message}"))
    for key, text in kb.replies.texts.items():
        where = kb.replies.sources.get(key)
        if where is None:
            continue  # a built-in default phrase, not something this kb's author wrote
        for message in _reply_warnings(text, f"reply '{key}'"):
            problems.append(_warning(where, message))
        if key == "greeting" and "您" not in text:
            problems.append(
                _warning(where, "reply 'greeting' does not address the customer as 您; start with 您好")
            )
    order = {file: i for i, file in enumerate(kb.sources)}
    problems.sort(key=lambda p: (order.get(p.file, len(order)), p.line))
    return problems


def _warning(where: SourceRef, message: str, entry_id: str | None = None) -> Problem:
    return Problem(where.file, where.line, message, entry_id, severity="warning")


def _lint_entry(entry: FaqEntry) -> Iterator[Problem]:
    where = entry.source or _UNKNOWN
    variants = [("answer", entry.answer)] + [(f"answer.{ch}", text) for ch, text in entry.answers.items()]
    for name, text in variants:
        for message in _reply_warnings(text, name):
            yield _warning(where, message, entry.id)
    if len(entry.similar) < MIN_SIMILAR:
        yield _warning(
            where,
            f"only {len(entry.similar)} similar question(s); add at least {MIN_SIMILAR} other ways customers "
            "ask this so the matcher recognises them",
            entry.id,
        )
    seen: set[str] = set()
    for question in entry.questions:
        key = fold_question(question)
        if key in seen:
            yield _warning(where, f"question '{question}' is listed twice in this entry", entry.id)
        seen.add(key)


def _reply_warnings(text: str, name: str) -> Iterator[str]:
    """What is wrong with one customer-facing text, as messages naming it."""
    stripped = text.strip()
    if len(stripped) <= BARE_REPLY_MAX_CHARS:
        yield f"{name} '{stripped}' is a bare reply; say what the customer can do next"
        return
    if vague := _vague_phrase(stripped):
        yield (
            f"{name} says '{vague}'; never answer with 不知道/不清楚 — "
            "apologise and give a next step (转人工, a link, where to look)"
        )
    for placeholder in dict.fromkeys(_PLACEHOLDER.findall(stripped)):
        if placeholder not in ANSWER_PLACEHOLDERS:
            yield (
                f"{name} has the placeholder {{{placeholder}}}, which the bot cannot fill; "
                f"use {', '.join('{' + p + '}' for p in sorted(ANSWER_PLACEHOLDERS))} or plain text"
            )
    if clock := _CLOCK_TIME.search(stripped):
        yield (
            f"{name} states hours ('{clock.group(0)}'); write service hours as {{service_hours}}, "
            "filled from business_hours, so no text contradicts another"
        )
    if len(stripped) > MAX_ANSWER_CHARS:
        yield (
            f"{name} is {len(stripped)} characters, more than one chat bubble ({MAX_ANSWER_CHARS}); "
            "shorten it or split it into entries"
        )


def _vague_phrase(text: str) -> str | None:
    """The vague phrase used as the bot's own reply, ignoring clauses about the customer not knowing."""
    for clause in _CLAUSE_SPLIT.split(text):
        match = _VAGUE_RE.search(clause)
        if match and not _ABOUT_CUSTOMER.search(clause[: match.start()]):
            return match.group(0)
    return None
