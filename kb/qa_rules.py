"""质检 rules (config/qa.yaml): the service norms agents' replies are scored against, loaded with file:line.

The rules live in kb (the package that reads YAML) beside the FAQ's own norm lint; handoff/qa.py applies
them to conversations and drafts. Like the FAQ, the file is read as PyYAML nodes so every problem names its
line, and a bad file never raises: the caller gets `rules=None` and keeps the last good rules.

Rule types (`type:`):
- `required`: one of `phrases` must appear `in: first_reply` (the agent's first message) or
  `in: before_close` (the agent's last message);
- `forbidden` / `vague`: none of `words` (a list, or a mapping word → suggested wording) or `patterns`
  (regular expressions) may appear in an agent message; `unless` words anywhere in the message (a next
  step: 帮您查询) or `not_after` words earlier in the clause (如果您不知道…) make a match harmless;
- `response_gap`: the customer waited more than `max_seconds` for the agent's next message;
- `width_mix`: full-width letters/digits, or half-width ,?!:; right after a Chinese character;
- `placeholder`: a raw template field such as {name} or {{订单号}} left in the text.
Each has `weight` (points off per hit), optional `block` (the console refuses to send a draft that hits
it), `flag` (one hit flags the conversation for a supervisor) and `suggestion`.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal, cast

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kb.model import Problem, SourceRef
from kb.schema import SLUG_RE
from kb.yaml_nodes import YamlLoader, describe, did_you_mean, is_null, is_text, line_of, too_deep

__all__ = [
    "DEFAULT_QA_PATH",
    "RULE_KEYS",
    "RULE_TYPES",
    "QaLoadResult",
    "QaRule",
    "QaRules",
    "RuleType",
    "load_qa_rules",
    "parse_qa_rules",
]

DEFAULT_QA_PATH = "config/qa.yaml"
RuleType = Literal["required", "forbidden", "vague", "response_gap", "width_mix", "placeholder"]
RULE_TYPES: tuple[str, ...] = ("required", "forbidden", "vague", "response_gap", "width_mix", "placeholder")
TOP_KEYS = ("max_score", "flag_below", "rules")
RULE_KEYS = (
    "id",
    "name",
    "type",
    "weight",
    "block",
    "flag",
    "suggestion",
    "phrases",
    "in",
    "words",
    "patterns",
    "unless",
    "not_after",
    "max_seconds",
)
# Which keys each type uses beyond the common ones; others are errors (a typo would silently do nothing).
_TYPE_KEYS: dict[str, frozenset[str]] = {
    "required": frozenset({"phrases", "in"}),
    "forbidden": frozenset({"words", "patterns", "unless", "not_after"}),
    "vague": frozenset({"words", "patterns", "unless", "not_after"}),
    "response_gap": frozenset({"max_seconds"}),
    "width_mix": frozenset(),
    "placeholder": frozenset(),
}
_COMMON_KEYS = frozenset({"id", "name", "type", "weight", "block", "flag", "suggestion"})
REQUIRED_IN = ("first_reply", "before_close")
_BOOLS = {"true": True, "false": False, "yes": True, "no": False, "on": True, "off": False}


@dataclass(frozen=True, slots=True)
class QaRule:
    """One 质检 rule (see the module doc for the types and keys)."""

    id: str
    type: RuleType
    name: str
    weight: int = 5
    block: bool = False
    flag: bool = False
    suggestion: str = ""
    phrases: tuple[str, ...] = ()
    where: str = "first_reply"  # `in:` of a required rule
    words: MappingProxyType[str, str] = field(default_factory=lambda: MappingProxyType({}))
    patterns: tuple[re.Pattern[str], ...] = ()
    unless: tuple[str, ...] = ()
    not_after: tuple[str, ...] = ()
    max_seconds: int = 120
    source: SourceRef | None = None


@dataclass(frozen=True, slots=True)
class QaRules:
    """The rule set: the score a perfect conversation gets, the score below which it is flagged, the rules."""

    rules: tuple[QaRule, ...] = ()
    max_score: int = 100
    flag_below: int = 80
    version: str = ""

    def by_type(self, kind: str) -> tuple[QaRule, ...]:
        """The rules of one type, in file order."""
        return tuple(r for r in self.rules if r.type == kind)


@dataclass(frozen=True, slots=True)
class QaLoadResult:
    """The rules when the file had no errors (else None), and every error found."""

    rules: QaRules | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rules is not None and not self.problems


def load_qa_rules(path: str | os.PathLike[str] = DEFAULT_QA_PATH) -> QaLoadResult:
    """Read and validate config/qa.yaml; every problem carries the file and line."""
    file = os.fspath(path)
    try:
        data = Path(file).read_bytes()
    except OSError as exc:
        return QaLoadResult(None, [Problem(file, 1, f"cannot read file: {exc.strerror or exc}")])
    try:
        text = data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return QaLoadResult(None, [Problem(file, line, "file is not UTF-8; save it as UTF-8")])
    return parse_qa_rules(text, file)


def parse_qa_rules(text: str, file: str = DEFAULT_QA_PATH) -> QaLoadResult:
    """Validate the text of a qa.yaml (see the module doc)."""
    parser = _Parser(file)
    if (deep := too_deep(text)) is not None:
        parser.error(deep, "nesting too deep; a qa.yaml needs only a few levels")
        return QaLoadResult(None, parser.problems)
    try:
        root = yaml.compose(text, Loader=YamlLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = f"invalid YAML: {exc.problem or exc.context or 'syntax error'}"
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, None)
        return QaLoadResult(None, [Problem(file, line, message, column=column)])
    except (yaml.YAMLError, RecursionError) as exc:
        return QaLoadResult(None, [Problem(file, 1, f"invalid YAML: {exc}")])
    rules = parser.document(root)
    if parser.problems or rules is None:
        return QaLoadResult(None, parser.problems)
    version = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return QaLoadResult(
        QaRules(rules.rules, rules.max_score, rules.flag_below, version=version), parser.problems
    )


class _Parser:
    """Walks the nodes of one qa.yaml, collecting problems instead of raising."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def error(self, where: Node | int, message: str) -> None:
        line = where if isinstance(where, int) else line_of(where)
        self.problems.append(Problem(self.file, line, message))

    def fields(self, node: MappingNode, allowed: Iterable[str], what: str) -> dict[str, Node]:
        allowed = tuple(allowed)
        out: dict[str, Node] = {}
        for key, value in node.value:
            if not is_text(key):
                self.error(key, f"{what}: keys must be names, got {describe(key)}")
                continue
            name = str(key.value)
            if name not in allowed:
                self.error(key, f"{what}: unknown key '{name}'; {did_you_mean(name, allowed)}")
            elif name in out:
                self.error(key, f"{what}: key '{name}' is given twice")
            else:
                out[name] = value
        return out

    def text(self, node: Node, what: str) -> str | None:
        if not is_text(node) or not str(cast(ScalarNode, node).value).strip():
            self.error(node, f"{what}: expected text, got {describe(node)}")
            return None
        return str(cast(ScalarNode, node).value).strip()

    def integer(self, node: Node, what: str, low: int, high: int) -> int | None:
        raw = str(node.value) if isinstance(node, ScalarNode) else ""
        if not (isinstance(node, ScalarNode) and re.fullmatch(r"\d+", raw) and low <= int(raw) <= high):
            self.error(node, f"{what}: expected a whole number from {low} to {high}, got {describe(node)}")
            return None
        return int(raw)

    def boolean(self, node: Node, what: str) -> bool | None:
        raw = str(node.value).lower() if isinstance(node, ScalarNode) else ""
        if raw not in _BOOLS:
            self.error(node, f"{what}: expected true or false, got {describe(node)}")
            return None
        return _BOOLS[raw]

    def texts(self, node: Node, what: str) -> tuple[str, ...]:
        if is_text(node):
            node = SequenceNode("tag:yaml.org,2002:seq", [node], node.start_mark, node.end_mark)
        if not isinstance(node, SequenceNode) or not node.value:
            self.error(node, f"{what}: expected a non-empty list of texts, got {describe(node)}")
            return ()
        values = [self.text(item, f"{what} item") for item in node.value]
        return tuple(v for v in values if v is not None)

    def document(self, root: Node | None) -> QaRules | None:
        if is_null(root):
            self.error(1, "empty file; add 'rules:' with at least one rule")
            return None
        assert root is not None
        if not isinstance(root, MappingNode):
            self.error(
                root, f"the top level must be a mapping with {', '.join(TOP_KEYS)}; got {describe(root)}"
            )
            return None
        top = self.fields(root, TOP_KEYS, "the top level")
        max_score = 100
        if "max_score" in top:
            max_score = self.integer(top["max_score"], "max_score", 1, 1000) or 100
        flag_below = 80
        if "flag_below" in top:
            value = self.integer(top["flag_below"], "flag_below", 0, max_score)
            flag_below = value if value is not None else flag_below
        node = top.get("rules")
        if node is None or not isinstance(node, SequenceNode) or not node.value:
            self.error(node or root, "rules: required, a list of rules ('- id: ...')")
            return None
        rules: list[QaRule] = []
        seen: dict[str, int] = {}
        for item in node.value:
            rule = self.rule(item)
            if rule is None:
                continue
            if rule.id in seen:
                self.error(item, f"rule {rule.id}: id already used at line {seen[rule.id]}")
                continue
            seen[rule.id] = line_of(item)
            rules.append(rule)
        return QaRules(tuple(rules), max_score, flag_below)

    def rule(self, node: Node) -> QaRule | None:
        if not isinstance(node, MappingNode):
            self.error(node, f"rules: each rule is a mapping ('- id: ...'), got {describe(node)}")
            return None
        f = self.fields(node, RULE_KEYS, "rule")
        ident = self.text(f["id"], "rule id") if "id" in f else None
        if "id" not in f:
            self.error(node, "rule: 'id' is required (a short slug like no-rude-words)")
        if ident is not None and not SLUG_RE.match(ident):
            self.error(f["id"], f"rule id '{ident}': use lowercase letters, digits, '-', '_' or '.'")
            ident = None
        what = f"rule {ident or '?'}"
        kind = self.text(f["type"], f"{what}: type") if "type" in f else None
        if "type" not in f:
            self.error(node, f"{what}: 'type' is required; allowed: {', '.join(RULE_TYPES)}")
        elif kind is not None and kind not in RULE_TYPES:
            self.error(f["type"], f"{what}: unknown type '{kind}'; {did_you_mean(kind, RULE_TYPES)}")
            kind = None
        if ident is None or kind is None:
            return None
        for key in f:
            if key not in _COMMON_KEYS and key not in _TYPE_KEYS[kind]:
                self.error(f[key], f"{what}: '{key}' does not apply to type {kind}")
        start = len(self.problems)
        name = self.text(f["name"], f"{what}: name") if "name" in f else ident
        weight = self.integer(f["weight"], f"{what}: weight", 0, 100) if "weight" in f else 5
        block = self.boolean(f["block"], f"{what}: block") if "block" in f else False
        flag = self.boolean(f["flag"], f"{what}: flag") if "flag" in f else False
        suggestion = self.text(f["suggestion"], f"{what}: suggestion") if "suggestion" in f else ""
        extra: dict[str, object] = {}
        if kind == "required":
            if "phrases" not in f:
                self.error(node, f"{what}: 'phrases' is required for a required rule")
            else:
                extra["phrases"] = self.texts(f["phrases"], f"{what}: phrases")
            where = self.text(f["in"], f"{what}: in") if "in" in f else "first_reply"
            if where is not None and where not in REQUIRED_IN:
                self.error(f["in"], f"{what}: in must be one of {', '.join(REQUIRED_IN)}, got '{where}'")
            extra["where"] = where or "first_reply"
        elif kind in ("forbidden", "vague"):
            if "words" not in f and "patterns" not in f:
                self.error(node, f"{what}: give 'words' or 'patterns'")
            if "words" in f:
                extra["words"] = MappingProxyType(self.words(f["words"], f"{what}: words"))
            if "patterns" in f:
                extra["patterns"] = self.patterns(f["patterns"], f"{what}: patterns")
            for key in ("unless", "not_after"):
                if key in f:
                    extra[key] = self.texts(f[key], f"{what}: {key}")
        elif kind == "response_gap":
            seconds = 120
            if "max_seconds" in f:
                seconds = self.integer(f["max_seconds"], f"{what}: max_seconds", 1, 86400) or seconds
            extra["max_seconds"] = seconds
        if len(self.problems) > start:
            return None
        return QaRule(
            id=ident,
            type=cast(RuleType, kind),
            name=name or ident,
            weight=weight if weight is not None else 5,
            block=bool(block),
            flag=bool(flag),
            suggestion=suggestion or "",
            source=SourceRef(self.file, line_of(node)),
            **extra,  # type: ignore[arg-type]
        )

    def words(self, node: Node, what: str) -> dict[str, str]:
        if isinstance(node, MappingNode):
            out: dict[str, str] = {}
            for key, value in node.value:
                word = self.text(key, f"{what} key")
                better = "" if is_null(value) else self.text(value, f"{what} '{word}'")
                if word is not None:
                    out[word] = better or ""
            return out
        return {word: "" for word in self.texts(node, what)}

    def patterns(self, node: Node, what: str) -> tuple[re.Pattern[str], ...]:
        compiled: list[re.Pattern[str]] = []
        items = node.value if isinstance(node, SequenceNode) else [node]
        for item in items:
            text = self.text(item, f"{what} item")
            if text is None:
                continue
            try:
                compiled.append(re.compile(text))
            except re.error as exc:
                self.error(item, f"{what}: '{text}' is not a valid regular expression ({exc.msg})")
                continue
            if compiled[-1].search(""):
                self.error(item, f"{what}: '{text}' matches the empty text, so it would hit every message")
                compiled.pop()
        return tuple(compiled)
