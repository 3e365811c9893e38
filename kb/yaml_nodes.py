"""PyYAML node helpers for the FAQ loader: tags, line marks, type descriptions and the nesting guard.

The loader reads nodes, not Python objects, so every problem keeps its `file:line`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

# libyaml's parser is several times faster than the pure-Python one; 50,000 questions must load
# well inside two seconds. Both produce the same nodes and marks.
YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

STR_TAG = "tag:yaml.org,2002:str"
NULL_TAG = "tag:yaml.org,2002:null"
BOOL_TAG = "tag:yaml.org,2002:bool"
# Scalars taken as text. The loader reads a scalar's source text, never YAML's conversion of it, so
# `keywords: [12315]` or `question: 007` keep exactly what was written. Booleans stay an error:
# `yes`/`on` as a question or answer is almost always a slip.
TEXT_TAGS = frozenset(
    {STR_TAG, "tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp"}
)
TAG_NAMES = {
    STR_TAG: "a string",
    "tag:yaml.org,2002:int": "an integer",
    "tag:yaml.org,2002:float": "a number",
    BOOL_TAG: "a boolean",
    NULL_TAG: "nothing (null)",
    "tag:yaml.org,2002:timestamp": "a date",
    "tag:yaml.org,2002:binary": "binary data",
}

# libyaml composes nodes recursively in C and crashes the process (not an exception) somewhere past
# 20,000 levels, which `[[[[…` reaches in 40 KB. Files that might nest deeper than this are refused
# before parsing; real FAQ files nest four or five levels.
MAX_NESTING = 500
# One block level costs at least one column of indentation or one "- "/"? " on the line.
_DEEP_BLOCK = re.compile(rf"^(?:[ \t]|[-?][ \t]){{{MAX_NESTING},}}", re.MULTILINE)
_FLOW_BRACKETS = re.compile(r"[\[\]{}]")


def too_deep(text: str) -> int | None:
    """The line where nesting may pass MAX_NESTING (an over-estimate: quoted brackets count), or None."""
    if (match := _DEEP_BLOCK.search(text)) is not None:
        return text.count("\n", 0, match.start()) + 1
    if text.count("[") + text.count("{") <= MAX_NESTING:
        return None  # cheap exit for every ordinary file
    depth = 0
    for match in _FLOW_BRACKETS.finditer(text):
        depth = depth + 1 if match.group() in "[{" else max(depth - 1, 0)
        if depth > MAX_NESTING:
            return text.count("\n", 0, match.start()) + 1
    return None


def line_of(node: Node) -> int:
    return node.start_mark.line + 1


def clip(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(node: Node) -> str:
    """A node's type in words, with its value for scalars: `an integer (2024)`."""
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    name = TAG_NAMES.get(node.tag, f"a value tagged {node.tag}")
    return name if node.tag == NULL_TAG else f"{name} ({clip(str(node.value))!r})"


def did_you_mean(word: str, allowed: Iterable[str]) -> str:
    allowed = list(allowed)
    close = difflib.get_close_matches(word.casefold(), allowed, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return "allowed: " + ", ".join(allowed)


def is_null(node: Node | None) -> bool:
    return node is None or (isinstance(node, ScalarNode) and node.tag == NULL_TAG)


def is_text(node: Node | None) -> bool:
    return isinstance(node, ScalarNode) and node.tag in TEXT_TAGS
