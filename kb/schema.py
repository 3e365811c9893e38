"""The FAQ file schema: allowed keys and values, and typed readers over YAML nodes that report problems.

Each reader checks one node against the schema and records a `Problem` with the node's line; the loader
(`kb/loader.py`) builds on them to merge files and check ids and questions across files.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kb.model import Problem, SourceRef
from kb.yaml_nodes import BOOL_TAG, STR_TAG, clip, describe, did_you_mean, is_null, is_text, line_of

TOP_LEVEL_KEYS = ("faqs", "synonyms", "words", "intents", "replies", "slots", "similar")
FAQ_KEYS = (
    "id",
    "question",
    "similar",
    "answer",
    "category",
    "keywords",
    "enabled",
    "action",
    "required_slots",
    "form",
)
CHANNELS = ("wechat", "web", "onebot", "qqbot")
ANSWER_KEYS = ("default", *CHANNELS)
INTENT_KEYS = ("name", "action", "priority", "group", "keywords", "examples", "reply", "required_slots")
INTENT_ACTIONS = ("handoff", "smalltalk", "answer")
INTENT_PRIORITIES = ("normal", "high")
YAML_SUFFIXES = (".yaml", ".yml")

# Ids are stable keys in logs, metrics, stored conversations and eval tables, so keep them URL- and
# shell-safe. Dots are allowed for namespacing (support.about).
SLUG_RE = re.compile(r"[a-z0-9][a-z0-9._-]*\Z")


def slug_hint(value: str) -> str:
    suggestion = re.sub(r"[^a-z0-9._-]+", "-", value.strip().lower()).strip("-._")
    if suggestion and SLUG_RE.match(suggestion):
        return f"; did you mean '{suggestion}'?"
    return ""


class Seen(NamedTuple):
    """Where a key (id, question, word, ...) was first defined, for duplicate messages."""

    # A plain tuple, not a SourceRef: one is made per question, and frozen dataclasses are slow to build.
    file: str
    line: int
    owner: str | None = None

    @property
    def ref(self) -> SourceRef:
        return SourceRef(self.file, self.line)


class NodeReader:
    """Reads nodes of one file at a time against the schema, collecting problems."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        self.soft_ids: set[int] = set()
        # Set when a file or section could not be read at all: whatever it held is unknown, so the
        # whole-kb checks ("no entries") would only add noise to the problem already reported.
        self.incomplete = False
        self.file = ""
        # Names what is being parsed when it is not a faq entry (those go in Problem.entry_id).
        self.prefix = ""

    # -- reporting ----------------------------------------------------------------------------------

    def error(self, where: Node | int, message: str, entry_id: str | None = None) -> None:
        line = where if isinstance(where, int) else line_of(where)
        self.problems.append(Problem(self.file, line, self.prefix + message, entry_id))

    def soft_error(self, where: Node | int, message: str, entry_id: str | None = None) -> None:
        """An error for `kb check` that a lenient load (`strict=False`) can live with."""
        self.error(where, message, entry_id)
        self.soft_ids.add(id(self.problems[-1]))

    def ref(self, node: Node) -> SourceRef:
        return SourceRef(self.file, line_of(node))

    def seen(self, node: Node, owner: str | None = None) -> Seen:
        return Seen(self.file, node.start_mark.line + 1, owner)

    # -- generic node readers -----------------------------------------------------------------------

    def fields(
        self, node: MappingNode, allowed: tuple[str, ...], what: str, entry_id: str | None = None
    ) -> dict[str, Node]:
        """The mapping's values by key; reports duplicate and unknown keys."""
        out: dict[str, Node] = {}
        key_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.error(
                    key_node, f"keys in {what} must be plain words, got {describe(key_node)}", entry_id
                )
                continue
            key = str(key_node.value)
            if key in key_lines:
                self.error(
                    key_node,
                    f"key '{key}' appears twice in {what} (first at line {key_lines[key]}); "
                    "YAML would silently keep only the last one",
                    entry_id,
                )
                continue
            key_lines[key] = line_of(key_node)
            if key not in allowed:
                self.error(key_node, f"unknown key '{key}' in {what}; {did_you_mean(key, allowed)}", entry_id)
                continue
            out[key] = value_node
        return out

    def items(self, node: Node, name: str, expected: str) -> list[Node]:
        """The items of a list-valued section; null means an empty section."""
        if is_null(node):
            return []
        if not isinstance(node, SequenceNode):
            self.error(node, f"'{name}' must be {expected}, got {describe(node)}")
            self.incomplete = True
            return []
        return list(node.value)

    def string(
        self, node: Node | None, name: str, entry_id: str | None = None, *, required: bool = False
    ) -> str | None:
        """A stripped, non-empty string; None (after reporting) when missing, empty or not a string."""
        if is_null(node):
            if required and node is not None:
                self.error(node, f"'{name}' is empty; fill it in", entry_id)
            return None
        assert node is not None
        if not is_text(node):
            hint = "; put it in quotes if it is meant as text" if isinstance(node, ScalarNode) else ""
            self.error(node, f"'{name}' must be a string, got {describe(node)}{hint}", entry_id)
            return None
        value = str(node.value).strip()
        if not value:
            what = "fill it in" if required else "fill it in or remove the key"
            self.error(node, f"'{name}' is empty; {what}", entry_id)
            return None
        return value

    def strings(self, node: Node | None, name: str, entry_id: str | None = None) -> list[tuple[str, Node]]:
        """A list of non-empty strings with their nodes; null means an empty list."""
        if is_null(node):
            return []
        assert node is not None
        if not isinstance(node, SequenceNode):
            is_text = isinstance(node, ScalarNode) and node.tag == STR_TAG
            hint = f"; write it as a list: [{clip(str(node.value))}]" if is_text else ""
            self.error(node, f"'{name}' must be a list of strings, got {describe(node)}{hint}", entry_id)
            return []
        out: list[tuple[str, Node]] = []
        for item in node.value:
            if is_null(item):
                self.error(item, f"empty item in '{name}'; remove it or fill it in", entry_id)
                continue
            value = self.string(item, f"{name} item", entry_id)
            if value is not None:
                out.append((value, item))
        return out

    def boolean(self, node: Node | None, name: str, entry_id: str | None = None) -> bool | None:
        """true/false (YAML 1.1 yes/no/on/off too); None when absent or wrong."""
        if is_null(node):
            return None
        assert node is not None
        if isinstance(node, ScalarNode) and node.tag == BOOL_TAG:
            return bool(yaml.SafeLoader.bool_values[str(node.value).lower()])
        self.error(node, f"'{name}' must be true or false, got {describe(node)}", entry_id)
        return None

    def choice(self, node: Node | None, name: str, allowed: tuple[str, ...]) -> str | None:
        """One of a fixed set of words (intent action, priority)."""
        value = self.string(node, name)
        if value is None or value in allowed:
            return value
        assert node is not None
        hint = did_you_mean(value, allowed)
        self.error(node, f"'{name}' must be one of {', '.join(allowed)}, got '{value}'; {hint}")
        return None
