"""The top-level `similar:` section: customer questions added to entries that another file defines.

This is how the learned-additions file (`kb.learned_path`, written by `kb/learned.py` when an agent says
"this question = FAQ entry X") teaches the bot without touching the admin's own files:

    similar:
      return-how:            # an entry id from any FAQ file
        - 退货咋弄啊

The section is read per file (`read_similar`) and applied once every file is parsed (`apply_similar`),
so the entry may live in a file loaded before or after; its questions go through the same checks as
any question (one question, one entry), reported at the addition's own line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from yaml.nodes import MappingNode, Node

from kb.model import FaqEntry
from kb.schema import NodeReader
from kb.yaml_nodes import describe, is_null, is_text, line_of

__all__ = ["Addition", "apply_similar", "read_similar"]


@dataclass(frozen=True, slots=True)
class Addition:
    """One added question: which entry it joins, where it was written."""

    entry_id: str
    text: str
    node: Node
    file: str


def read_similar(reader: NodeReader, node: Node, out: list[Addition]) -> None:
    """`similar: {entry id: [question, ...]}` of the file being parsed, appended to `out`."""
    if is_null(node):
        return
    if not isinstance(node, MappingNode):
        reader.error(
            node,
            "'similar' must be a mapping of entry id → list of questions "
            f"(return-how: [退货咋弄啊]), got {describe(node)}",
        )
        return
    seen: dict[str, int] = {}
    for key_node, value_node in node.value:
        if not is_text(key_node):
            reader.error(key_node, f"keys in 'similar' must be entry ids, got {describe(key_node)}")
            continue
        entry_id = str(key_node.value).strip()
        if entry_id in seen:
            reader.error(
                key_node,
                f"entry '{entry_id}' appears twice in 'similar' (first at line {seen[entry_id]}); "
                "YAML would silently keep only the last one",
                entry_id,
            )
            continue
        seen[entry_id] = line_of(key_node)
        if is_null(value_node):
            reader.error(value_node, "no questions listed; add them or remove the line", entry_id)
            continue
        for text, item in reader.strings(value_node, "similar", entry_id):
            out.append(Addition(entry_id, text, item, reader.file))


def apply_similar(
    reader: NodeReader,
    entries: list[FaqEntry],
    additions: list[Addition],
    known_ids: set[str],
    register: Callable[[str, Node, str], None],
) -> None:
    """Add each addition to its entry (in place in `entries`); an unknown entry id is a problem.

    `known_ids`: ids that were defined even if their entry had errors (those are reported already).
    `register`: the loader's question check (one question, one entry), run in the addition's file.
    """
    position = {entry.id: i for i, entry in enumerate(entries)}
    extra: dict[int, list[str]] = {}
    for addition in additions:
        reader.file = addition.file
        i = position.get(addition.entry_id)
        if i is None:
            if addition.entry_id not in known_ids:
                reader.error(
                    addition.node,
                    f"similar: there is no faq entry '{addition.entry_id}'; "
                    "remove these questions or point them at an existing entry id",
                    addition.entry_id,
                )
            continue
        if entries[i].enabled:  # a disabled entry's questions are not registered either (loader.faq)
            register(addition.text, addition.node, addition.entry_id)
        extra.setdefault(i, []).append(addition.text)
    for i, texts in extra.items():
        entry = entries[i]
        have = set(entry.questions)
        new = tuple(dict.fromkeys(t for t in texts if t not in have))
        if new:
            entries[i] = replace(entry, similar=(*entry.similar, *new))
