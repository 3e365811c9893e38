"""质检: score an agent's conversation, or a draft as it is typed, against the rules of config/qa.yaml.

Pure: the rules come from kb.qa_rules, the messages are plain (sender, text, time). One function finds the
hits in one agent message (`message_hits`), so the console's draft check and the score of a closed
conversation can never disagree about what a rule means.
Definitions:
- score = max_score − the weights of all hits, never below 0;
- flagged when the score is below `flag_below`, or any hit is of a rule with `flag: true`;
- a response gap counts from the customer's first unanswered message to the agent's next message, and only
  after the agent's first reply (the first response itself is the SLA's business, handoff.sla);
- only the agent's messages are inspected; the customer's and the bot's are context.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from kb.qa_rules import QaRule, QaRules

__all__ = [
    "DraftCheck",
    "QaHit",
    "QaMessage",
    "QaScore",
    "check_draft",
    "message_hits",
    "score_conversation",
]

AGENT = "agent"
CUSTOMER = "customer"

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff"
_HAS_CJK = re.compile(f"[{_CJK}]")
_FULL_WIDTH_ALNUM = re.compile(r"[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]+")
_HALF_PUNCT_AFTER_CJK = re.compile(f"(?<=[{_CJK}])[,?!:;]")
_FULL_PUNCT = {",": "，", "?": "？", "!": "！", ":": "：", ";": "；"}
# {name}, {{订单号}}, ${amount}: a template field the agent forgot to fill in. A single-brace field is the
# canned-reply syntax only (handoff.canned): "{ 订单号 }", "{型号}", "{1,2}" or JSON are ordinary text.
_PLACEHOLDER = re.compile(
    r"\$\{\s*[^{}\s]{1,30}?\s*\}|\{\{\s*[^{}\s]{1,30}?\s*\}\}|\{[A-Za-z_][A-Za-z0-9_]*\}"
)
_CLAUSE_END = re.compile(r"[。！？!?；;，,\n]")


@dataclass(frozen=True, slots=True)
class QaMessage:
    """One message of a conversation as 质检 sees it."""

    sender: str  # customer | agent | bot | system
    text: str
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class QaHit:
    """One rule broken: in which message (index in the conversation), where in its text, what to say instead."""

    rule_id: str
    rule_name: str
    rule_type: str
    message_index: int | None  # None for a draft
    start: int  # span in the message text; start == end when the rule is about something missing
    end: int
    text: str
    suggestion: str
    weight: int
    block: bool = False
    flag: bool = False

    def as_dict(self) -> dict[str, object]:
        """JSON-ready."""
        return {
            "rule": self.rule_id,
            "name": self.rule_name,
            "type": self.rule_type,
            "message_index": self.message_index,
            "start": self.start,
            "end": self.end,
            "text": self.text,
            "suggestion": self.suggestion,
            "weight": self.weight,
            "block": self.block,
            "flag": self.flag,
        }


@dataclass(frozen=True, slots=True)
class QaScore:
    """The 质检 result of one conversation."""

    score: int
    max_score: int
    hits: tuple[QaHit, ...]
    flagged: bool

    @property
    def rules_hit(self) -> list[str]:
        """The ids of the rules hit, in order of first hit, each once."""
        return list(dict.fromkeys(h.rule_id for h in self.hits))


@dataclass(frozen=True, slots=True)
class DraftCheck:
    """What the console underlines in a draft, and whether sending it is refused (a `block: true` rule)."""

    hits: tuple[QaHit, ...]

    @property
    def blocked(self) -> bool:
        return any(h.block for h in self.hits)


def _hit(rule: QaRule, index: int | None, start: int, end: int, text: str, suggestion: str = "") -> QaHit:
    return QaHit(
        rule.id,
        rule.name,
        rule.type,
        index,
        start,
        end,
        text,
        suggestion or rule.suggestion,
        rule.weight,
        rule.block,
        rule.flag,
    )


def _phrase_spans(rule: QaRule, text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, suggestion) of the rule's words and patterns in `text`, not overlapping, in order."""
    if rule.unless and any(word in text for word in rule.unless):
        return  # the message offers a next step (帮您查询 …): the phrase is not bare
    found: list[tuple[int, int, str]] = []
    for word in sorted(rule.words, key=len, reverse=True):
        for m in re.finditer(re.escape(word), text):
            found.append((m.start(), m.end(), rule.words[word]))
    for pattern in rule.patterns:
        for m in pattern.finditer(text):
            if m.end() > m.start():
                found.append((m.start(), m.end(), ""))
    found.sort(key=lambda s: (s[0], -(s[1] - s[0])))
    last_end = -1
    for start, end, better in found:
        if start < last_end:
            continue
        clause_start = max((m.end() for m in _CLAUSE_END.finditer(text, 0, start)), default=0)
        if rule.not_after and any(w in text[clause_start:start] for w in rule.not_after):
            continue  # 如果您不知道订单号 … is about the customer, not an agent who does not know
        last_end = end
        yield start, end, better


def message_hits(
    text: str, rules: QaRules, *, index: int | None = None, first_reply: bool = False, closing: bool = False
) -> list[QaHit]:
    """The hits in one agent message; `first_reply`/`closing` apply the required phrases of those places."""
    hits: list[QaHit] = []
    for rule in rules.rules:
        if rule.type == "required":
            due = (rule.where == "first_reply" and first_reply) or (rule.where == "before_close" and closing)
            if due and not any(p in text for p in rule.phrases):
                hits.append(_hit(rule, index, 0, 0, ""))
        elif rule.type in ("forbidden", "vague"):
            for start, end, better in _phrase_spans(rule, text):
                hits.append(_hit(rule, index, start, end, text[start:end], better))
        elif rule.type == "width_mix" and _HAS_CJK.search(text):
            for m in _FULL_WIDTH_ALNUM.finditer(text):
                better = unicodedata.normalize("NFKC", m.group())
                hits.append(_hit(rule, index, m.start(), m.end(), m.group(), f"改为半角：{better}"))
            for m in _HALF_PUNCT_AFTER_CJK.finditer(text):
                hits.append(
                    _hit(rule, index, m.start(), m.end(), m.group(), f"改为全角：{_FULL_PUNCT[m.group()]}")
                )
        elif rule.type == "placeholder":
            for m in _PLACEHOLDER.finditer(text):
                hits.append(_hit(rule, index, m.start(), m.end(), m.group()))
    hits.sort(key=lambda h: (h.start, h.end))
    return hits


def check_draft(text: str, rules: QaRules, *, first_reply: bool = False, closing: bool = False) -> DraftCheck:
    """The draft check of the agent console: the same rules as the score, on the text being typed."""
    return DraftCheck(tuple(message_hits(text, rules, first_reply=first_reply, closing=closing)))


def _gap_hits(messages: Sequence[QaMessage], rules: Sequence[QaRule]) -> list[QaHit]:
    hits: list[QaHit] = []
    replied = False
    waiting_since: datetime | None = None
    for i, msg in enumerate(messages):
        if msg.sender == CUSTOMER:
            if replied and waiting_since is None and msg.at is not None:
                waiting_since = msg.at
        elif msg.sender == AGENT:
            if waiting_since is not None and msg.at is not None:
                waited = (msg.at - waiting_since).total_seconds()
                for rule in rules:
                    if waited > rule.max_seconds:
                        text = f"客户等待 {round(waited)} 秒"
                        hits.append(_hit(rule, i, 0, 0, text))
            replied = True
            waiting_since = None
    return hits


def score_conversation(messages: Sequence[QaMessage], rules: QaRules, *, closed: bool = True) -> QaScore:
    """Score one conversation (its messages in order); `closed` applies the closing-phrase rule."""
    agent_indexes = [i for i, m in enumerate(messages) if m.sender == AGENT]
    hits: list[QaHit] = []
    for i in agent_indexes:
        hits.extend(
            message_hits(
                messages[i].text,
                rules,
                index=i,
                first_reply=i == agent_indexes[0],
                closing=closed and i == agent_indexes[-1],
            )
        )
    hits.extend(_gap_hits(messages, rules.by_type("response_gap")))
    hits.sort(key=lambda h: (h.message_index or 0, h.start, h.end))
    score = max(rules.max_score - sum(h.weight for h in hits), 0)
    flagged = bool(agent_indexes) and (score < rules.flag_below or any(h.flag for h in hits))
    return QaScore(score, rules.max_score, tuple(hits), flagged)
